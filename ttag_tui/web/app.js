// ttag web UI: plain ES module, no build step, no external URLs.
//
// Everything goes through the public REST API (api/health, api/models, api/jobs…), with paths relative to the page so
// the UI also works behind a reverse proxy that serves ttag under a sub-path. Takes are kept in this browser
// (IndexedDB: metadata + audio blob) because the server drops finished jobs after a while.

"use strict";

// ---------------------------------------------------------------------------------------------------------------------
// Small helpers

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const LS_KEY = "ttag.apiKey";
const LS_DRAFT = "ttag.draft";
const LS_PENDING = "ttag.pendingJobs";
const LS_LAST = "ttag.lastRequest";

// Request fields a model may take (runners.request.MODEL_PARAMS minus the file paths the API never accepts).
const MODEL_FIELDS = ["temperature", "top_k", "top_p", "guidance", "steps", "negative_prompt"];
const PARAM_LABELS = { temperature: "Temperature", top_k: "Top-k", top_p: "Top-p", guidance: "Guidance", steps: "Steps" };

function readJSON(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

function writeJSON(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Private mode or a full quota: the UI keeps working, it just forgets on reload.
  }
}

function formatTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const m = Math.floor(seconds / 60);
  const s = Math.floor(seconds % 60);
  return `${m}:${String(s).padStart(2, "0")}`;
}

function formatNumber(value) {
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(3)));
}

function slug(text) {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-|-$/g, "")
      .slice(0, 40) || "take"
  );
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function icon(name) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS(svgNS, "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

function setIcon(button, name) {
  $("use", button).setAttribute("href", `#i-${name}`);
}

function announce(message) {
  $("#announce").textContent = message;
}

function toast(message, kind = "info", ms = 4000) {
  const node = el("div", { class: `toast ${kind}`, text: message });
  $("#toasts").append(node);
  setTimeout(() => node.classList.add("leaving"), ms);
  setTimeout(() => node.remove(), ms + 400);
}

// ---------------------------------------------------------------------------------------------------------------------
// The REST API

class ApiError extends Error {
  constructor(status, detail, retryAfter) {
    let message;
    if (typeof detail === "string") message = detail;
    else if (detail && typeof detail === "object" && !Array.isArray(detail)) message = detail.message || detail.kind;
    else if (Array.isArray(detail)) message = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    super(message || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }

  // 422 → {field: message}; the server (and pydantic) put the field name second in ``loc``: ["body", FIELD].
  get fieldErrors() {
    const errors = {};
    if (this.status === 422 && Array.isArray(this.detail)) {
      for (const item of this.detail) {
        const loc = item.loc || [];
        const field = loc[0] === "body" ? loc[1] ?? "" : loc[loc.length - 1] ?? "";
        const name = typeof field === "string" && field ? field : "_form";
        errors[name] = errors[name] ? `${errors[name]}; ${item.msg}` : item.msg;
      }
    }
    return errors;
  }
}

function apiKey() {
  return localStorage.getItem(LS_KEY) || "";
}

async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    signal,
  });
  if (!response.ok) {
    let detail;
    try {
      detail = (await response.json()).detail;
    } catch {
      detail = response.statusText;
    }
    const error = new ApiError(response.status, detail, response.headers.get("Retry-After"));
    if (response.status === 401) onUnauthorized();
    throw error;
  }
  return raw ? response : response.json();
}

// ---------------------------------------------------------------------------------------------------------------------
// IndexedDB: one record per take, the audio blob included, so the session survives a reload and the server's clean-up.

const DB_NAME = "ttag-web";
let dbPromise = null;

function openDB() {
  dbPromise ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore("takes", { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return dbPromise;
}

async function dbRun(mode, action) {
  const db = await openDB();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("takes", mode);
    const request = action(tx.objectStore("takes"));
    tx.oncomplete = () => resolve(request?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

const db = {
  all: () => dbRun("readonly", (s) => s.getAll()),
  put: (take) => dbRun("readwrite", (s) => s.put(take)),
  delete: (id) => dbRun("readwrite", (s) => s.delete(id)),
};

// ---------------------------------------------------------------------------------------------------------------------
// State

const state = {
  models: [],
  spec: null,
  takes: [], // oldest first; numbered in that order
  jobs: new Map(), // job id → {row, body, cancelled}
  lastRequest: readJSON(LS_LAST, null),
  selectedId: null,
  trash: [], // deleted takes, newest last, for undo (this page view only)
  urls: new Map(), // take id → object URL of its blob
  elements: new Map(), // take id → <li>
  draft: readJSON(LS_DRAFT, { values: {} }),
  serverOk: false,
};

// ---------------------------------------------------------------------------------------------------------------------
// Server status, API key

async function checkHealth() {
  const status = $("#server-status");
  try {
    const health = await api("api/health");
    status.textContent = `server ok · ttag ${health.version}`;
    status.dataset.state = "ok";
    state.serverOk = true;
    return true;
  } catch (error) {
    status.textContent = error instanceof ApiError ? `server error: ${error.message}` : "server unreachable";
    status.dataset.state = "down";
    state.serverOk = false;
    return false;
  }
}

function renderKeyState() {
  const has = Boolean(apiKey());
  $("#key-state").textContent = has ? "●" : "";
  $("#key-button").setAttribute("aria-label", has ? "API key (set)" : "API key (not set)");
}

let keyDialogReason = "";

// Any 401 opens the key dialog, saying whether a key is missing or the one given was refused.
function onUnauthorized() {
  const dialog = $("#key-dialog");
  keyDialogReason = apiKey() ? "The server refused this key." : "This server needs an API key.";
  if (!dialog.open) openKeyDialog();
  $("#key-error").textContent = keyDialogReason;
}

function openKeyDialog() {
  $("#api-key").value = apiKey();
  $("#key-error").textContent = "";
  $("#key-dialog").showModal();
  $("#api-key").focus();
}

async function saveKey(value) {
  if (value) localStorage.setItem(LS_KEY, value);
  else localStorage.removeItem(LS_KEY);
  renderKeyState();
  $("#key-error").textContent = "";
  try {
    await loadModels();
    return true;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) $("#key-error").textContent = error.message;
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Models and settings

async function loadModels() {
  const models = await api("api/models");
  state.models = models;
  const select = $("#model");
  const wanted = state.draft.model || select.value;
  select.replaceChildren(
    ...models.map((m) =>
      el("option", { value: m.id, text: `${m.available ? "●" : "○"} ${m.id}${m.available ? "" : " — unavailable"}` }),
    ),
  );
  const fallback = models.find((m) => m.available) || models[0];
  select.value = models.some((m) => m.id === wanted) ? wanted : fallback?.id ?? "";
  selectModel(select.value);
  return models;
}

function selectModel(id) {
  const spec = state.models.find((m) => m.id === id) || null;
  state.spec = spec;
  state.draft.model = id;
  saveDraft();
  const info = $("#model-info");
  info.replaceChildren();
  if (spec) {
    info.append(
      el("span", { class: `badge ${spec.available ? "ok" : "off"}`, text: spec.available ? "available" : "unavailable" }),
      " ",
      spec.description || "",
    );
    if (!spec.available && spec.reason) info.append(el("span", { class: "reason", text: ` ${spec.reason}` }));
  }
  $("#understands").hidden = !spec?.understands;
  $("#understands-model").textContent = spec?.id || "";
  $("#prompt-hint").textContent = spec?.understands || "";
  renderSettings(spec);
}

function renderSettings(spec) {
  const duration = $("#duration");
  if (spec) {
    duration.placeholder = formatNumber(spec.default_duration);
    duration.min = spec.min_duration;
    duration.max = spec.max_duration;
    $("#duration-range").textContent = `${formatNumber(spec.min_duration)}–${formatNumber(spec.max_duration)} s`;
  }
  // The model's own parameters: only those it takes, with its ranges and defaults.
  $$(".param-field").forEach((node) => node.remove());
  const params = (spec?.params || []).filter((p) => MODEL_FIELDS.includes(p.name));
  const grid = $("#settings-grid");
  for (const param of params) {
    if (param.name === "negative_prompt") continue;
    const id = param.name;
    const integer = param.type === "int";
    const range =
      param.minimum !== null && param.maximum !== null
        ? `${formatNumber(param.minimum)}–${formatNumber(param.maximum)}`
        : param.minimum !== null
          ? `≥ ${formatNumber(param.minimum)}`
          : "";
    const input = el("input", {
      id,
      name: id,
      type: "number",
      inputmode: integer ? "numeric" : "decimal",
      step: integer ? "1" : "any",
      min: param.minimum ?? undefined,
      max: param.maximum ?? undefined,
      placeholder: param.default === null ? "" : formatNumber(param.default),
      title: param.help || undefined,
      "aria-describedby": `${id}-error ${id}-hint`,
      "data-type": param.type,
    });
    input.value = state.draft.values?.[id] ?? "";
    grid.append(
      el(
        "div",
        { class: "field param-field", "data-field": id },
        el("label", { for: id, text: PARAM_LABELS[id] || id }),
        input,
        el("p", { class: "hint range", id: `${id}-hint`, text: range, title: param.help || undefined }),
        el("p", { class: "error", id: `${id}-error`, role: "alert" }),
      ),
    );
  }
  const negative = spec?.params?.some((p) => p.name === "negative_prompt");
  $("#negative-field").hidden = !negative;
}

// ---------------------------------------------------------------------------------------------------------------------
// The form

function saveDraft() {
  writeJSON(LS_DRAFT, state.draft);
}

function captureDraft() {
  state.draft.prompt = $("#prompt").value;
  state.draft.negative_prompt = $("#negative_prompt").value;
  state.draft.values ??= {};
  for (const input of $$("#settings-grid input, #settings-grid select")) state.draft.values[input.name] = input.value;
  saveDraft();
}

function restoreDraft() {
  $("#prompt").value = state.draft.prompt || "";
  $("#negative_prompt").value = state.draft.negative_prompt || "";
  for (const name of ["duration", "takes", "seed", "format"]) {
    const value = state.draft.values?.[name];
    if (value !== undefined) $(`#${name}`).value = value;
  }
  if (!$("#format").value) $("#format").value = "wav";
}

function clearErrors() {
  $$(".field.invalid").forEach((node) => node.classList.remove("invalid"));
  $$("#compose .error").forEach((node) => (node.textContent = ""));
  $$("#compose [aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
}

function showFieldErrors(errors) {
  let first = null;
  for (const [field, message] of Object.entries(errors)) {
    const target = $(`#${CSS.escape(field)}-error`);
    const input = $(`#${CSS.escape(field)}`);
    if (target && field !== "_form") {
      target.textContent = message;
      target.closest(".field")?.classList.add("invalid");
      input?.setAttribute("aria-invalid", "true");
      first ??= input;
    } else {
      const form = $("#form-error");
      form.textContent = form.textContent ? `${form.textContent}; ${field}: ${message}` : `${field === "_form" ? "" : `${field}: `}${message}`;
    }
  }
  first?.focus();
}

// The body for POST /api/jobs from the form. Empty fields are left out, so the model's defaults apply.
function collectBody() {
  const body = { prompt: $("#prompt").value, model: $("#model").value, format: $("#format").value || "wav" };
  const errors = {};
  const inputs = [$("#duration"), $("#takes"), $("#seed"), ...$$(".param-field input")];
  for (const input of inputs) {
    if (input.validity.badInput) {
      errors[input.name] = "must be a number";
      continue;
    }
    if (input.value.trim() === "") continue;
    body[input.name] = Number(input.value);
  }
  const negative = $("#negative_prompt");
  if (!$("#negative-field").hidden && negative.value.trim()) body.negative_prompt = negative.value;
  return { body, errors };
}

function loadIntoForm(request) {
  const select = $("#model");
  if (state.models.some((m) => m.id === request.model)) {
    select.value = request.model;
    selectModel(request.model);
  }
  $("#prompt").value = request.prompt || "";
  $("#negative_prompt").value = request.negative_prompt || "";
  $("#duration").value = request.duration ?? "";
  $("#seed").value = request.seed ?? "";
  $("#takes").value = "";
  $("#format").value = request.format || "wav";
  for (const input of $$(".param-field input")) input.value = request[input.name] ?? "";
  clearErrors();
  captureDraft();
}

// ---------------------------------------------------------------------------------------------------------------------
// Jobs: submit, poll, cancel

async function generateFromForm() {
  clearErrors();
  const { body, errors } = collectBody();
  if (Object.keys(errors).length) {
    showFieldErrors(errors);
    return;
  }
  captureDraft();
  await submit(body, { fromForm: true });
}

async function submit(body, { fromForm = false } = {}) {
  let job;
  const button = $("#generate");
  button.disabled = true;
  try {
    job = await api("api/jobs", { method: "POST", body });
  } catch (error) {
    handleSubmitError(error, fromForm);
    return null;
  } finally {
    button.disabled = false;
  }
  state.lastRequest = { ...body };
  writeJSON(LS_LAST, state.lastRequest);
  $("#regenerate").disabled = false;
  writeJSON(LS_PENDING, [...readJSON(LS_PENDING, []), { id: job.id, body }]);
  trackJob(job, body);
  return job;
}

function handleSubmitError(error, fromForm) {
  if (!(error instanceof ApiError)) {
    toast(`Cannot reach the server: ${error.message}`, "error");
    return;
  }
  if (error.status === 422) {
    const errors = error.fieldErrors;
    if (fromForm) showFieldErrors(errors);
    else toast(Object.entries(errors).map(([f, m]) => `${f}: ${m}`).join("; "), "error", 6000);
  } else if (error.status === 401) {
    // onUnauthorized already opened the key dialog.
  } else if (error.status === 429 || error.status === 503) {
    const wait = error.retryAfter ? ` — try again in ${error.retryAfter} s` : "";
    toast(`${error.message}${wait}`, "warn", 6000);
  } else {
    toast(error.message, "error", 6000);
  }
}

function jobLabel(body) {
  const takes = body.takes && body.takes > 1 ? ` · ${body.takes} takes` : "";
  const seconds = body.duration ? ` · ${formatNumber(body.duration)} s` : "";
  return `${body.model}${seconds}${takes}`;
}

function trackJob(job, body) {
  const cancel = el("button", { type: "button", class: "icon-btn small cancel", "aria-label": "Cancel job", title: "Cancel (Esc)" }, icon("x"));
  const bar = el("progress", { max: "1", "aria-label": `Progress of “${body.prompt.slice(0, 60)}”` });
  const status = el("span", { class: "job-status", text: "queued" });
  const row = el(
    "div",
    { class: "job", "data-job": job.id, "data-state": job.state },
    el("div", { class: "job-line" }, el("span", { class: "job-prompt", text: body.prompt }), cancel),
    bar,
    el("div", { class: "job-line small" }, status, el("span", { class: "job-model", text: jobLabel(body) })),
  );
  const entry = { row, body, bar, status, cancel, cancelled: false };
  state.jobs.set(job.id, entry);
  $("#jobs").prepend(row);
  announce(`Generating: ${body.prompt}`);
  cancel.addEventListener("click", () => cancelJob(job.id));
  poll(job.id, entry);
}

function describeProgress(job) {
  const p = job.progress || {};
  if (job.state === "queued") return "queued";
  const parts = [p.phase || job.state];
  if (p.total) parts.push(`${p.step}/${p.total}`);
  if (p.eta_s !== null && p.eta_s !== undefined && p.eta_s > 0.5) parts.push(`about ${Math.ceil(p.eta_s)} s left`);
  return parts.join(" · ");
}

async function poll(id, entry) {
  let delay = 150;
  let failures = 0;
  for (;;) {
    let job;
    try {
      job = await api(`api/jobs/${id}`);
      failures = 0;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        finishJob(id, entry, "failed", "the server no longer knows this job (it restarted or dropped it)");
        return;
      }
      failures += 1;
      entry.status.textContent = `server unreachable, retrying… (${failures})`;
      await sleep(Math.min(5000, 500 * failures));
      continue;
    }
    entry.row.dataset.state = job.state;
    const p = job.progress || {};
    if (job.state === "running" && p.total) entry.bar.value = Math.min(1, p.step / p.total);
    else if (job.state === "running") entry.bar.removeAttribute("value"); // indeterminate until the first step
    entry.status.textContent = describeProgress(job);
    if (job.state === "done") {
      entry.bar.value = 1;
      entry.status.textContent = "fetching audio…";
      try {
        await collectTakes(job, entry.body);
        finishJob(id, entry, "done", `done · ${job.results.length} take${job.results.length === 1 ? "" : "s"}`);
      } catch (error) {
        finishJob(id, entry, "failed", `could not fetch the audio: ${error.message}`);
      }
      return;
    }
    if (job.state === "failed" || job.state === "cancelled") {
      const message = job.state === "cancelled" ? "cancelled" : `failed: ${job.error?.message || "unknown error"}`;
      finishJob(id, entry, job.state, message);
      return;
    }
    await sleep(delay);
    delay = Math.min(500, delay + 50);
  }
}

function finishJob(id, entry, finalState, message) {
  entry.row.dataset.state = finalState;
  entry.status.textContent = message;
  announce(`${entry.body.prompt}: ${message}`);
  entry.cancel.setAttribute("aria-label", "Dismiss");
  entry.cancel.title = "Dismiss";
  writeJSON(LS_PENDING, readJSON(LS_PENDING, []).filter((j) => j.id !== id));
  const remove = () => {
    entry.row.classList.add("leaving");
    setTimeout(() => entry.row.remove(), 300);
    state.jobs.delete(id);
  };
  entry.dismiss = remove;
  // Failures stay until dismissed: they explain themselves. Done and cancelled rows go away on their own.
  if (finalState === "done") setTimeout(remove, 1200);
  else if (finalState === "cancelled") setTimeout(remove, 4000);
  else toast(message, "error", 6000);
}

async function cancelJob(id) {
  const entry = state.jobs.get(id);
  if (!entry) return;
  if (entry.dismiss) {
    entry.dismiss();
    return;
  }
  entry.cancelled = true;
  entry.status.textContent = "cancelling…";
  try {
    await api(`api/jobs/${id}/cancel`, { method: "POST" });
  } catch (error) {
    toast(`Cancel failed: ${error.message}`, "error");
  }
}

function cancelLatest() {
  const running = [...state.jobs.entries()].filter(([, e]) => !e.dismiss && !e.cancelled);
  if (!running.length) return false;
  cancelJob(running[running.length - 1][0]);
  return true;
}

async function collectTakes(job, body) {
  const format = body.format || "wav";
  const created = Date.now();
  const fresh = [];
  for (const result of job.results) {
    const response = await api(`api/jobs/${job.id}/takes/${result.take}?format=${format}`, { raw: true });
    const blob = await response.blob();
    const request = { ...body, seed: result.seed };
    delete request.takes;
    const take = {
      id: `${job.id}-${result.take}`,
      jobId: job.id,
      take: result.take,
      created: created + result.take,
      prompt: body.prompt,
      model: job.model,
      request,
      seed: result.seed,
      duration: result.duration,
      sampleRate: result.sample_rate,
      channels: result.channels,
      format,
      starred: false,
      loop: false,
      peaks: null,
      blob,
    };
    await db.put(take);
    fresh.push(take);
  }
  state.takes.push(...fresh);
  renderTakes();
  for (const take of fresh) state.elements.get(take.id)?.classList.add("fresh");
  // The newest take becomes the selected one (Space plays it), unless the user is busy in the takes list.
  if (fresh.length && !document.activeElement?.closest?.("#take-list")) select(fresh[0].id, { focus: false });
  // On a phone the takes are below the form: bring the new one into view, unless the user is typing the next prompt.
  if (fresh.length && matchMedia("(max-width: 760px)").matches && !isTyping(document.activeElement)) {
    state.elements.get(fresh.at(-1).id)?.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }
}

async function resumePending() {
  for (const { id, body } of readJSON(LS_PENDING, [])) {
    if (state.jobs.has(id)) continue;
    trackJob({ id, state: "queued" }, body);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Takes

function takeUrl(take) {
  let url = state.urls.get(take.id);
  if (!url) {
    url = URL.createObjectURL(take.blob);
    state.urls.set(take.id, url);
  }
  return url;
}

function takeMeta(take) {
  const parts = [take.model, `${formatNumber(take.duration)} s`, `seed ${take.seed}`];
  for (const name of MODEL_FIELDS) {
    if (name !== "negative_prompt" && take.request[name] !== undefined) parts.push(`${PARAM_LABELS[name] || name} ${take.request[name]}`);
  }
  parts.push(take.format);
  return parts.join(" · ");
}

function visibleTakes() {
  const starredOnly = $("#starred-only").checked;
  return state.takes.filter((t) => !starredOnly || t.starred);
}

function renderTakes() {
  const list = $("#take-list");
  const visible = visibleTakes();
  const numbers = new Map(state.takes.map((t, i) => [t.id, i + 1]));
  const wanted = [...visible].reverse(); // newest first
  for (const [id, node] of state.elements) {
    if (!state.takes.some((t) => t.id === id)) {
      node.remove();
      state.elements.delete(id);
    }
  }
  wanted.forEach((take, index) => {
    let node = state.elements.get(take.id);
    if (!node) {
      node = buildTake(take);
      state.elements.set(take.id, node);
    }
    updateTake(take, node, numbers.get(take.id));
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
  });
  for (const node of [...list.children]) if (!wanted.some((t) => state.elements.get(t.id) === node)) node.remove();
  $("#takes-empty").hidden = state.takes.length > 0;
  $("#takes-count").textContent = state.takes.length ? String(state.takes.length) : "";
}

function buildTake(take) {
  const node = $("#take-template").content.firstElementChild.cloneNode(true);
  node.dataset.id = take.id;
  const audio = $("audio", node);
  audio.src = takeUrl(take);
  audio.loop = Boolean(take.loop);
  const play = $(".play", node);
  const seek = $(".seek", node);
  const canvas = $(".wave", node);

  play.addEventListener("click", () => togglePlay(take.id));
  audio.addEventListener("play", () => {
    for (const other of $$("#take-list audio")) if (other !== audio) other.pause();
    node.classList.add("playing");
    setIcon(play, "pause");
    play.setAttribute("aria-label", "Pause");
    animate(node);
  });
  audio.addEventListener("pause", () => {
    node.classList.remove("playing");
    setIcon(play, "play");
    play.setAttribute("aria-label", "Play");
    drawPosition(node);
  });
  audio.addEventListener("ended", () => drawPosition(node));
  audio.addEventListener("loadedmetadata", () => {
    seek.max = String(audio.duration || take.duration);
    $(".len", node).textContent = formatTime(audio.duration);
    drawPosition(node);
  });
  audio.addEventListener("timeupdate", () => drawPosition(node));
  seek.addEventListener("input", () => {
    audio.currentTime = Number(seek.value);
    drawPosition(node);
  });

  $(".star", node).addEventListener("click", () => toggleStar(take.id));
  $(".loop", node).addEventListener("click", () => toggleLoop(take.id));
  $(".use", node).addEventListener("click", () => useSettings(take.id));
  $(".again", node).addEventListener("click", () => again(take.id, { sameSeed: false }));
  $(".delete", node).addEventListener("click", () => deleteTake(take.id));
  node.addEventListener("focusin", () => select(take.id, { focus: false }));
  node.addEventListener("pointerdown", () => select(take.id, { focus: false }));
  node.addEventListener("animationend", () => node.classList.remove("fresh"));

  // Peaks are computed once, then kept with the take.
  new ResizeObserver(() => drawWave(node)).observe(canvas);
  if (!take.peaks) computePeaks(take).then(() => drawWave(node));
  return node;
}

function updateTake(take, node, number) {
  $(".take-prompt", node).textContent = `#${number}  ${take.prompt}`;
  $(".take-prompt", node).title = take.prompt;
  $(".take-meta", node).textContent = takeMeta(take);
  $(".len", node).textContent = formatTime(take.duration);
  const star = $(".star", node);
  star.setAttribute("aria-pressed", String(take.starred));
  star.setAttribute("aria-label", take.starred ? "Unstar" : "Star");
  setIcon(star, take.starred ? "star-on" : "star");
  node.classList.toggle("starred", take.starred);
  const loop = $(".loop", node);
  loop.setAttribute("aria-pressed", String(Boolean(take.loop)));
  const download = $(".download", node);
  download.href = takeUrl(take);
  download.download = `ttag-${slug(take.prompt)}-${take.seed}.${take.format}`;
  node.setAttribute("aria-label", `Take ${number}: ${take.prompt}`);
  node.classList.toggle("selected", take.id === state.selectedId);
}

function findTake(id) {
  return state.takes.find((t) => t.id === id);
}

function currentTake() {
  const focused = document.activeElement?.closest?.(".take");
  return findTake(focused?.dataset.id) || findTake(state.selectedId) || visibleTakes().at(-1) || null;
}

function select(id, { focus = true } = {}) {
  state.selectedId = id;
  for (const [takeId, node] of state.elements) node.classList.toggle("selected", takeId === id);
  if (focus) state.elements.get(id)?.focus();
}

function audioOf(id) {
  return $("audio", state.elements.get(id));
}

function togglePlay(id) {
  const audio = audioOf(id);
  if (!audio) return;
  select(id, { focus: false });
  if (audio.paused) {
    if (audio.ended) audio.currentTime = 0;
    audio.play().catch((error) => toast(`Cannot play: ${error.message}`, "error"));
  } else audio.pause();
}

async function saveTake(take) {
  await db.put(take);
  renderTakes();
}

function toggleStar(id) {
  const take = findTake(id);
  if (!take) return;
  take.starred = !take.starred;
  saveTake(take);
}

function toggleLoop(id) {
  const take = findTake(id);
  if (!take) return;
  take.loop = !take.loop;
  audioOf(id).loop = take.loop;
  saveTake(take);
}

function useSettings(id) {
  const take = findTake(id);
  if (!take) return;
  loadIntoForm({ ...take.request, model: take.model, prompt: take.prompt, seed: take.seed });
  toast(`Loaded the settings of take ${state.takes.indexOf(take) + 1} (seed ${take.seed}).`);
  $("#prompt").focus();
}

function again(id, { sameSeed }) {
  const take = findTake(id);
  if (!take) return;
  const body = { ...take.request, prompt: take.prompt, model: take.model, format: take.format };
  if (sameSeed) body.seed = take.seed;
  else delete body.seed;
  submit(body);
}

function regenerate() {
  if (!state.lastRequest) {
    toast("Nothing to regenerate yet: generate something first.", "warn");
    return;
  }
  const body = { ...state.lastRequest };
  delete body.seed; // the same request with a new seed
  submit(body);
}

async function deleteTake(id) {
  const index = state.takes.findIndex((t) => t.id === id);
  if (index < 0) return;
  const [take] = state.takes.splice(index, 1);
  audioOf(id)?.pause();
  await db.delete(id);
  state.trash.push(take);
  const neighbour = visibleTakes()[Math.min(index, state.takes.length - 1)];
  renderTakes();
  const url = state.urls.get(id);
  state.urls.delete(id);
  if (url) setTimeout(() => URL.revokeObjectURL(url), 1000);
  state.elements.delete(id);
  if (neighbour) select(neighbour.id);
  toast(`Take deleted (u brings it back).`);
}

async function undoDelete() {
  const take = state.trash.pop();
  if (!take) {
    toast("Nothing to bring back.", "warn");
    return;
  }
  await db.put(take);
  state.takes.push(take);
  state.takes.sort((a, b) => a.created - b.created);
  renderTakes();
  select(take.id);
}

async function clearUnstarred() {
  const doomed = state.takes.filter((t) => !t.starred);
  if (!doomed.length) return;
  if (!window.confirm(`Delete ${doomed.length} unstarred take${doomed.length === 1 ? "" : "s"}?`)) return;
  for (const take of doomed) {
    audioOf(take.id)?.pause();
    await db.delete(take.id);
    const url = state.urls.get(take.id);
    if (url) URL.revokeObjectURL(url);
    state.urls.delete(take.id);
  }
  state.takes = state.takes.filter((t) => t.starred);
  renderTakes();
}

function moveSelection(step) {
  const order = [...visibleTakes()].reverse(); // the list shows newest first
  if (!order.length) return;
  const at = order.findIndex((t) => t.id === currentTake()?.id);
  const next = order[Math.max(0, Math.min(order.length - 1, at < 0 ? 0 : at + step))];
  select(next.id);
}

// ---------------------------------------------------------------------------------------------------------------------
// Waveforms: peaks from the decoded audio, drawn on a canvas, with the played part in the accent colour.

let decoder = null;

async function computePeaks(take, buckets = 240) {
  try {
    // A low sample rate keeps a 10-minute take small in memory; the envelope barely changes.
    decoder ??= new OfflineAudioContext(1, 1, 8000);
    const buffer = await decoder.decodeAudioData(await take.blob.arrayBuffer());
    const peaks = new Array(buckets).fill(0);
    const per = Math.max(1, Math.floor(buffer.length / buckets));
    for (let c = 0; c < buffer.numberOfChannels; c++) {
      const data = buffer.getChannelData(c);
      for (let b = 0; b < buckets; b++) {
        let peak = 0;
        const end = Math.min(data.length, (b + 1) * per);
        for (let i = b * per; i < end; i++) peak = Math.max(peak, Math.abs(data[i]));
        peaks[b] = Math.max(peaks[b], peak);
      }
    }
    take.peaks = peaks.map((p) => Math.round(Math.min(1, p) * 1000) / 1000);
    await db.put(take);
  } catch {
    take.peaks = [];
  }
}

function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function drawWave(node) {
  const take = findTake(node.dataset.id);
  const canvas = $(".wave", node);
  if (!take || !canvas.isConnected) return;
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const audio = $("audio", node);
  const length = audio.duration || take.duration || 1;
  const played = Math.min(1, (audio.currentTime || 0) / length);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  const peaks = take.peaks?.length ? take.peaks : null;
  const bars = peaks ? peaks.length : 1;
  const step = width / bars;
  const accent = cssColor("--accent");
  const muted = cssColor("--wave");
  for (let i = 0; i < bars; i++) {
    const amp = peaks ? Math.max(0.04, peaks[i]) : 0.04;
    const h = amp * (height - 2);
    ctx.fillStyle = (i + 0.5) / bars <= played ? accent : muted;
    ctx.fillRect(i * step, (height - h) / 2, Math.max(1, step - ratio), h);
  }
  // Playhead.
  ctx.fillStyle = cssColor("--fg");
  ctx.fillRect(Math.min(width - ratio, played * width), 0, ratio * 1.5, height);
}

function drawPosition(node) {
  const audio = $("audio", node);
  $(".pos", node).textContent = formatTime(audio.currentTime);
  const seek = $(".seek", node);
  seek.value = String(audio.currentTime);
  seek.setAttribute("aria-valuetext", `${formatTime(audio.currentTime)} of ${formatTime(audio.duration)}`);
  drawWave(node);
}

function animate(node) {
  const audio = $("audio", node);
  const frame = () => {
    if (audio.paused || !node.isConnected) return;
    drawPosition(node);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

// ---------------------------------------------------------------------------------------------------------------------
// Keyboard: the TUI's keys where a browser lets them be (Ctrl+R stays the browser's reload; r regenerates).

const KEYS = [
  ["Anywhere", [
    ["Ctrl+Enter, Ctrl+G", "Generate from the prompt and settings"],
    ["Esc", "Cancel the newest running job (or leave a text field)"],
    ["/, Ctrl+B", "Move to the prompt"],
    ["?, F1", "This list"],
  ]],
  ["Outside text fields", [
    ["t", "Move to the takes"],
    ["Space", "Play or pause the selected take"],
    ["x", "Stop"],
    ["o", "Loop on or off"],
    ["← / →", "Seek 5 seconds back / forward"],
    ["+ / −", "Volume up / down"],
    ["↑ ↓ or k j", "Previous / next take"],
  ]],
  ["The selected take", [
    ["Enter", "Play from the start"],
    ["s", "Star or unstar"],
    ["l", "Use these settings (prompt, model, seed, parameters)"],
    ["r", "Again: same settings, new seed (outside the takes: the last request, new seed)"],
    ["Shift+R", "Again with the same seed"],
    ["d, Delete", "Delete"],
    ["u", "Bring back the last deleted take"],
  ]],
];

function renderHelp() {
  const root = $("#help-keys");
  root.replaceChildren(
    ...KEYS.map(([title, rows]) =>
      el(
        "section",
        {},
        el("h3", { text: title }),
        el(
          "dl",
          {},
          ...rows.flatMap(([keys, what]) => [
            el("dt", {}, ...keys.split(", ").flatMap((k, i) => [i ? ", " : null, el("kbd", { text: k })])),
            el("dd", { text: what }),
          ]),
        ),
      ),
    ),
  );
}

function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  return target instanceof HTMLInputElement && !["checkbox", "radio", "range", "button"].includes(target.type);
}

function onKeyDown(event) {
  if ($("dialog[open]")) return; // dialogs handle their own keys (Esc closes them)
  const ctrl = event.ctrlKey || event.metaKey;
  const key = event.key;
  const target = event.target;

  if (ctrl && (key === "Enter" || key.toLowerCase() === "g")) {
    event.preventDefault();
    generateFromForm();
    return;
  }
  if (ctrl && key.toLowerCase() === "b") {
    event.preventDefault();
    $("#prompt").focus();
    return;
  }
  if (key === "Escape") {
    if (cancelLatest()) event.preventDefault();
    else if (isTyping(target)) target.blur();
    return;
  }
  if (key === "F1") {
    event.preventDefault();
    $("#help-dialog").showModal();
    return;
  }
  if (ctrl || event.altKey || isTyping(target)) return;

  const onControl = target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement;
  const take = currentTake();
  const audio = take ? audioOf(take.id) : null;
  const handled = () => event.preventDefault();

  switch (key) {
    case "?":
      handled();
      $("#help-dialog").showModal();
      return;
    case "/":
      handled();
      $("#prompt").focus();
      return;
    case "t": // the TUI's Ctrl+T; a browser keeps Ctrl+T (new tab) for itself
      if (take) select(take.id);
      return;
    case " ":
      if (onControl || !take) return; // Space on a button presses that button
      handled();
      togglePlay(take.id);
      return;
    case "Enter":
      if (onControl || !take || !target.classList?.contains("take")) return;
      handled();
      audio.currentTime = 0;
      if (audio.paused) togglePlay(take.id);
      return;
    case "x":
      if (audio) {
        audio.pause();
        audio.currentTime = 0;
      }
      return;
    case "o":
      if (take) toggleLoop(take.id);
      return;
    case "s":
      if (take) toggleStar(take.id);
      return;
    case "l":
      if (take) useSettings(take.id);
      return;
    case "r":
      if (take && target.closest?.(".take")) again(take.id, { sameSeed: false });
      else regenerate();
      return;
    case "R":
      if (take) again(take.id, { sameSeed: true });
      return;
    case "d":
    case "Delete":
      if (take) deleteTake(take.id);
      return;
    case "u":
      undoDelete();
      return;
    case "ArrowLeft":
    case "ArrowRight":
      if (!audio || target.type === "range") return;
      handled();
      audio.currentTime = Math.max(0, Math.min(audio.duration || 0, audio.currentTime + (key === "ArrowLeft" ? -5 : 5)));
      return;
    case "+":
    case "=":
      if (audio) audio.volume = Math.min(1, audio.volume + 0.1);
      return;
    case "-":
      if (audio) audio.volume = Math.max(0, audio.volume - 0.1);
      return;
    case "ArrowDown":
    case "j":
      handled();
      moveSelection(1);
      return;
    case "ArrowUp":
    case "k":
      handled();
      moveSelection(-1);
      return;
    default:
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Start-up

function wire() {
  $("#compose").addEventListener("submit", (event) => {
    event.preventDefault();
    generateFromForm();
  });
  $("#regenerate").addEventListener("click", regenerate);
  $("#regenerate").disabled = !state.lastRequest;
  $("#model").addEventListener("change", (event) => {
    captureDraft();
    selectModel(event.target.value);
    clearErrors();
  });
  $("#compose").addEventListener("input", (event) => {
    captureDraft();
    // Typing into a field clears its error: the message was about the old value.
    const field = event.target.closest(".field");
    if (field?.classList.contains("invalid")) {
      field.classList.remove("invalid");
      $(".error", field).textContent = "";
      event.target.removeAttribute("aria-invalid");
    }
  });
  $("#seed-random").addEventListener("click", () => {
    $("#seed").value = "";
    captureDraft();
  });
  $("#starred-only").addEventListener("change", renderTakes);
  $("#clear-takes").addEventListener("click", clearUnstarred);
  $("#help-button").addEventListener("click", () => $("#help-dialog").showModal());
  $("#key-button").addEventListener("click", openKeyDialog);
  $("#key-form").addEventListener("submit", async (event) => {
    const action = event.submitter?.value;
    if (action === "cancel") return; // method=dialog closes it
    event.preventDefault();
    const ok = await saveKey(action === "forget" ? "" : $("#api-key").value.trim());
    if (ok) {
      $("#key-dialog").close();
      toast(action === "forget" ? "Key forgotten." : "Key saved; the server accepts it.");
      checkHealth();
      resumePending();
    } else {
      $("#key-error").textContent ||= keyDialogReason || "The server refused this key.";
    }
  });
  document.addEventListener("keydown", onKeyDown);
  window.addEventListener("resize", () => state.elements.forEach((node) => drawWave(node)));
}

async function main() {
  wire();
  renderHelp();
  renderKeyState();
  restoreDraft();
  try {
    state.takes = (await db.all()).sort((a, b) => a.created - b.created);
  } catch (error) {
    toast(`This browser cannot keep takes (IndexedDB: ${error.message}).`, "warn", 8000);
  }
  renderTakes();
  const last = state.takes.at(-1);
  if (last) select(last.id, { focus: false });

  while (!(await checkHealth())) await sleep(3000);
  try {
    await loadModels();
    resumePending();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) toast(`Cannot list the models: ${error.message}`, "error");
  }
  document.body.dataset.ready = "true"; // tests wait for this
}

main();
