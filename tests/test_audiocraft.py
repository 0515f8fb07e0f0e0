"""The audiocraft runner in its own environment, offline, on audiocraft's debug models.

Generation goes through the real Bridge and worker, started with the managed environment's python
(``ttag runners setup audiocraft``); reference audio comes from a script that calls audiocraft's public API directly in
that environment with the same seed. Without the environment these tests skip — unless ``TTAG_REQUIRE_AUDIOCRAFT=1``
(CI, after building it), where they fail. Environment management itself is tested on a tiny offline recipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runners.audiocraft import MODELS, audiocraft_spec
from runners.contract import RunnerSettings
from runners.registry import ModelSpec, Registry, probe_availability
from runners.request import GenerationRequest, validate_request
from tests.worker_probe import PROBE_RUNNER
from ttag_tui import runner_envs
from ttag_tui.backend.events import Chunk, Done, Failed, JobFailed, Progress
from ttag_tui.bridge import Bridge, BridgeSettings
from ttag_tui.config import Config

ROOT = Path(__file__).resolve().parent.parent
# Read before conftest's autouse fixture points TTAG_DATA_DIR at a temporary folder (and drops TTAG_REQUIRE_*).
ENV_PYTHON = runner_envs.managed_interpreter("audiocraft")
REQUIRED = os.environ.get("TTAG_REQUIRE_AUDIOCRAFT") == "1"
TIMEOUT = 180
PROMPT = "lofi hip hop with piano, 85 bpm"
PARAMS = dict(temperature=0.9, top_k=50, top_p=0.0, guidance=2.5)


def _debug(model_id: str, family: str, *, sample_rate: int, window_s: float, context_s: float, **extra) -> ModelSpec:
    template = {"musicgen": MODELS[7], "audiogen": MODELS[0], "magnet": MODELS[1]}[family]
    spec = audiocraft_spec(
        model_id,
        "debug",
        family,
        kind=template.kind,
        description="debug",
        sample_rate=sample_rate,
        window_s=window_s,
        context_s=context_s,
        size_gb=0.0,
        params=template.params,
        max_duration=60.0,
    )
    return replace(spec, min_duration=0.1, extra={**spec.extra, **extra})


DEBUG_SPECS = [
    _debug("debug-musicgen", "musicgen", sample_rate=32000, window_s=2.0, context_s=0.8),
    _debug("debug-audiogen", "audiogen", sample_rate=16000, window_s=2.0, context_s=1.0),
    _debug(
        "debug-magnet",
        "magnet",
        sample_rate=32000,
        window_s=1.0,
        context_s=0.4,
        factory="tests.audiocraft_debug:build_debug_magnet",
    ),
]


# -- fixtures --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env_python() -> str:
    if ENV_PYTHON is None:
        where = runner_envs.env_dir("audiocraft")
        message = f"the audiocraft environment is not built: run `ttag runners setup audiocraft` ({where})"
        if REQUIRED:
            pytest.fail(message + " — TTAG_REQUIRE_AUDIOCRAFT=1 makes this a failure")
        pytest.skip(message)
    return ENV_PYTHON


# A real model, for the missing-weights test: the module's bridge looks in an empty hub cache, whatever ~/.cache holds.
MAGNET_SMALL = next(m for m in MODELS if m.id == "audio-magnet-small")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry([*DEBUG_SPECS, MAGNET_SMALL])


@pytest.fixture(scope="module")
def bridge(env_python, registry, tmp_path_factory):
    """One worker in the environment for every generation test (a worker pays ~15 s of CPU importing audiocraft)."""
    hub = tmp_path_factory.mktemp("hub")
    settings = BridgeSettings(
        RunnerSettings(threads=1, cache_dir=str(hub)),
        idle_unload_s=0,
        cancel_grace_s=20,
        interpreters={"audiocraft": env_python},
    )
    with Bridge(registry, settings) as bridge:
        yield bridge


@pytest.fixture(scope="module")
def audio_prompt(tmp_path_factory) -> Path:
    """0.6 s of a 220 Hz tone to continue from."""
    t = np.arange(int(0.6 * 32000)) / 32000
    path = tmp_path_factory.mktemp("prompt") / "prompt.wav"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 32000)
    return path


def reference_case(model_id: str, **fields) -> dict:
    """A case for :func:`direct`: the debug model's family, window and context as its spec gives them to the runner."""
    spec = next(s for s in DEBUG_SPECS if s.id == model_id)
    window = {"family": spec.extra["family"], "window": spec.extra["window_s"], "context": spec.extra["context_s"]}
    return {**window, **fields}


@dataclass(frozen=True)
class InEnvironment:
    references: dict[str, list[np.ndarray]]  # {case: [audio of each seed]}, audiocraft called directly
    precision: dict[str, dict]  # {dtype setting: what the runner's LM was and computed in}


@pytest.fixture(scope="module")
def in_environment(env_python, audio_prompt, tmp_path_factory) -> InEnvironment:
    """What the tests below compare with, made in the environment by one process (a process pays ~15 s of CPU for
    importing audiocraft and building its debug models): every reference take (each case seeds itself), then the
    runner's precision probe."""
    magnet_temperature = next(p for p in DEBUG_SPECS[2].params if p.name == "temperature").default
    return in_environment_run(
        env_python,
        tmp_path_factory.mktemp("direct"),
        musicgen=reference_case("debug-musicgen", duration=1.0, seeds=[11, 12], params=PARAMS),
        audiogen=reference_case("debug-audiogen", duration=1.0, seeds=[5], params=PARAMS),
        magnet=reference_case(
            "debug-magnet",
            duration=1.0,
            seeds=[7],
            params=dict(temperature=2.0, top_k=0, top_p=0.8, guidance=5.0, steps=6),
        ),
        long=reference_case("debug-musicgen", duration=5.0, seeds=[3], params=PARAMS),
        long_magnet=reference_case(
            "debug-magnet",
            duration=2.5,
            seeds=[4],
            params=dict(temperature=magnet_temperature, top_k=0, top_p=0.9, guidance=10.0, steps=5),
        ),
        continuation=reference_case(
            "debug-musicgen", duration=1.5, seeds=[9], params=PARAMS, audio_prompt=str(audio_prompt)
        ),
    )


@pytest.fixture(scope="module")
def references(in_environment) -> dict[str, list[np.ndarray]]:
    return in_environment.references


def request(registry: Registry, **fields) -> GenerationRequest:
    return validate_request(
        {"prompt": PROMPT, "model": "debug-musicgen", "duration": 1.0, "seed": 11, **fields}, registry
    )


def run(bridge: Bridge, req: GenerationRequest, *, stream: bool = False) -> tuple[list, list]:
    job = bridge.submit(req, stream=stream)
    events = list(job.events(timeout=TIMEOUT))
    last = events[-1]
    if isinstance(last, Failed):
        raise JobFailed(last.kind, last.message)
    assert isinstance(last, Done), last
    return events, [clip.audio for clip in last.clips]


IN_ENVIRONMENT = r"""
import json, sys
import numpy as np
from runners.audiocraft import offline
offline.set_offline_environment()
import soundfile, torch
torch.set_num_threads(1)
from audiocraft.models import AudioGen, MusicGen
offline.apply()  # spaCy without its model download, MAGNeT attention on CPU: without these audiocraft cannot run here
from runners.audiocraft.runner import AudioCraftRunner
from runners.contract import JobContext, RunnerSettings
from runners.registry import ModelSpec, Registry
from runners.request import validate_request
from tests.audiocraft_debug import build_debug_magnet


def direct(case):  # the case's takes, one per seed, from audiocraft's public API
    if case["family"] == "magnet":
        model = build_debug_magnet("cpu")
    else:
        torch.manual_seed(0)
        model = (MusicGen if case["family"] == "musicgen" else AudioGen).get_pretrained("debug", device="cpu")
    model.max_duration = case["window"]
    p = case["params"]
    stride = case["window"] - case["context"]
    if case["family"] == "magnet":
        model.set_generation_params(use_sampling=True, temperature=p["temperature"], top_k=p["top_k"],
                                    top_p=p["top_p"], max_cfg_coef=p["guidance"], min_cfg_coef=1.0,
                                    decoding_steps=[p["steps"], 10, 10, 10])
    else:
        model.set_generation_params(use_sampling=True, temperature=p["temperature"], top_k=p["top_k"],
                                    top_p=p["top_p"], cfg_coef=p["guidance"], duration=case["length"],
                                    extend_stride=stride)
    takes = []
    for seed in case["seeds"]:
        torch.manual_seed(seed)
        if case.get("audio_prompt"):
            wav, sr = soundfile.read(case["audio_prompt"], dtype="float32", always_2d=True)
            audio = model.generate_continuation(torch.from_numpy(wav.T.copy())[None], sr, [case["prompt"]])
        elif case["family"] == "magnet" and case["duration"] > case["window"]:
            # MAGNeT has no extension loop: each window continues from the last `context` s of tokens
            audio, tokens = model.generate([case["prompt"]], return_tokens=True)
            context = int(case["context"] * model.frame_rate)
            attributes, _ = model._prepare_tokens_and_attributes([case["prompt"]], None)
            while tokens.shape[-1] < case["duration"] * model.frame_rate:
                window = model._generate_tokens(attributes, tokens[..., -context:])
                tokens = torch.cat([tokens, window[..., context:]], dim=-1)
            audio = model.generate_audio(tokens)
        else:
            audio = model.generate([case["prompt"]])
        takes.append(audio[0, :, : round(case["duration"] * model.sample_rate)].numpy())
    return takes


def precision(spec):  # for the dtype settings auto and bfloat16: the LM's weights, autocast, the dtype it computes in
    registry = Registry([spec])
    out = {}
    for dtype in ("auto", "bfloat16"):
        runner = AudioCraftRunner(spec, RunnerSettings(device="cpu", dtype=dtype, threads=1))
        runner.load_model(JobContext())
        seen = set()  # the dtype the LM's transformer computes in
        runner.model.lm.transformer.register_forward_hook(lambda module, args, output: seen.add(str(output.dtype)))
        request = validate_request({"prompt": "rain", "model": spec.id, "duration": 0.5, "seed": 3}, registry)
        [clip] = runner.generate(request, JobContext())
        autocast = runner.model.autocast.autocast
        out[dtype] = {
            "device": runner.device,
            "weights": sorted({str(p.dtype) for p in runner.model.lm.parameters()}),
            "autocast": None if autocast is None else str(autocast.fast_dtype),
            "computed": sorted(seen),
            "shape": list(clip.audio.shape),
            "finite": bool(np.isfinite(clip.audio).all()),
        }
    return out


job = json.loads(sys.argv[1])
takes = {key: direct(case) for key, case in job["cases"].items()}
np.savez(sys.argv[2], **{f"{k}/{i}": a for k, v in takes.items() for i, a in enumerate(v)})
print(json.dumps(precision(ModelSpec.from_dict(job["precision"]))))
"""


def in_environment_run(env_python: str, tmp_path: Path, **cases: dict) -> InEnvironment:
    """The IN_ENVIRONMENT script in the environment: the cases' reference takes and the precision probe of the first
    debug model."""
    for case in cases.values():
        case.setdefault("prompt", PROMPT)
        case.setdefault("length", case["duration"])
    out = tmp_path / "direct.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    job = {"cases": cases, "precision": DEBUG_SPECS[0].to_dict()}
    done = subprocess.run(
        [env_python, "-c", IN_ENVIRONMENT, json.dumps(job), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=2 * TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = np.load(out)
    return InEnvironment(
        references={key: [saved[f"{key}/{i}"] for i in range(len(case["seeds"]))] for key, case in cases.items()},
        precision=json.loads(done.stdout.strip().splitlines()[-1]),
    )


def progress_steps(events: list) -> list[Progress]:
    return [e for e in events if isinstance(e, Progress) and e.phase == "generating"]


# -- environment management (no audiocraft needed) --------------------------------------------------------------------
def _wheel(folder: Path, name: str, version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, so setup can run pip without a network."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: ttag-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{info}/RECORD", "")
    return path


def _recipe(*steps: runner_envs.Step) -> runner_envs.Recipe:
    return runner_envs.Recipe(
        runner="tiny",
        steps=steps,
        constraints=(),
        probe_imports=("tinyone",),
        probe_modules=("tinytwo",),
        packages=("tinyone", "tinytwo"),
    )


def test_setup_is_resumable_idempotent_and_reports_status(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    one, two = _wheel(wheels, "tinyone"), _wheel(wheels, "tinytwo")
    broken = _recipe(runner_envs.Step("one", (str(one),)), runner_envs.Step("two", (str(wheels / "absent.whl"),)))
    monkeypatch.setitem(runner_envs.RECIPES, "tiny", broken)
    assert runner_envs.status("tiny").problem == "not set up: run `ttag runners setup tiny`"
    said: list[str] = []
    with pytest.raises(runner_envs.EnvError, match="two failed") as failure:
        runner_envs.setup("tiny", say=said.append, show_progress=False)
    assert "resumes from this step" in str(failure.value)
    assert runner_envs.managed_interpreter("tiny") is None  # half-built: not used by the bridge
    assert "did not finish" in runner_envs.status("tiny").problem

    fixed = _recipe(runner_envs.Step("one", (str(one),)), runner_envs.Step("two", (str(two),)))
    monkeypatch.setitem(runner_envs.RECIPES, "tiny", fixed)
    said.clear()
    runner_envs.setup("tiny", say=said.append, show_progress=False)
    assert any("[1/2] one: already installed" in line for line in said), said  # resumed after the finished step
    status = runner_envs.status("tiny")
    assert status.healthy and status.up_to_date and not status.problem
    assert status.versions == {"tinyone": "1.0", "tinytwo": "1.0"}
    assert status.size_bytes > 1_000_000  # a venv with pip in it
    assert runner_envs.managed_interpreter("tiny") == str(runner_envs.env_python("tiny"))
    assert Path(status.path).is_relative_to(tmp_path)  # TTAG_DATA_DIR moves it

    said.clear()
    runner_envs.setup("tiny", say=said.append, show_progress=False)
    assert said == [f"tiny: environment up to date ({runner_envs.env_dir('tiny')})"]  # nothing reinstalled

    (Path(status.path) / "lib").rename(Path(status.path) / "lib-gone")  # break it: the probe notices
    assert not runner_envs.status("tiny").healthy


def test_recipe_hash_follows_every_step_and_pin():
    recipe = runner_envs.AUDIOCRAFT
    assert recipe.hash() == runner_envs.AUDIOCRAFT.hash()
    changed = replace(recipe, steps=(*recipe.steps[:2], replace(recipe.steps[2], requirements=("numpy==2.4.5",))))
    assert changed.step_hashes()[:2] == recipe.step_hashes()[:2] and changed.hash() != recipe.hash()
    assert replace(recipe, constraints=()).step_hashes()[0] != recipe.step_hashes()[0]
    pins = {line.split("==")[0] for line in recipe.constraints}
    assert {"torch", "torchaudio", "transformers", "numpy", "spacy", "av"} <= pins
    assert all("==" in line for step in recipe.steps for line in step.requirements)


def test_missing_environment_says_which_command_fixes_it(monkeypatch):
    spec = next(m for m in MODELS if m.id == "audiogen-medium")
    assert runner_envs.interpreter_for({}, "audiocraft") is None  # TTAG_DATA_DIR is empty here
    availability = probe_availability(spec, interpreter=runner_envs.interpreter_for({}, "audiocraft"))
    assert not availability.runnable and "ttag runners setup audiocraft" in availability.reason
    configured = probe_availability(spec, interpreter="/nowhere/bin/python")
    assert "ttag runners setup audiocraft" in configured.reason


def test_bridge_uses_the_managed_environment_unless_one_is_configured(tmp_path):
    python = runner_envs.env_python("audiocraft")
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    assert "audiocraft" not in BridgeSettings.from_config(Config()).interpreters  # no finished setup yet
    (runner_envs.env_dir("audiocraft") / runner_envs.STATE_FILE).write_text(json.dumps({"recipe_hash": "x"}))
    assert BridgeSettings.from_config(Config()).interpreters["audiocraft"] == str(python)
    own = Config(interpreters={"audiocraft": "/opt/other/python"})
    assert BridgeSettings.from_config(own).interpreters["audiocraft"] == "/opt/other/python"


def test_worker_without_audiocraft_fails_with_the_setup_command():
    """No managed env and nothing configured: the worker runs in the main env and says what to do — no traceback."""
    registry = Registry([DEBUG_SPECS[0]])
    settings = BridgeSettings(RunnerSettings(threads=1), idle_unload_s=0)
    with Bridge(registry, settings) as bridge, pytest.raises(JobFailed) as failure:
        run(bridge, request(registry))
    assert failure.value.kind == "missing_dependency"
    assert "`ttag runners setup audiocraft`" in str(failure.value) and "Traceback" not in str(failure.value)


def test_specs_cover_the_issue_and_import_nothing_heavy():
    ids = {m.id for m in MODELS}
    assert {
        "audiogen-medium",
        "magnet-small-10secs",
        "magnet-medium-10secs",
        "magnet-small-30secs",
        "magnet-medium-30secs",
        "audio-magnet-small",
        "audio-magnet-medium",
        "audiocraft-musicgen-small",
        "audiocraft-musicgen-melody",
        "audiocraft-musicgen-small-mbd",
    } <= ids
    assert next(m for m in MODELS if m.id == "audiogen-medium").sample_rate == 16000
    assert all(m.runner_name == "audiocraft" and m.extra["setup"] == "ttag runners setup audiocraft" for m in MODELS)
    code = "import sys, runners.registry as r; r.default_registry(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_main_environment_keeps_current_transformers_and_diffusers():
    code = (
        "import importlib.util, json, torch, transformers; d = importlib.util.find_spec('diffusers');"
        "v = __import__('diffusers').__version__ if d else None;"
        "print(json.dumps([torch.__version__, transformers.__version__, v]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    torch_version, transformers_version, diffusers_version = json.loads(done.stdout.strip().splitlines()[-1])
    assert int(transformers_version.split(".")[0]) >= 5
    assert not torch_version.startswith("2.9.")  # audiocraft's torch stayed in its own environment
    if diffusers_version is not None:
        assert int(diffusers_version.split(".")[1]) >= 30 or int(diffusers_version.split(".")[0]) >= 1


# -- generation through the worker in the audiocraft environment ---------------------------------------------------
def test_the_environments_worker_imports_its_own_torch_and_only_ttags_runners(env_python, tmp_path, monkeypatch):
    """A worker started with the environment's python finds that environment's torch (the main one has another) and,
    of the main environment, only ttag's `runners` package: what makes a wheel install keep audiocraft's pins."""
    (tmp_path / "ttag_probe_runner.py").write_text(PROBE_RUNNER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    spec = ModelSpec(
        id="probe",
        runner="ttag_probe_runner:ProbeRunner",
        kind="music",
        description="probe",
        sample_rate=8000,
        channels=1,
        min_duration=0.01,
        max_duration=1.0,
        default_duration=0.01,
    )
    probe = Registry([spec])
    settings = BridgeSettings(idle_unload_s=0, interpreters={"ttag_probe_runner": env_python})
    with Bridge(probe, settings) as bridge:
        [clip] = bridge.submit(validate_request({"prompt": "x", "model": "probe"}, probe)).result(TIMEOUT)
    seen = clip.metadata["probe"]
    env_prefix = Path(env_python).parent.parent
    assert seen["executable"] == env_python and Path(seen["torch"]).is_relative_to(env_prefix)
    assert Path(seen["runners"]).resolve().parent == ROOT / "runners"
    worker_path = Path(seen["pythonpath"].split(os.pathsep)[0])
    assert [p.name for p in worker_path.iterdir()] == ["runners"]


def test_takes_equal_audiocraft_called_directly(bridge, registry, references):
    musicgen = request(registry, takes=2, **PARAMS)
    audiogen = request(registry, model="debug-audiogen", duration=1.0, seed=5, **PARAMS)
    magnet = request(
        registry, model="debug-magnet", duration=1.0, seed=7, temperature=2.0, top_k=0, top_p=0.8, guidance=5.0, steps=6
    )
    events, mg = run(bridge, musicgen)
    _, ag = run(bridge, audiogen)
    _, mn = run(bridge, magnet)
    assert [a.shape for a in mg] == [(1, 32000), (1, 32000)] and ag[0].shape == (1, 16000)
    for ours, theirs in [
        *zip(mg, references["musicgen"], strict=True),
        (ag[0], references["audiogen"][0]),
        (mn[0], references["magnet"][0]),
    ]:
        np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(mg[0], mg[1])  # takes differ
    steps = progress_steps(events)
    assert (
        steps and steps[-1].step == steps[-1].total and steps[-1].total == 2 * 28
    )  # both takes: 25 frames + 3 delays each


def test_long_clip_past_the_window_equals_audiocraft_and_streams(bridge, registry, references):
    req = request(registry, duration=5.0, seed=3, **PARAMS)  # window 2 s, stride 1.2 s: four windows
    events, clips = run(bridge, req)
    magnet_req = request(registry, model="debug-magnet", duration=2.5, seed=4, steps=5)  # three whole 1 s windows
    _, magnet = run(bridge, magnet_req)
    assert clips[0].shape == (1, 5 * 32000)
    np.testing.assert_array_equal(clips[0], references["long"][0])
    np.testing.assert_array_equal(magnet[0], references["long_magnet"][0])
    steps = progress_steps(events)
    assert [s.step for s in steps] == sorted(s.step for s in steps) and steps[-1].step == steps[-1].total

    events, streamed_clip = run(bridge, req, stream=True)
    streamed_chunks = [e.audio for e in events if isinstance(e, Chunk)]
    np.testing.assert_array_equal(streamed_clip[0], np.concatenate(streamed_chunks, axis=1))
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) == 4  # one per window
    assert [c.start for c in chunks] == list(np.cumsum([0] + [c.audio.shape[1] for c in chunks[:-1]]))
    streamed = np.concatenate([c.audio for c in chunks], axis=1)
    assert np.abs(streamed - clips[0]).max() < 1e-5
    last_step = max(i for i, e in enumerate(events) if isinstance(e, Progress) and e.phase == "generating")
    assert events.index(chunks[0]) < last_step  # audio came out before generation finished


def test_continuation_starts_with_the_prompt_and_equals_audiocraft(bridge, registry, references, audio_prompt):
    req = request(registry, duration=1.5, seed=9, audio_prompt=str(audio_prompt), **PARAMS)
    _, clips = run(bridge, req)
    np.testing.assert_array_equal(clips[0], references["continuation"][0])
    assert clips[0].shape == (1, 37 * 1280)  # whole frames, as audiocraft makes them: int(1.5 s * 25 Hz)
    with pytest.raises(JobFailed, match="nothing to add") as failure:
        run(bridge, request(registry, duration=0.5, audio_prompt=str(audio_prompt)))
    assert failure.value.kind == "invalid_request"


def test_cancel_stops_generation_and_the_worker_goes_on(bridge, registry):
    job = bridge.submit(request(registry, duration=60.0, seed=1), stream=True)
    seen_at_cancel = last_step = None
    pid = None
    for event in job.events(timeout=TIMEOUT):
        if isinstance(event, Progress) and event.phase == "generating":
            last_step = event.step
            if seen_at_cancel is None and event.step >= 20:
                pid = bridge.handle_for(registry.get("debug-musicgen")).pid
                seen_at_cancel = event.step
                job.cancel()
    assert isinstance(job.outcome, Failed) and job.outcome.kind == "cancelled", job.outcome
    total = 60 * 25 * 2  # about: 50 windows of 30 new frames each, plus delays
    assert last_step - seen_at_cancel < 300 and last_step < total / 4, (seen_at_cancel, last_step)
    _, clips = run(bridge, request(registry, duration=0.5))
    assert clips[0].shape == (1, 12 * 1280)  # int(0.5 s * 25 Hz) frames
    assert bridge.handle_for(registry.get("debug-musicgen")).pid == pid  # the same worker served it


def test_the_dtype_setting_reaches_audiocrafts_language_model(in_environment):
    """``auto`` on the CPU leaves the model as audiocraft builds it (float32, no autocast: the takes above equal a
    direct call); an explicit dtype casts the LM and runs it under autocast in that dtype, as audiocraft does on a
    GPU."""
    seen = in_environment.precision
    assert seen["auto"] == {
        "device": "cpu",
        "weights": ["torch.float32"],
        "autocast": None,
        "computed": ["torch.float32"],
        "shape": [1, 12 * 1280],
        "finite": True,
    }
    half = {"weights": ["torch.bfloat16"], "autocast": "torch.bfloat16", "computed": ["torch.bfloat16"]}
    assert seen["bfloat16"] == {**seen["auto"], **half}


def test_missing_weights_name_the_download_command(bridge, registry):
    with pytest.raises(JobFailed) as failure:
        run(bridge, validate_request({"prompt": "rain", "model": MAGNET_SMALL.id, "seed": 1}, registry))
    message = str(failure.value)
    assert failure.value.kind == "missing_weights", message
    assert "facebook/audio-magnet-small, t5-large missing" in message
    assert "run `ttag models pull audio-magnet-small`" in message and "Traceback" not in message
