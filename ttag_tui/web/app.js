// ttag web UI: plain ES module, no build step, no external URLs.
//
// Everything goes through the public REST API (api/health, api/models, api/jobs…) and the job stream
// (api/jobs/{id}/events, a WebSocket), with paths relative to the page so the UI also works behind a reverse proxy
// that serves ttag under a sub-path. Takes are kept in this browser (IndexedDB: metadata + audio blob) because the
// server drops finished jobs after a while.
//
// One declaration per concept: models, their parameters, ranges and defaults come from api/models; the request's
// fields, formats and limits from the API schema (openapi.json, GenerateBody). Nothing here repeats them.

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
const LS_THEME = "ttag.theme";
const LS_TRASH = "ttag.trash";
const LS_NEXT = "ttag.nextNumber";
const LS_UPLOADS = "ttag.uploads";

const UNDO_MS = 10 * 60 * 1000; // deleted takes can be brought back for 10 minutes, across reloads
const HEALTH_EVERY_MS = 10_000; // the header's probe while the server answers…
const HEALTH_RETRY_MS = 2_000; // …and while it does not
const LIVE_LEAD_S = 0.25; // how far ahead of the clock live audio starts (absorbs network jitter)
const WAVE_BUCKETS = 240;

// Example prompts per kind of model (the kind comes from api/models); data, not a list per model id.
const EXAMPLES = {
  music: ["lofi hip hop with piano and rain, 85 bpm", "dark techno, 130 bpm, in A minor", "cinematic strings, slow, hopeful"],
  "sound effects": ["rain on a tin roof, distant thunder", "footsteps on gravel", "a busy city street at night"],
  "music and sound": ["ambient pad with ocean waves", "house, 124 bpm, with birds", "drum and bass, fast, heavy rain"],
};

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

// One toast at a time, in the top bar (never over the page's controls); an action (Undo) is a real button.
let toastTimer = null;

function toast(message, kind = "info", ms = 4000, action = null) {
  const box = $("#toasts");
  clearTimeout(toastTimer);
  const node = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" });
  const dismiss = () => {
    node.classList.add("leaving");
    setTimeout(() => node.remove(), 300);
  };
  node.append(el("span", { class: "toast-text", text: message, title: message }));
  if (action) {
    node.append(
      el("button", {
        type: "button",
        class: "toast-action",
        text: action.label,
        onclick: () => {
          dismiss();
          action.run();
        },
      }),
    );
  }
  node.append(el("button", { type: "button", class: "icon-btn toast-close", "aria-label": "Dismiss", title: "Dismiss", onclick: dismiss }, icon("x")));
  box.replaceChildren(node);
  if (kind !== "info") announce(message);
  toastTimer = setTimeout(dismiss, Math.max(ms, message.length * 60));
  return node;
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

// What an Authorization header can carry, as the server's api_keys allow: printable ASCII, no space or comma. A browser
// throws on anything else before the request leaves, which would read as "server unreachable".
const KEY_CHARACTERS = /^[\x21-\x2b\x2d-\x7e]+$/;

function apiKey() {
  const key = localStorage.getItem(LS_KEY) || "";
  return KEY_CHARACTERS.test(key) ? key : ""; // one stored before this check: as if none, so the page asks again
}

// A Blob (a File) goes as the body itself (api/uploads); anything else as JSON.
async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const file = body instanceof Blob;
  if (body !== undefined) headers["Content-Type"] = file ? body.type || "application/octet-stream" : "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined || file ? body : JSON.stringify(body),
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (error.name !== "AbortError") serverDown(); // any failed request says the server cannot be reached
    throw error;
  }
  if ([502, 503, 504].includes(response.status) && !response.headers.get("content-type")?.includes("json")) serverDown();
  else serverAnswered();
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
// A deleted take stays (with ``deletedAt``) for UNDO_MS, so undo survives a reload too.

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
  putAll: (takes) => dbRun("readwrite", (s) => takes.forEach((t) => s.put(t))),
  delete: (id) => dbRun("readwrite", (s) => s.delete(id)),
  deleteAll: (ids) => dbRun("readwrite", (s) => ids.forEach((id) => s.delete(id))),
};

// ---------------------------------------------------------------------------------------------------------------------
// State

const state = {
  models: [],
  spec: null,
  body: {}, // GenerateBody's properties from the API schema
  takes: [], // oldest first
  deleted: new Map(), // take id → deleted take (kept for undo until UNDO_MS has passed)
  jobs: new Map(), // job id → entry (its card, its live audio)
  lastRequest: readJSON(LS_LAST, null),
  selectedId: null,
  urls: new Map(), // take id → object URL of its blob
  elements: new Map(), // take id → <li>
  live: new Map(), // take id → the live stream still playing it
  draft: readJSON(LS_DRAFT, { values: {} }),
  serverOk: false,
  version: "",
};

// ---------------------------------------------------------------------------------------------------------------------
// Server status: the header says whether the server can be reached. Any request that fails to connect marks it down;
// a probe of api/health runs every HEALTH_EVERY_MS (every HEALTH_RETRY_MS while down) and brings it back.

function renderServer(reachable, text) {
  const status = $("#server-status");
  status.dataset.state = reachable ? "ok" : "down";
  status.textContent = text;
  state.serverOk = reachable;
}

function serverDown() {
  if (state.serverOk || $("#server-status").dataset.state !== "down") renderServer(false, "server unreachable — retrying…");
  wakeProbe();
}

function serverAnswered() {
  if (!state.serverOk && state.version) renderServer(true, `server ok · ttag ${state.version}`);
}

async function checkHealth() {
  try {
    const health = await api("api/health");
    state.version = health.version;
    renderServer(true, `server ok · ttag ${health.version}`);
    return true;
  } catch (error) {
    if (error instanceof ApiError) renderServer(false, `server error: ${error.message}`);
    else renderServer(false, "server unreachable — retrying…");
    return false;
  }
}

let probeWake = null;

function wakeProbe() {
  probeWake?.();
}

async function probeForever() {
  for (;;) {
    await new Promise((resolve) => {
      probeWake = resolve;
      setTimeout(resolve, state.serverOk ? HEALTH_EVERY_MS : HEALTH_RETRY_MS);
    });
    probeWake = null;
    if (!state.serverOk) await sleep(HEALTH_RETRY_MS / 2);
    await checkHealth();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Theme: the system's, or one chosen here (remembered).

const systemLight = matchMedia("(prefers-color-scheme: light)");

function applyTheme() {
  const choice = localStorage.getItem(LS_THEME) || "system";
  const theme = choice === "system" ? (systemLight.matches ? "light" : "dark") : choice;
  document.documentElement.dataset.theme = theme;
  $("#theme").value = choice;
  state.elements.forEach((node) => drawWave(node));
  state.jobs.forEach((entry) => drawJobWave(entry));
}

// ---------------------------------------------------------------------------------------------------------------------
// API key

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
  if (value && !KEY_CHARACTERS.test(value)) {
    $("#key-error").textContent = "That cannot be a key: keys are ASCII letters, digits and symbols, with no spaces or commas.";
    return false;
  }
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
// The request's schema (GenerateBody in openapi.json): which fields exist, their titles, formats and limits.

async function loadSchema() {
  const response = await fetch("openapi.json", { cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  const schema = await response.json();
  state.body = schema.components.schemas.GenerateBody.properties;
  const formats = fieldSchema("format").enum || [];
  const select = $("#format");
  select.replaceChildren(...formats.map((f) => el("option", { value: f, text: f.toUpperCase() })));
  // Not the textarea's maxLength: that cuts a long paste without a word (and counts an emoji as two).
  for (const name of TEXT_FIELDS) {
    const limit = fieldSchema(name).maxLength;
    if (limit) $(`#${name}`).dataset.limit = String(limit);
  }
  const takes = fieldSchema("takes");
  $("#takes-range").textContent = `${takes.minimum}–${takes.maximum}`;
  $("#takes").placeholder = String(takes.minimum);
}

// A field's schema without its ``null`` alternative, with its title.
function fieldSchema(name) {
  const property = state.body[name];
  if (!property) return {};
  const variant = (property.anyOf || [property]).find((v) => v.type !== "null") || {};
  return { ...variant, title: property.title, default: property.default };
}

function paramLabel(name) {
  const title = fieldSchema(name).title || name;
  return title.charAt(0) + title.slice(1).toLowerCase(); // "Top K" → "Top k", as a label reads
}

// ---------------------------------------------------------------------------------------------------------------------
// Models and settings

async function loadModels() {
  const models = await api("api/models");
  state.models = models;
  const select = $("#model");
  const wanted = state.draft.model || select.value;
  const option = (m) => el("option", { value: m.id, text: m.available ? m.id : `${m.id} — unavailable` });
  const available = models.filter((m) => m.available);
  const unavailable = models.filter((m) => !m.available);
  const groups = [];
  if (available.length) groups.push(el("optgroup", { label: `Available on this server (${available.length})` }, ...available.map(option)));
  if (unavailable.length) groups.push(el("optgroup", { label: `Not available yet — needs setup (${unavailable.length})` }, ...unavailable.map(option)));
  select.replaceChildren(...groups);
  const fallback = available[0] || models[0];
  select.value = models.some((m) => m.id === wanted) ? wanted : fallback?.id ?? "";
  selectModel(select.value);
  return models;
}

// The command a reason names (`ttag runners setup x`, or "…: ttag models pull x").
function fixCommand(reason) {
  const quoted = reason.match(/`([^`]+)`/);
  if (quoted) return quoted[1];
  const tail = reason.match(/(ttag [\w .:/-]+)$/);
  return tail ? tail[1].trim() : "";
}

function selectModel(id) {
  const spec = state.models.find((m) => m.id === id) || null;
  state.spec = spec;
  state.draft.model = id;
  saveDraft();
  const info = $("#model-info");
  info.replaceChildren();
  if (spec) {
    if (spec.available) info.append(el("span", { class: "badge ok", text: "available" }), " ");
    info.append(spec.description || "");
  }
  const unavailable = Boolean(spec && !spec.available);
  $("#model-fix").hidden = !unavailable;
  if (unavailable) {
    const reason = spec.reason || "this server cannot run it";
    $("#model-reason").textContent = reason;
    const command = fixCommand(reason);
    $("#model-run").textContent = command;
    $("#model-run-line").hidden = !command;
  }
  $("#understands").hidden = !spec?.understands;
  $("#understands-model").textContent = spec?.id || "";
  $("#prompt-hint").textContent = spec?.understands || "";
  renderExamples(spec);
  renderSettings(spec);
  updateGenerateState();
}

function updateGenerateState() {
  const spec = state.spec;
  const blocked = Boolean(spec && !spec.available);
  $("#generate").disabled = blocked || state.submitting === true;
  $("#generate-why").textContent = blocked ? `Generate is off: ${spec.id} cannot run on this server (see above).` : "";
}

function renderExamples(spec) {
  const box = $("#examples");
  const examples = EXAMPLES[spec?.kind] || [];
  box.replaceChildren(
    ...(examples.length ? [el("span", { class: "hint", text: "Try:" })] : []),
    ...examples.map((text) =>
      el("button", {
        type: "button",
        class: "example",
        text,
        title: "Use this prompt",
        onclick: () => {
          $("#prompt").value = text;
          captureDraft();
          validateField($("#prompt"));
          $("#prompt").focus();
        },
      }),
    ),
  );
}

// The model's own parameters: those it lists in api/models that the request schema takes (not audio file paths).
function modelParams(spec) {
  return (spec?.params || []).filter((p) => p.name in state.body);
}

function renderSettings(spec) {
  const duration = $("#duration");
  if (spec) {
    duration.placeholder = formatNumber(spec.default_duration);
    $("#duration-range").textContent = `${formatNumber(spec.min_duration)}–${formatNumber(spec.max_duration)} s`;
  }
  $$(".param-field").forEach((node) => node.remove());
  const grid = $("#settings-grid");
  for (const param of modelParams(spec)) {
    if (param.name === "negative_prompt" || param.type === "audio") continue; // their own controls, below the model
    const id = param.name;
    const numeric = param.type === "int" || param.type === "float";
    const range =
      param.minimum !== null && param.maximum !== null
        ? `${formatNumber(param.minimum)}–${formatNumber(param.maximum)}`
        : param.minimum !== null
          ? `≥ ${formatNumber(param.minimum)}`
          : "";
    const input = el("input", {
      id,
      name: id,
      type: "text",
      inputmode: numeric ? (param.type === "int" ? "numeric" : "decimal") : undefined,
      autocomplete: "off",
      min: param.minimum ?? undefined,
      max: param.maximum ?? undefined,
      placeholder: param.default === null ? "" : numeric ? formatNumber(param.default) : String(param.default),
      title: param.help || undefined,
      "aria-describedby": `${id}-error ${id}-hint`,
      "data-type": param.type,
    });
    input.value = state.draft.values?.[id] ?? "";
    grid.append(
      el(
        "div",
        { class: `field param-field${numeric ? "" : " wide-field"}`, "data-field": id },
        el("label", { for: id, text: paramLabel(id) }),
        input,
        el("p", { class: "hint range", id: `${id}-hint`, text: range, title: param.help || undefined }),
        el("p", { class: "error", id: `${id}-error`, role: "alert" }),
      ),
    );
  }
  $("#negative-field").hidden = !modelParams(spec).some((p) => p.name === "negative_prompt");
  renderAudioInputs(spec);
  // What was typed stays when the model changes; its message follows the new model's limits.
  for (const input of $$("#settings-grid input")) if (input.value) validateField(input);
}

// ---------------------------------------------------------------------------------------------------------------------
// Audio files a model takes (a melody to follow, audio to continue): the file goes to api/uploads, which keeps it and
// answers with an id, its duration and format; the job names it by that id (the server never opens a client's path).
// What is chosen stays in the draft, per parameter, across model changes and reloads (the server forgets it after a
// while, and then says so next to the control).

function audioParams(spec) {
  return modelParams(spec).filter((p) => p.type === "audio");
}

function renderAudioInputs(spec) {
  $("#audio-inputs").replaceChildren(...audioParams(spec).map(audioField));
}

function audioField(param) {
  const name = param.name;
  const label = paramLabel(name);
  const input = el("input", { type: "file", id: `${name}-file`, accept: "audio/*", class: "sr-only", tabindex: "-1", "aria-hidden": "true" });
  const choose = el("button", { type: "button", class: "choose", id: name, name, "aria-describedby": `${name}-error ${name}-hint` }, "Choose a file…");
  const remove = el("button", { type: "button", class: "icon-btn remove", "aria-label": `Remove the ${label.toLowerCase()} file`, title: "Remove" }, icon("x"));
  const zone = el(
    "div",
    { class: "drop", "data-state": "empty" },
    el("span", { class: "drop-empty" }, choose, el("span", { class: "hint", text: "or drop an audio file here" })),
    el("span", { class: "drop-busy hint", role: "status" }),
    el("span", { class: "drop-chosen" }, el("span", { class: "upload-name" }), el("span", { class: "upload-length hint range" }), remove),
    input,
  );
  const field = el(
    "div",
    { class: "field audio-field", "data-field": name },
    el("label", { for: name, text: label }),
    zone,
    el("p", { class: "hint", id: `${name}-hint`, text: param.help || "" }),
    el("p", { class: "error", id: `${name}-error`, role: "alert" }),
  );
  choose.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    if (input.files[0]) uploadAudio(field, input.files[0]);
    input.value = "";
  });
  remove.addEventListener("click", () => {
    delete state.draft.uploads[name];
    saveDraft();
    showUpload(field);
    choose.focus();
  });
  zone.addEventListener("dragover", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) uploadAudio(field, file);
  });
  showUpload(field);
  return field;
}

// The control's three states share one box of one height: choosing, uploading or showing a file moves nothing.
function showUpload(field, busy = "") {
  const chosen = state.draft.uploads?.[field.dataset.field];
  const zone = $(".drop", field);
  zone.dataset.state = busy ? "busy" : chosen ? "chosen" : "empty";
  $(".drop-busy", zone).textContent = busy;
  $(".upload-name", zone).textContent = chosen?.name || "";
  $(".upload-name", zone).title = chosen?.name || "";
  const known = chosen?.duration !== undefined;
  const channels = chosen?.channels === 1 ? "mono" : `${chosen?.channels} ch`;
  $(".upload-length", zone).textContent = known ? `${formatTime(chosen.duration)} · ${channels} · ${chosen.sample_rate / 1000} kHz` : "";
}

async function uploadAudio(field, file) {
  const name = field.dataset.field;
  const choose = $(`#${CSS.escape(name)}`);
  setFieldError(choose, "");
  showUpload(field, `uploading ${file.name}…`);
  try {
    const kept = await api("api/uploads", { method: "POST", body: file });
    state.draft.uploads ??= {};
    state.draft.uploads[name] = { id: kept.id, name: file.name, duration: kept.duration, channels: kept.channels, sample_rate: kept.sample_rate };
    saveDraft();
    // Remembered by id, so a take's "Use these settings" shows the file it was made with.
    writeJSON(LS_UPLOADS, [state.draft.uploads[name], ...readJSON(LS_UPLOADS, []).filter((u) => u.id !== kept.id)].slice(0, 32));
    announce(`${file.name} uploaded`);
  } catch (error) {
    const message = error instanceof ApiError ? error.message : `cannot reach the server: ${error.message}`;
    setFieldError(choose, `${file.name}: ${message}`);
  }
  if (field.isConnected) showUpload(field);
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
    if (value !== undefined && value !== "") $(`#${name}`).value = value;
  }
  if (!$("#format").value) $("#format").value = $("#format").options[0]?.value ?? "";
}

function clearErrors() {
  $$(".field.invalid").forEach((node) => node.classList.remove("invalid"));
  $$("#compose .error").forEach((node) => (node.textContent = ""));
  $$("#compose [aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
}

function setFieldError(input, message) {
  const field = input.closest(".field");
  const target = $(`#${CSS.escape(input.name)}-error`);
  if (target) target.textContent = message;
  field?.classList.toggle("invalid", Boolean(message));
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
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

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

// The server's words for a number too large for a double: JSON would carry it (Infinity) as null, the default, so such
// a field is refused here and nothing is sent.
const NOT_FINITE = "must be a finite number";

// A numeric field's value as the request takes it: a number, or the text as typed (the server then says why not).
function fieldValue(input) {
  const text = input.value.trim();
  if (text === "") return undefined;
  return NUMBER.test(text) ? Number(text) : text;
}

// The form's numeric inputs: duration, takes, seed and the model's number parameters.
function numericInputs() {
  return [$("#duration"), $("#takes"), $("#seed"), ...$$(".param-field input")].filter((input) =>
    ["int", "float"].includes(input.dataset.type),
  );
}

// The limits of a numeric field: the model's (duration, its parameters) or the schema's (takes, seed).
function limitsOf(name) {
  const spec = state.spec;
  if (name === "duration") return spec ? { min: spec.min_duration, max: spec.max_duration, type: "float" } : null;
  const param = modelParams(spec).find((p) => p.name === name);
  if (param) return { min: param.minimum, max: param.maximum, type: param.type };
  const schema = fieldSchema(name);
  if (!schema.type) return null;
  return { min: schema.minimum ?? null, max: schema.maximum ?? null, type: schema.type === "integer" ? "int" : "float" };
}

const TEXT_FIELDS = ["prompt", "negative_prompt"];

// A text field over the schema's maxLength, in the server's words; it counts characters as the server does (code
// points), so what is refused here is what the server would refuse.
function textTooLong(input) {
  const limit = Number(input.dataset.limit);
  const length = [...input.value].length;
  return limit && length > limit ? `is too long (${length} characters; the limit is ${limit})` : "";
}

// As the user types: the message the server would give, in its words, so nothing typed is dropped silently.
function validateField(input) {
  const name = input.name;
  if (TEXT_FIELDS.includes(name)) {
    const message = textTooLong(input);
    // The server's "is empty" stays until something is typed; any other message was about the text before.
    const empty = !message && !input.value.trim() && $(`#${name}-error`).textContent.startsWith("is empty");
    if (!empty) setFieldError(input, message);
    return message;
  }
  const limits = limitsOf(name);
  if (!limits || !["int", "float"].includes(limits.type)) {
    setFieldError(input, "");
    return "";
  }
  const value = fieldValue(input);
  let message = "";
  if (value === undefined) message = "";
  else if (typeof value === "string") message = "must be a number, not text";
  else if (!Number.isFinite(value)) message = NOT_FINITE;
  else if (limits.type === "int" && !Number.isInteger(value)) message = `must be a whole number (got ${formatNumber(value)})`;
  else if ((limits.min !== null && value < limits.min) || (limits.max !== null && value > limits.max)) {
    const unit = name === "duration" ? ` seconds for ${state.spec.id}` : "";
    const range = limits.max === null ? `at least ${formatNumber(limits.min)}` : `between ${formatNumber(limits.min)} and ${formatNumber(limits.max)}`;
    message = `must be ${range}${unit} (got ${formatNumber(value)})`;
  }
  setFieldError(input, message);
  return message;
}

// The body for POST /api/jobs from the form. Empty fields are left out, so the model's defaults apply.
function collectBody() {
  const body = { prompt: $("#prompt").value, model: $("#model").value, format: $("#format").value || undefined };
  for (const input of [$("#duration"), $("#takes"), $("#seed"), ...$$(".param-field input")]) {
    const numeric = ["int", "float"].includes(input.dataset.type);
    const value = numeric ? fieldValue(input) : input.value.trim() || undefined;
    if (value !== undefined) body[input.name] = value;
  }
  const negative = $("#negative_prompt");
  if (!$("#negative-field").hidden && negative.value.trim()) body.negative_prompt = negative.value;
  for (const param of audioParams(state.spec)) {
    const chosen = state.draft.uploads?.[param.name];
    if (chosen) body[param.name] = chosen.id;
  }
  return body;
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
  $("#format").value = request.format || $("#format").options[0]?.value;
  for (const input of $$(".param-field input")) input.value = request[input.name] ?? "";
  state.draft.uploads = {};
  for (const param of audioParams(state.spec)) {
    const id = request[param.name];
    if (id) state.draft.uploads[param.name] = readJSON(LS_UPLOADS, []).find((u) => u.id === id) || { id, name: "the file this take was made with" };
  }
  renderAudioInputs(state.spec);
  clearErrors();
  captureDraft();
}

// ---------------------------------------------------------------------------------------------------------------------
// Jobs: submit, then follow each one — over the job stream (WebSocket) when it connects, by polling otherwise — in a
// card at the top of the takes that fills in, and plays, as the take is generated.

async function generateFromForm() {
  if (state.spec && !state.spec.available) {
    $("#model").focus();
    return;
  }
  clearErrors();
  captureDraft();
  // What the server would refuse anyway is kept here, so a long paste or a number past a double is fixed in place.
  const unsendable = [...TEXT_FIELDS.map((name) => $(`#${name}`)), ...numericInputs()].find(
    (input) => !input.closest("[hidden]") && (validateField(input) === NOT_FINITE || textTooLong(input)),
  );
  if (unsendable) {
    unsendable.focus();
    return;
  }
  await submit(collectBody(), { fromForm: true });
}

async function submit(body, { fromForm = false } = {}) {
  // A user's gesture: the moment a browser lets a page start audio, so the live player's clock starts here.
  const spec = state.models.find((m) => m.id === body.model);
  if (spec) audioContext(spec.sample_rate);
  let job;
  state.submitting = true;
  updateGenerateState();
  try {
    job = await api("api/jobs", { method: "POST", body: { ...body, stream: true } });
  } catch (error) {
    handleSubmitError(error, fromForm);
    return null;
  } finally {
    state.submitting = false;
    updateGenerateState();
  }
  state.lastRequest = { ...body };
  writeJSON(LS_LAST, state.lastRequest);
  $("#regenerate").disabled = false;
  writeJSON(LS_PENDING, [...readJSON(LS_PENDING, []), { id: job.id, body }]);
  const entry = trackJob(job, body, { listen: true });
  // Bring the card into view where the form stays in view too (wide screens), or when the user is not typing.
  if (!matchMedia("(max-width: 760px)").matches || !isTyping(document.activeElement)) {
    entry.node.scrollIntoView({ block: "nearest" });
  }
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
  const spec = state.models.find((m) => m.id === body.model);
  const duration = typeof body.duration === "number" ? body.duration : spec?.default_duration;
  const takes = body.takes && body.takes > 1 ? ` · ${body.takes} takes` : "";
  const seconds = duration ? ` · ${formatNumber(duration)} s` : "";
  const seed = body.seed !== undefined ? ` · seed ${body.seed}` : "";
  return `${body.model}${seconds}${takes}${seed}`;
}

function trackJob(job, body, { listen = false } = {}) {
  const node = $("#job-template").content.firstElementChild.cloneNode(true);
  node.dataset.job = job.id;
  node.dataset.state = job.state;
  $(".job-prompt", node).textContent = body.prompt;
  $(".job-prompt", node).title = body.prompt;
  $(".job-model", node).textContent = jobLabel(body);
  const spec = state.models.find((m) => m.id === body.model);
  const duration = typeof body.duration === "number" ? body.duration : spec?.default_duration || 0;
  $(".len", node).textContent = formatTime(duration);
  const entry = {
    id: job.id,
    body,
    node,
    model: job.model || body.model,
    bar: $("progress", node),
    status: $(".job-status", node),
    etaNode: $(".job-eta", node),
    cancel: $(".cancel", node),
    listenButton: $(".listen", node),
    canvas: $(".wave", node),
    duration,
    takes: job.takes || body.takes || 1,
    rate: spec?.sample_rate || 44100,
    channels: spec?.channels || 2,
    live: null,
    wantListen: listen,
    cancelled: false,
    ended: false,
    eta: null,
  };
  entry.bar.setAttribute("aria-label", `Progress of “${body.prompt.slice(0, 60)}”`);
  state.jobs.set(job.id, entry);
  $("#jobs").prepend(node);
  $("#takes-empty").hidden = true;
  announce(`Generating: ${body.prompt}`);
  entry.cancel.addEventListener("click", () => cancelJob(job.id));
  entry.listenButton.addEventListener("click", () => toggleListen(entry));
  new ResizeObserver(() => drawJobWave(entry)).observe(entry.canvas);
  renderListen(entry);
  applyStatus(entry, job);
  follow(job.id, entry);
  return entry;
}

async function follow(id, entry) {
  const how = await followSocket(id, entry);
  if (how === "ended" || entry.ended) return;
  await poll(id, entry); // the fallback: no WebSocket (a proxy that drops upgrades, an older server) or it was lost
}

function describeState(job) {
  const p = job.progress || {};
  if (job.state === "queued") return "queued — waiting for the model";
  const parts = [p.phase || job.state];
  if (p.total) parts.push(`${p.step}/${p.total}`);
  return parts.join(" · ");
}

// The time left, smoothed: raw estimates jump about (6 s, 9 s, 6 s); this counts down with the clock, moves a third of
// the way towards each new estimate, and never goes up by more than a second.
function smoothEta(entry, raw) {
  const now = performance.now() / 1000;
  if (raw === null || raw === undefined || !Number.isFinite(raw)) return entry.eta;
  if (entry.eta === null) {
    entry.eta = raw;
  } else {
    const predicted = Math.max(0, entry.eta - (now - entry.etaAt));
    entry.eta = Math.min(predicted + 0.35 * (raw - predicted), predicted + 1);
  }
  entry.etaAt = now;
  return entry.eta;
}

function applyStatus(entry, job) {
  if (entry.ended) return;
  entry.node.dataset.state = job.state;
  if (job.model) entry.model = job.model;
  applyProgress(entry, job.state, job.progress || {});
}

function applyProgress(entry, jobState, p) {
  if (jobState === "running" && p.total) entry.bar.value = Math.min(1, p.step / p.total);
  else entry.bar.removeAttribute("value"); // queued, or running before the first step
  entry.status.textContent = describeState({ state: jobState, progress: p });
  const eta = jobState === "running" ? smoothEta(entry, p.eta_s) : null;
  if (eta !== null && eta > 0.5) {
    const shown = Math.ceil(eta);
    entry.etaNode.textContent = `· about ${shown} s left`;
    entry.etaNode.dataset.eta = String(shown);
  } else {
    entry.etaNode.textContent = "";
    delete entry.etaNode.dataset.eta;
  }
}

// The job stream. Resolves "ended" after the job's end event, "unavailable" when it never opened, "lost" otherwise.
function followSocket(id, entry) {
  return new Promise((resolve) => {
    if (typeof WebSocket !== "function") {
      resolve("unavailable");
      return;
    }
    const url = new URL(`api/jobs/${id}/events`, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const key = apiKey();
    const protocols = key ? ["ttag.v1", `bearer.${key}`] : ["ttag.v1"];
    let socket;
    try {
      socket = new WebSocket(url, protocols);
    } catch {
      resolve("unavailable");
      return;
    }
    socket.binaryType = "arraybuffer";
    entry.socket = socket;
    let opened = false;
    let ended = false;
    socket.onopen = () => {
      opened = true;
      serverAnswered();
    };
    socket.onmessage = (message) => {
      if (typeof message.data !== "string") {
        onAudioFrame(entry, message.data);
        return;
      }
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      entry.transport = "websocket";
      if (event.type === "status") {
        applyStatus(entry, event);
        if (["done", "failed", "cancelled"].includes(event.state)) {
          ended = true; // an ended job answers its status, then its end event
          endJob(entry, event);
        }
      } else if (event.type === "started") applyStatus(entry, { state: "running", progress: {} });
      else if (event.type === "progress") applyProgress(entry, "running", event);
      else if (event.type === "take") onTakeMade(entry, event);
      else if (event.type === "audio_dropped") entry.live?.dropped(event.reason);
      else if (event.type === "done") {
        ended = true;
        endJob(entry, { state: "done", results: event.results, model: entry.model, id });
      } else if (event.type === "failed") {
        ended = true;
        const error = { kind: event.kind, message: event.message };
        endJob(entry, { state: "failed", error, results: event.results, model: entry.model, id });
      } else if (event.type === "cancelled") {
        ended = true;
        endJob(entry, { state: "cancelled", results: event.results, model: entry.model, id });
      }
    };
    socket.onclose = (close) => {
      entry.socket = null;
      if (close.code === 4401) onUnauthorized();
      if (close.code === 4404 && !ended) {
        ended = true;
        endJob(entry, { state: "gone" });
      }
      resolve(ended ? "ended" : opened ? "lost" : "unavailable");
    };
  });
}

// A binary frame: 16-byte little-endian header (uint16 take, uint16 channels, uint32 sample_rate, uint64
// start_frame), then float32 little-endian samples, channels interleaved.
function decodeAudioFrame(buffer) {
  const view = new DataView(buffer);
  const take = view.getUint16(0, true);
  const channels = view.getUint16(2, true);
  const sampleRate = view.getUint32(4, true);
  const start = Number(view.getBigUint64(8, true));
  const count = (buffer.byteLength - 16) / 4;
  let samples;
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) samples = new Float32Array(buffer, 16, count);
  else {
    samples = new Float32Array(count); // a big-endian machine: read each one
    for (let i = 0; i < count; i++) samples[i] = view.getFloat32(16 + 4 * i, true);
  }
  return { take, channels, sampleRate, start, samples };
}

function onAudioFrame(entry, buffer) {
  if (buffer.byteLength < 16) return;
  onAudio(entry, decodeAudioFrame(buffer));
}

function onAudio(entry, chunk) {
  if (entry.ended && !entry.live) return;
  entry.live ??= new LiveStream(entry, chunk.sampleRate, chunk.channels);
  entry.live.add(chunk);
  if (entry.wantListen && !entry.live.listening && !entry.live.stoppedByUser) entry.live.listen();
  renderListen(entry);
  drawJobWave(entry);
}

function onTakeMade(entry, event) {
  entry.made ??= [];
  entry.made.push(event);
}

async function poll(id, entry) {
  let delay = 150;
  let failures = 0;
  const received = new Map(); // take → frames received (over the stream before it was lost, then api/jobs/{id}/audio)
  if (entry.live) entry.live.receivedByTake.forEach((frames, take) => received.set(take, frames || 0));
  for (;;) {
    if (entry.ended) return;
    let job;
    try {
      job = await api(`api/jobs/${id}`);
      failures = 0;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        endJob(entry, { state: "gone" });
        return;
      }
      failures += 1;
      entry.status.textContent = `server unreachable, retrying… (${failures})`;
      await sleep(Math.min(5000, 500 * failures));
      continue;
    }
    if (entry.ended) return;
    entry.transport = "polling";
    applyStatus(entry, job);
    if (job.state === "running") await pollAudio(id, entry, job, received);
    if (["done", "failed", "cancelled"].includes(job.state)) {
      endJob(entry, job);
      return;
    }
    await sleep(delay);
    delay = Math.min(500, delay + 50);
  }
}

// Polling's live audio: what api/jobs/{id}/audio has of the take being made, from where the last answer stopped.
async function pollAudio(id, entry, job, received) {
  const expected = Math.round(entry.duration * entry.rate);
  let take = 0;
  while ((received.get(take) || 0) >= expected && take < (job.takes || 1) - 1) take += 1;
  const start = received.get(take) || 0;
  try {
    const response = await api(`api/jobs/${id}/audio?take=${take}&start=${start}`, { raw: true });
    const frames = Number(response.headers.get("X-Ttag-Frames") || 0);
    if (!frames) return;
    const samples = new Float32Array(await response.arrayBuffer());
    received.set(take, start + frames);
    onAudio(entry, {
      take,
      channels: Number(response.headers.get("X-Ttag-Channels")),
      sampleRate: Number(response.headers.get("X-Ttag-Sample-Rate")),
      start,
      samples,
    });
  } catch {
    // Progress still shows; the take arrives when the job is done.
  }
}

async function endJob(entry, job) {
  if (entry.ended) return;
  entry.ended = true;
  const id = entry.id;
  entry.node.dataset.state = job.state === "gone" ? "failed" : job.state;
  entry.etaNode.textContent = "";
  if (entry.socket && entry.socket.readyState === WebSocket.OPEN) entry.socket.close(1000);
  const record = recording(id);
  if (record) {
    record.doneAt = performance.now();
    record.transport = entry.transport;
    record.playingAtDone = entry.live ? entry.live.position() : null;
  }
  if (job.state === "done") {
    entry.bar.value = 1;
    entry.status.textContent = "fetching audio…";
    try {
      await collectTakes({ id, model: job.model || entry.model, results: job.results }, entry.body, entry);
      finishJob(id, entry, "done", `done · ${job.results.length} take${job.results.length === 1 ? "" : "s"}`);
    } catch (error) {
      entry.live?.stop();
      finishJob(id, entry, "failed", `could not fetch the audio: ${error.message}`);
    }
    return;
  }
  entry.live?.stop();
  // A cancelled or failed job keeps the takes it finished before (the server lists them): they join the takes too.
  let kept = "";
  if (job.results?.length) {
    try {
      await collectTakes({ id, model: job.model || entry.model, results: job.results }, entry.body, entry);
      kept = ` · ${job.results.length} take${job.results.length === 1 ? "" : "s"} kept`;
    } catch {
      kept = " · its finished takes could not be fetched";
    }
  }
  if (job.state === "cancelled") finishJob(id, entry, "cancelled", `cancelled${kept}`);
  else if (job.state === "gone") finishJob(id, entry, "failed", "the server no longer knows this job (it restarted or dropped it)");
  else finishJob(id, entry, "failed", `failed: ${job.error?.message || "unknown error"}${kept}`);
}

function finishJob(id, entry, finalState, message) {
  entry.node.dataset.state = finalState;
  entry.status.textContent = message;
  announce(`${entry.body.prompt}: ${message}`);
  entry.cancel.setAttribute("aria-label", "Dismiss");
  entry.cancel.title = "Dismiss";
  entry.listenButton.disabled = true;
  writeJSON(LS_PENDING, readJSON(LS_PENDING, []).filter((j) => j.id !== id));
  const remove = () => {
    entry.node.remove();
    state.jobs.delete(id);
    renderTakes();
  };
  entry.dismiss = remove;
  // Done: its takes now stand where the card was. Cancelled goes after a moment; failures stay: they explain themselves.
  if (finalState === "done") remove();
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
  if (entry.socket?.readyState === WebSocket.OPEN) {
    entry.socket.send(JSON.stringify({ cancel: true }));
    return;
  }
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

async function collectTakes(job, body, entry = null) {
  const format = body.format || $("#format").options[0]?.value;
  const created = Date.now();
  const fresh = [];
  for (const result of job.results) {
    const response = await api(`api/jobs/${job.id}/takes/${result.take}?format=${format}`, { raw: true });
    const blob = await response.blob();
    const request = { ...body, seed: result.seed };
    delete request.takes;
    delete request.stream;
    const take = {
      id: `${job.id}-${result.take}`,
      jobId: job.id,
      take: result.take,
      number: nextNumber(),
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
      peaks: entry?.live ? entry.live.peakList(result.take) : null,
      blob,
    };
    await db.put(take);
    fresh.push(take);
  }
  // The live stream keeps playing, through every take; the take it plays shows it (its play button can stop it).
  if (entry?.live) for (const take of fresh) state.live.set(take.id, entry.live);
  state.takes.push(...fresh);
  renderTakes();
  for (const take of fresh) {
    const node = state.elements.get(take.id);
    node?.classList.add("fresh");
    if (state.live.get(take.id)?.listening) showLivePlaying(take.id);
  }
  // The newest take becomes the selected one (Space plays it), unless the user is busy in the takes list.
  if (fresh.length && !document.activeElement?.closest?.("#take-list")) select(fresh[0].id, { focus: false });
}

async function resumePending() {
  for (const { id, body } of readJSON(LS_PENDING, [])) {
    if (state.jobs.has(id)) continue;
    trackJob({ id, state: "queued" }, body); // after a reload nothing plays by itself: the card's button listens
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Live audio: chunks scheduled on the Web Audio clock as they arrive, each AudioBufferSourceNode started at exactly
// t0 + start_frame / sample_rate, so the seams are sample-exact (no gaps, no clicks). One context per sample rate, so
// nothing is resampled chunk by chunk. Every take of a job is heard, one after the other on one timeline: take k
// starts at k × the take's length (the runner contract makes each take exactly the duration asked for).

const contexts = new Map();

function audioContext(rate) {
  let ctx = contexts.get(rate);
  if (!ctx) {
    try {
      ctx = new AudioContext({ sampleRate: rate, latencyHint: "playback" });
    } catch {
      return null;
    }
    contexts.set(rate, ctx);
  }
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  return ctx;
}

// What was scheduled, for tests: set window.__ttagRecord = true before the page loads.
function recording(jobId) {
  if (!window.__ttagRecord) return null;
  window.__ttagPlayed ??= {};
  window.__ttagPlayed[jobId] ??= { chunks: [], firstScheduledAt: null, doneAt: null, rebuffers: 0, playingAtDone: null };
  return window.__ttagPlayed[jobId];
}

class LiveStream {
  constructor(entry, rate, channels) {
    this.entry = entry;
    this.jobId = entry.id;
    this.rate = rate;
    this.channels = channels;
    this.takes = entry.takes || 1;
    this.total = Math.max(1, Math.round(entry.duration * rate)); // frames of one take
    this.chunks = []; // of every take: {take, start, frames, buffer}
    this.receivedByTake = []; // take → frames received
    this.drawTake = 0; // the take the card draws: the newest one being generated
    this.peaksByTake = [];
    this.listening = false;
    this.stoppedByUser = false;
    this.sources = new Set();
    this.t0 = 0;
    this.resumeAt = 0; // seconds into the take where listening starts next
    this.scheduledTo = 0; // frames scheduled so far (of the current listening)
  }

  add({ take, channels, sampleRate, start, samples }) {
    const frames = Math.floor(samples.length / channels);
    if (take >= this.takes || start < (this.receivedByTake[take] || 0)) return; // had it already (socket, then polling)
    this.drawTake = Math.max(this.drawTake, take); // a new take: the card's waveform starts over
    const peaks = this.peaksOf(take);
    const per = this.total / WAVE_BUCKETS;
    for (let i = 0; i < frames; i++) {
      const bucket = Math.min(WAVE_BUCKETS - 1, Math.floor((start + i) / per));
      let peak = peaks[bucket];
      for (let c = 0; c < channels; c++) peak = Math.max(peak, Math.abs(samples[i * channels + c]));
      peaks[bucket] = peak;
    }
    this.receivedByTake[take] = start + frames;
    // Kept once, deinterleaved, as an AudioBuffer (no context needed): listening again later reuses it.
    const buffer = new AudioBuffer({ length: frames, numberOfChannels: channels, sampleRate });
    for (let c = 0; c < channels; c++) {
      const data = buffer.getChannelData(c);
      for (let i = 0; i < frames; i++) data[i] = samples[i * channels + c];
    }
    const chunk = { take, start, frames, buffer, rate: sampleRate, channels };
    if (window.__ttagRecord) chunk.samples = new Float32Array(samples);
    this.chunks.push(chunk);
    if (this.listening) {
      this.schedule(chunk, true);
      // Takes already heard to their end are never scheduled again (their own players have them): memory holds about
      // the take being heard and those still to come, not the whole job.
      const heard = this.heardTake();
      if (this.chunks[0].take < heard) this.chunks = this.chunks.filter((c) => c.take >= heard);
    }
  }

  peaksOf(take) {
    return (this.peaksByTake[take] ??= new Float32Array(WAVE_BUCKETS));
  }

  // The card's waveform: the take being generated, and how far it has come.
  get peaks() {
    return this.peaksOf(this.drawTake);
  }

  get drawnTo() {
    return Math.min(1, (this.receivedByTake[this.drawTake] || 0) / this.total);
  }

  peakList(take) {
    return [...this.peaksOf(take)].map((p) => Math.round(Math.min(1, p) * 1000) / 1000);
  }

  get complete() {
    for (let take = 0; take < this.takes; take++) if ((this.receivedByTake[take] || 0) < this.total) return false;
    return true;
  }

  // Frames of the timeline (every take, in order) that can play without a gap from its start.
  get heard() {
    let frames = 0;
    for (let take = 0; take < this.takes; take++) {
      const received = Math.min(this.total, this.receivedByTake[take] || 0);
      frames += received;
      if (received < this.total) break;
    }
    return frames;
  }

  listen() {
    const ctx = audioContext(this.rate);
    if (!ctx) return;
    this.ctx = ctx;
    this.stoppedByUser = false;
    this.listening = true;
    this.gain = ctx.createGain();
    this.gain.connect(ctx.destination);
    this.t0 = ctx.currentTime + LIVE_LEAD_S - this.resumeAt;
    for (const chunk of this.chunks) this.schedule(chunk, false);
    stopOtherPlayback(this);
  }

  schedule(chunk, arriving) {
    const ctx = this.ctx;
    const now = ctx.currentTime;
    const at = chunk.take * this.total + chunk.start; // on the timeline of every take
    let when = this.t0 + at / this.rate;
    const end = when + chunk.frames / this.rate;
    if (end <= this.t0 + this.resumeAt) return; // before where listening (re)started
    if (arriving && when < now + 0.02) {
      // Generated slower than it plays: wait a little (silence) rather than play out of place.
      this.t0 += now + LIVE_LEAD_S - when;
      when = this.t0 + at / this.rate;
      const record = recording(this.jobId);
      if (record) record.rebuffers += 1;
    }
    const offset = Math.max(0, this.t0 + this.resumeAt - when);
    const source = ctx.createBufferSource();
    source.buffer = chunk.buffer;
    source.connect(this.gain);
    source.start(when + offset, offset);
    this.sources.add(source);
    source.onended = () => {
      this.sources.delete(source);
      if (this.listening && !this.sources.size && this.complete) this.finished();
    };
    const record = recording(this.jobId);
    if (record) {
      record.firstScheduledAt ??= performance.now();
      record.sampleRate = chunk.rate;
      record.channels = chunk.channels;
      record.chunks.push({ take: chunk.take, start: chunk.start, frames: chunk.frames, when, offset, samples: chunk.samples });
    }
  }

  // Seconds into the timeline of every take.
  position() {
    if (!this.listening || !this.ctx) return this.resumeAt;
    return Math.max(0, Math.min(this.heard / this.rate, this.ctx.currentTime - this.t0));
  }

  // The take being heard (or where listening would resume), and the position within a take.
  heardTake() {
    return Math.min(this.takes - 1, Math.floor((this.position() * this.rate) / this.total));
  }

  positionIn(take) {
    return Math.max(0, Math.min(this.total / this.rate, this.position() - (take * this.total) / this.rate));
  }

  stop({ byUser = false } = {}) {
    if (!this.listening) return;
    this.resumeAt = this.position();
    this.listening = false;
    this.stoppedByUser ||= byUser;
    const gain = this.gain;
    const at = this.ctx.currentTime;
    gain.gain.setTargetAtTime(0, at, 0.008); // a short fade: stopping mid-sample would click
    for (const source of this.sources) source.stop(at + 0.06);
    this.sources.clear();
    setTimeout(() => gain.disconnect(), 200);
    this.changed();
  }

  finished() {
    this.listening = false;
    this.resumeAt = 0;
    this.changed();
  }

  dropped(reason) {
    this.droppedReason = reason;
    if (!this.entry.ended) this.entry.status.textContent = `live audio stopped (${reason}); the take comes when done`;
  }

  changed() {
    renderListen(this.entry);
    for (const [takeId, live] of state.live) {
      if (live !== this) continue;
      const node = state.elements.get(takeId);
      if (node) {
        if (!this.listening) {
          // The take where it stopped carries on from there in its own player; the others start from their start.
          const audio = $("audio", node);
          const at = this.resumeAt - ((findTake(takeId)?.take || 0) * this.total) / this.rate;
          if (at > 0 && Number.isFinite(audio.duration) && at < audio.duration) audio.currentTime = at;
          state.live.delete(takeId);
          showPaused(node);
        }
        drawPosition(node);
      }
    }
  }
}

// One thing plays at a time: a take's player or a live stream.
function stopOtherPlayback(except = null) {
  for (const audio of $$("#take-list audio")) if (audio !== except) audio.pause();
  for (const entry of state.jobs.values()) if (entry.live && entry.live !== except) entry.live.stop();
  for (const live of state.live.values()) if (live !== except) live.stop();
}

function toggleListen(entry) {
  if (!entry.live) {
    entry.wantListen = !entry.wantListen; // nothing has arrived yet: listen (or not) when it does
    const ctx = audioContext(entry.rate);
    if (ctx && entry.wantListen) ctx.resume().catch(() => {});
  } else if (entry.live.listening) {
    entry.wantListen = false;
    entry.live.stop({ byUser: true });
  } else {
    entry.wantListen = true;
    entry.live.listen();
  }
  renderListen(entry);
  if (entry.live?.listening) animateJob(entry);
}

function renderListen(entry) {
  const on = entry.live ? entry.live.listening : entry.wantListen;
  const button = entry.listenButton;
  button.setAttribute("aria-pressed", String(Boolean(on)));
  button.setAttribute("aria-label", on ? "Stop listening" : "Listen while it is generated");
  button.title = button.getAttribute("aria-label");
  setIcon(button, on ? "pause" : "play");
  entry.node.classList.toggle("playing", Boolean(entry.live?.listening));
  if (entry.live?.listening) animateJob(entry);
}

function animateJob(entry) {
  if (entry.animating) return;
  entry.animating = true;
  const frame = () => {
    if (!entry.node.isConnected || !entry.live?.listening) {
      entry.animating = false;
      drawJobWave(entry);
      return;
    }
    drawJobWave(entry);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

function drawJobWave(entry) {
  const live = entry.live;
  const heard = live ? live.heardTake() : 0;
  const played = live && live.drawTake === heard ? live.positionIn(heard) / entry.duration : 0;
  paintWave(entry.canvas, live ? [...live.peaks] : null, played, live ? live.drawnTo : 0);
  $(".pos", entry.node).textContent = formatTime(live ? live.positionIn(heard) : 0);
}

// ---------------------------------------------------------------------------------------------------------------------
// Takes

// Take numbers are names, not positions: each take keeps its number, and numbers are never reused.
function nextNumber() {
  const used = [...state.takes, ...state.deleted.values()].map((t) => t.number || 0);
  const next = Math.max(Number(localStorage.getItem(LS_NEXT)) || 1, ...used.map((n) => n + 1));
  localStorage.setItem(LS_NEXT, String(next + 1));
  return next;
}

function takeUrl(take) {
  let url = state.urls.get(take.id);
  if (!url) {
    url = URL.createObjectURL(take.blob);
    state.urls.set(take.id, url);
  }
  return url;
}

// The model's own parameters a take was made with (a model this server no longer lists: any model's).
function takeParams(take) {
  const spec = state.models.find((m) => m.id === take.model);
  const names = new Set((spec ? [spec] : state.models).flatMap((m) => modelParams(m).map((p) => p.name)));
  names.delete("negative_prompt"); // in the details: it is text
  return [...names].filter((n) => take.request[n] !== undefined);
}

// A parameter's value as a take shows it: an uploaded file by its name (the id means nothing to a person).
function shownValue(name, value) {
  const audio = state.models.some((m) => m.params.some((p) => p.name === name && p.type === "audio"));
  return audio ? readJSON(LS_UPLOADS, []).find((u) => u.id === value)?.name || "a file" : value;
}

function takeMeta(take) {
  const parts = [take.model, `${formatNumber(take.duration)} s`, `seed ${take.seed}`];
  for (const name of takeParams(take)) parts.push(`${paramLabel(name)} ${shownValue(name, take.request[name])}`);
  parts.push(take.format);
  return parts.join(" · ");
}

function takeDetails(take) {
  const when = new Date(take.created).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  const channels = take.channels === 1 ? "mono" : take.channels === 2 ? "stereo" : `${take.channels} channels`;
  const parts = [`made ${when}`, `${formatNumber((take.sampleRate || 0) / 1000)} kHz ${channels}`];
  if (take.request.negative_prompt) parts.push(`without: ${take.request.negative_prompt}`);
  return parts.join(" · ");
}

function visibleTakes() {
  const starredOnly = $("#starred-only").checked;
  return state.takes.filter((t) => !starredOnly || t.starred);
}

// The order on screen: newest request first; the takes of one request together, in take order, side by side.
function displayOrder() {
  const start = (t) => t.created - (t.take || 0);
  return visibleTakes().sort((a, b) => start(b) - start(a) || (a.take || 0) - (b.take || 0));
}

function renderTakes() {
  const list = $("#take-list");
  const visible = visibleTakes();
  const wanted = displayOrder();
  const groups = new Map();
  for (const take of wanted) groups.set(take.jobId, (groups.get(take.jobId) || 0) + 1);
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
    updateTake(take, node);
    node.classList.toggle("in-group", groups.get(take.jobId) > 1); // compared side by side on a wide screen
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
  });
  for (const node of [...list.children]) if (!wanted.some((t) => state.elements.get(t.id) === node)) node.remove();
  $("#takes-empty").hidden = state.takes.length > 0 || state.jobs.size > 0;
  const count = $("#takes-count");
  count.textContent = !state.takes.length ? "" : visible.length === state.takes.length ? String(visible.length) : `${visible.length} of ${state.takes.length}`;
  count.title = $("#starred-only").checked ? "starred takes shown, of all takes" : "";
  renderUndo();
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
  const title = $(".take-title", node);

  play.addEventListener("click", () => togglePlay(take.id));
  audio.addEventListener("play", () => {
    stopOtherPlayback(audio);
    showPlaying(node);
    animate(node);
  });
  audio.addEventListener("pause", () => {
    if (!state.live.get(take.id)?.listening) showPaused(node);
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
    state.live.get(take.id)?.stop({ byUser: true });
    audio.currentTime = Number(seek.value);
    drawPosition(node);
  });
  title.addEventListener("click", () => {
    const open = !node.classList.contains("expanded");
    node.classList.toggle("expanded", open);
    title.setAttribute("aria-expanded", String(open));
  });

  $(".star", node).addEventListener("click", () => toggleStar(take.id));
  $(".loop", node).addEventListener("click", () => toggleLoop(take.id));
  $(".use", node).addEventListener("click", () => useSettings(take.id));
  $(".again", node).addEventListener("click", () => again(take.id, { sameSeed: false }));
  $(".delete", node).addEventListener("click", () => deleteTakes([take.id]));
  node.addEventListener("focusin", () => select(take.id, { focus: false }));
  node.addEventListener("pointerdown", () => select(take.id, { focus: false }));
  node.addEventListener("animationend", () => node.classList.remove("fresh"));

  // Peaks are computed once (or drawn live while generated), then kept with the take.
  new ResizeObserver(() => drawWave(node)).observe(canvas);
  if (!take.peaks) computePeaks(take).then(() => drawWave(node));
  return node;
}

function showPlaying(node) {
  const play = $(".play", node);
  node.classList.add("playing");
  setIcon(play, "pause");
  play.setAttribute("aria-label", "Pause");
}

function showPaused(node) {
  const play = $(".play", node);
  node.classList.remove("playing");
  setIcon(play, "play");
  play.setAttribute("aria-label", "Play");
}

function showLivePlaying(takeId) {
  const node = state.elements.get(takeId);
  if (!node) return;
  showLiveTake(node, state.live.get(takeId));
  animate(node);
}

// A take of a job whose live stream plays: "playing" while the stream is in this take, "paused" before and after.
function showLiveTake(node, live) {
  const playing = live.heardTake() === (findTake(node.dataset.id)?.take || 0);
  if (playing !== node.classList.contains("playing")) (playing ? showPlaying : showPaused)(node);
}

function updateTake(take, node) {
  $(".take-prompt", node).textContent = `#${take.number}  ${take.prompt}`;
  $(".take-title", node).title = `${take.prompt} (show all)`;
  $(".take-meta", node).textContent = `${takeMeta(take)}`;
  let details = $(".take-details", node);
  if (!details) {
    details = el("span", { class: "take-details" });
    $(".take-title", node).append(details);
  }
  details.textContent = takeDetails(take);
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
  node.dataset.number = String(take.number);
  node.setAttribute("aria-label", `Take ${take.number}: ${take.prompt}`);
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
  const live = state.live.get(id);
  if (live?.listening && live.heardTake() === (findTake(id)?.take || 0)) {
    live.stop({ byUser: true }); // the take was still playing from the stream: pause it there
    return;
  }
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
  toast(`Loaded the settings of take #${take.number} (seed ${take.seed}).`);
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

// ---------------------------------------------------------------------------------------------------------------------
// Delete and undo: every delete (one take or many) is one batch; undo brings the newest batch back, for UNDO_MS,
// across reloads (the takes stay in IndexedDB marked deleted; the batches are in localStorage).

function trash() {
  const now = Date.now();
  return readJSON(LS_TRASH, []).filter((batch) => now - batch.at < UNDO_MS && batch.ids.some((id) => state.deleted.has(id)));
}

async function deleteTakes(ids, label = null) {
  const doomed = ids.map(findTake).filter(Boolean);
  if (!doomed.length) return;
  const index = state.takes.indexOf(doomed[0]);
  const at = Date.now();
  for (const take of doomed) {
    state.live.get(take.id)?.stop();
    audioOf(take.id)?.pause();
    take.deletedAt = at;
    state.deleted.set(take.id, take);
  }
  await db.putAll(doomed);
  state.takes = state.takes.filter((t) => !doomed.includes(t));
  writeJSON(LS_TRASH, [...trash(), { at, ids: doomed.map((t) => t.id) }]);
  for (const take of doomed) {
    const url = state.urls.get(take.id);
    state.urls.delete(take.id);
    if (url) setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  const wasSelected = doomed.some((t) => t.id === state.selectedId);
  renderTakes();
  const neighbour = visibleTakes()[Math.min(index, state.takes.length - 1)];
  if (neighbour && wasSelected) select(neighbour.id, { focus: doomed.length === 1 });
  const what = label || (doomed.length === 1 ? `Take #${doomed[0].number} deleted.` : `${doomed.length} takes deleted.`);
  toast(what, "info", 10_000, { label: "Undo", run: undoDelete });
}

async function undoDelete() {
  const batches = trash();
  const batch = batches.pop();
  if (!batch) {
    toast("Nothing to bring back.", "warn");
    return;
  }
  writeJSON(LS_TRASH, batches);
  const back = batch.ids.map((id) => state.deleted.get(id)).filter(Boolean);
  for (const take of back) {
    delete take.deletedAt;
    state.deleted.delete(take.id);
  }
  await db.putAll(back);
  state.takes.push(...back);
  state.takes.sort((a, b) => a.created - b.created);
  renderTakes();
  if (back.length) select(back[0].id);
  toast(back.length === 1 ? `Take #${back[0].number} is back.` : `${back.length} takes are back.`);
}

// Takes deleted more than UNDO_MS ago go for good.
async function purgeDeleted() {
  const now = Date.now();
  const gone = [...state.deleted.values()].filter((t) => now - t.deletedAt >= UNDO_MS).map((t) => t.id);
  if (gone.length) {
    gone.forEach((id) => state.deleted.delete(id));
    await db.deleteAll(gone);
  }
  writeJSON(LS_TRASH, trash());
  renderUndo();
}

function renderUndo() {
  const batches = trash();
  const button = $("#undo-delete");
  button.hidden = !batches.length;
  const last = batches.at(-1);
  if (last) {
    const n = last.ids.length;
    button.textContent = `Undo delete${n > 1 ? ` (${n})` : ""}`;
    button.title = `Bring back the last deleted take${n > 1 ? "s" : ""} (u)`;
  }
}

function clearUnstarred() {
  const doomed = state.takes.filter((t) => !t.starred);
  if (!doomed.length) {
    toast("Every take is starred: nothing to clear.");
    return;
  }
  deleteTakes(
    doomed.map((t) => t.id),
    `${doomed.length} unstarred take${doomed.length === 1 ? "" : "s"} deleted.`,
  );
}

function moveSelection(step) {
  const order = displayOrder();
  if (!order.length) return;
  const at = order.findIndex((t) => t.id === currentTake()?.id);
  const next = order[Math.max(0, Math.min(order.length - 1, at < 0 ? 0 : at + step))];
  select(next.id);
}

// ---------------------------------------------------------------------------------------------------------------------
// Waveforms: peaks from the decoded audio, drawn on a canvas, with the played part in the accent colour.

let decoder = null;

async function computePeaks(take, buckets = WAVE_BUCKETS) {
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

// Bars up to ``filled`` (0–1) of the canvas; played part in the accent colour; a playhead.
function paintWave(canvas, peaks, played, filled = 1) {
  if (!canvas.isConnected) return;
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  const bars = peaks?.length ? peaks.length : 1;
  const step = width / bars;
  const accent = cssColor("--accent");
  const muted = cssColor("--wave");
  for (let i = 0; i < bars; i++) {
    if ((i + 0.5) / bars > filled) break;
    const amp = peaks?.length ? Math.max(0.04, peaks[i]) : 0.04;
    const h = amp * (height - 2);
    ctx.fillStyle = (i + 0.5) / bars <= played ? accent : muted;
    ctx.fillRect(i * step, (height - h) / 2, Math.max(1, step - ratio), h);
  }
  if (filled < 1) {
    // What is still to come: a faint baseline.
    ctx.fillStyle = muted;
    ctx.fillRect(filled * width, height / 2 - ratio / 2, width * (1 - filled), ratio);
  }
  ctx.fillStyle = cssColor("--fg");
  ctx.fillRect(Math.min(width - ratio, Math.max(0, played) * width), 0, ratio * 1.5, height);
}

function positionOf(node) {
  const live = state.live.get(node.dataset.id);
  return live?.listening ? live.positionIn(findTake(node.dataset.id)?.take || 0) : $("audio", node).currentTime || 0;
}

function drawWave(node) {
  const take = findTake(node.dataset.id);
  if (!take) return;
  const audio = $("audio", node);
  const length = audio.duration || take.duration || 1;
  paintWave($(".wave", node), take.peaks, Math.min(1, positionOf(node) / length));
}

function drawPosition(node) {
  const audio = $("audio", node);
  const position = positionOf(node);
  $(".pos", node).textContent = formatTime(position);
  const seek = $(".seek", node);
  seek.value = String(position);
  seek.setAttribute("aria-valuetext", `${formatTime(position)} of ${formatTime(audio.duration)}`);
  drawWave(node);
}

function animate(node) {
  const audio = $("audio", node);
  const frame = () => {
    const live = state.live.get(node.dataset.id);
    if ((audio.paused && !live?.listening) || !node.isConnected) return;
    if (live?.listening) showLiveTake(node, live);
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
    ["u", "Undo the last delete (for 10 minutes, even after a reload)"],
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
      if (take) deleteTakes([take.id]);
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
    clearErrors();
    selectModel(event.target.value);
  });
  $("#compose").addEventListener("input", (event) => {
    captureDraft();
    const target = event.target;
    if (target.matches("#settings-grid input, #prompt, #negative_prompt")) validateField(target);
    else {
      // Typing into a field clears its error: the message was about the old value.
      const field = target.closest(".field");
      if (field?.classList.contains("invalid")) setFieldError(target, "");
    }
  });
  $("#seed-random").addEventListener("click", () => {
    $("#seed").value = "";
    validateField($("#seed"));
    captureDraft();
  });
  $("#starred-only").addEventListener("change", renderTakes);
  $("#clear-takes").addEventListener("click", clearUnstarred);
  $("#undo-delete").addEventListener("click", undoDelete);
  $("#help-button").addEventListener("click", () => $("#help-dialog").showModal());
  $("#key-button").addEventListener("click", openKeyDialog);
  $("#theme").addEventListener("change", (event) => {
    if (event.target.value === "system") localStorage.removeItem(LS_THEME);
    else localStorage.setItem(LS_THEME, event.target.value);
    applyTheme();
  });
  systemLight.addEventListener("change", applyTheme);
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
  // A file dropped beside an audio control is ignored, instead of the browser leaving the page to open it.
  for (const kind of ["dragover", "drop"]) document.addEventListener(kind, (event) => event.preventDefault());
  window.addEventListener("resize", () => state.elements.forEach((node) => drawWave(node)));
  window.addEventListener("online", wakeProbe);
}

async function loadTakes() {
  const all = (await db.all()).sort((a, b) => a.created - b.created);
  state.takes = all.filter((t) => !t.deletedAt);
  state.deleted = new Map(all.filter((t) => t.deletedAt).map((t) => [t.id, t]));
  // Takes from before numbers were kept get theirs now, in the order they were made.
  const unnumbered = all.filter((t) => !t.number);
  for (const take of unnumbered) take.number = nextNumber();
  if (unnumbered.length) await db.putAll(unnumbered);
  await purgeDeleted();
}

async function main() {
  applyTheme();
  wire();
  renderHelp();
  renderKeyState();
  try {
    await loadTakes();
  } catch (error) {
    toast(`This browser cannot keep takes (IndexedDB: ${error.message}).`, "warn", 8000);
  }
  renderTakes();
  const last = state.takes.at(-1);
  if (last) select(last.id, { focus: false });
  setInterval(purgeDeleted, 60_000);

  while (!(await checkHealth())) await sleep(HEALTH_RETRY_MS);
  probeForever();
  try {
    await loadSchema();
    restoreDraft();
    await loadModels();
    resumePending();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) toast(`Cannot list the models: ${error.message}`, "error");
  }
  document.body.dataset.ready = "true"; // tests wait for this
}

main();
