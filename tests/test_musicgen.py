"""The MusicGen runner, offline, on tiny random-weight checkpoints built in code (tests/tiny_musicgen.py).

Generation goes through the real worker process via the Bridge; reference audio comes from transformers' own
``generate`` on the same folder, seed and parameters, in this process.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runners.contract import RunnerSettings
from runners.musicgen import MODELS
from runners.musicgen.runner import plan_take
from runners.registry import Registry
from runners.request import GenerationRequest, RequestInvalid, validate_request
from tests.test_cli import ttag
from ttag_tui.backend.events import Chunk, Failed, JobFailed, Progress
from ttag_tui.bridge import Bridge, BridgeSettings

sys.path.insert(0, str(Path(__file__).parent))
import tiny_musicgen

ROOT = Path(__file__).resolve().parent.parent
SR = tiny_musicgen.SAMPLE_RATE
HOP = 640
TIMEOUT = 120
PARAMS = dict(temperature=0.9, top_k=50, top_p=0.95, guidance=2.5)  # every sampling knob off its default


# -- fixtures --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def checkpoints(tiny_musicgen_folders, tmp_path_factory) -> dict[str, Path]:
    folders = {**tiny_musicgen_folders, "cache": tmp_path_factory.mktemp("musicgen") / "hub"}
    tiny_musicgen.install_in_hub_cache(folders["mono"], folders["cache"], "facebook/musicgen-tiny")
    return folders


def tiny_spec(model_id: str, hub_repo: str, template_id: str = "musicgen-small", **extra):
    template = next(m for m in MODELS if m.id == template_id)
    return replace(
        template,
        id=model_id,
        hub_repo=hub_repo,
        min_duration=0.2,
        size_bytes=1_300_000,
        extra={"max_window_s": 3.0, "context_s": 1.0, **extra},
    )


@pytest.fixture(scope="module")
def registry(checkpoints) -> Registry:
    return Registry(
        [
            tiny_spec("tiny", str(checkpoints["mono"])),
            tiny_spec("tiny-hub", "facebook/musicgen-tiny"),  # resolved from the fake hub cache, like a real id
            tiny_spec("tiny-stereo", str(checkpoints["stereo"]), "musicgen-stereo-small"),
            tiny_spec("tiny-melody", str(checkpoints["melody"]), "musicgen-melody"),
            tiny_spec("tiny-absent", "facebook/musicgen-absent"),
        ]
    )


@pytest.fixture(scope="module")
def bridge(registry, checkpoints):
    settings = BridgeSettings(
        RunnerSettings(threads=1, cache_dir=str(checkpoints["cache"])), idle_unload_s=0, cancel_grace_s=20
    )
    with Bridge(registry, settings) as bridge:
        yield bridge


def request(registry: Registry, **fields) -> GenerationRequest:
    return validate_request(
        {"prompt": "lofi hip hop with piano", "model": "tiny", "duration": 1.0, "seed": 11, **fields}, registry
    )


def run(bridge: Bridge, req: GenerationRequest, *, stream: bool = False) -> tuple[list, list]:
    """The job's events and its clips' audio."""
    job = bridge.submit(req, stream=stream)
    events = list(job.events(timeout=TIMEOUT))
    if isinstance(events[-1], Failed):
        raise JobFailed(events[-1].kind, events[-1].message)
    return events, [clip.audio for clip in events[-1].clips]


@pytest.fixture(scope="module")
def reference():
    """transformers' own generate on a checkpoint folder: the audio ttag must reproduce."""
    import torch
    import transformers

    torch.set_num_threads(1)
    cache: dict[str, object] = {}

    def generate(folder: Path, prompt: str, seed: int, seconds: float, melody=None, **params) -> np.ndarray:
        if str(folder) not in cache:
            cls = (
                transformers.MusicgenMelodyForConditionalGeneration
                if "melody" in folder.name
                else transformers.MusicgenForConditionalGeneration
            )
            cache[str(folder)] = cls.from_pretrained(folder).eval()
        model = cache[str(folder)]
        inputs = dict(transformers.AutoTokenizer.from_pretrained(folder)([prompt], return_tensors="pt"))
        if melody is not None:
            inputs["input_features"] = melody
        frames = -(-round(seconds * SR) // HOP)
        torch.manual_seed(seed)
        audio = model.generate(**inputs, **params, max_new_tokens=frames + 3)
        return audio[0].numpy()[:, : round(seconds * SR)]

    return generate


def hf_params(temperature: float, top_k: int, top_p: float, guidance: float) -> dict:
    """ttag's knobs in transformers' terms: MusicGen's top_p 0 means "off", transformers' would mean "greedy"."""
    return dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p or None, guidance_scale=guidance)


# -- specs and planning (no torch) -----------------------------------------------------------------------------------
def test_specs_cover_the_family_with_musicgen_defaults():
    ids = {m.id for m in MODELS}
    assert len(ids) == 10 and {"musicgen-small", "musicgen-stereo-melody-large"} <= ids
    for spec in MODELS:
        defaults = {p.name: p.default for p in spec.params}
        assert defaults["temperature"] == 1.0 and defaults["top_k"] == 250
        assert defaults["top_p"] == 0.0 and defaults["guidance"] == 3.0
        assert spec.param("audio_prompt").type == "audio"
        assert (spec.param("melody") is not None) == ("melody" in spec.id)
        assert spec.channels == (2 if "stereo" in spec.id else 1) and spec.sample_rate == 32000
        assert spec.hub_repo == f"facebook/{spec.id}" and spec.licence == "CC-BY-NC 4.0"


def test_plan_splits_long_takes_into_overlapping_windows():
    plan = plan_take(7 * SR, HOP, 0, window=150, context=50)
    assert plan.segments == ((0, 150), (50, 100), (50, 100)) and plan.total_frames == 350
    assert plan_take(round(1.01 * SR), HOP, 0, 150, 50).segments == ((0, 51),)  # a partial frame rounds up
    assert plan_take(2 * SR, HOP, 25, 150, 50).segments == ((25, 75),)  # an audio prompt is context


# -- through the worker ----------------------------------------------------------------------------------------------
def test_takes_match_transformers_generate(bridge, registry, checkpoints, reference):
    req = request(registry, duration=1.01, takes=2, **PARAMS)
    events, clips = run(bridge, req)
    assert [c.shape for c in clips] == [(1, round(1.01 * SR))] * 2  # exact length, not whole frames
    for take, audio in enumerate(clips):
        expected = reference(checkpoints["mono"], req.prompt, req.seed + take, 1.01, **hf_params(**PARAMS))
        np.testing.assert_allclose(audio, expected, atol=1e-6)
    assert not np.allclose(clips[0], clips[1])
    steps = [e for e in events if isinstance(e, Progress) and e.phase == "generating"]
    assert steps[-1].step == steps[-1].total == 2 * (51 + 3)  # every decoding step of both takes is counted
    assert any(isinstance(e, Progress) and e.phase == "decoding" for e in events)
    # take 1 alone with seed+1 is the same audio
    _, alone = run(bridge, request(registry, duration=1.01, seed=req.seed + 1, **PARAMS))
    np.testing.assert_array_equal(alone[0], clips[1])


def test_hub_id_loads_from_the_cache_like_a_download(bridge, registry):
    _, from_folder = run(bridge, request(registry, seed=5))
    _, from_cache = run(bridge, request(registry, model="tiny-hub", seed=5))
    np.testing.assert_array_equal(from_folder[0], from_cache[0])


def test_stream_equals_generate_and_arrives_while_generating(bridge, registry):
    req = request(registry, duration=2.0, seed=21)
    _, whole = run(bridge, req)
    events, streamed_clip = run(bridge, req, stream=True)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) >= 3
    assert [c.start for c in chunks] == list(np.cumsum([0] + [c.audio.shape[1] for c in chunks[:-1]]))
    streamed = np.concatenate([c.audio for c in chunks], axis=1)
    assert streamed.shape == whole[0].shape == (1, 2 * SR)
    assert np.abs(streamed - whole[0]).max() < 1e-5
    np.testing.assert_array_equal(streamed_clip[0], streamed)
    last_step = max(i for i, e in enumerate(events) if isinstance(e, Progress) and e.phase == "generating")
    assert events.index(chunks[0]) < last_step  # audio came out before generation finished


def test_cancel_stops_within_a_few_steps_and_the_worker_goes_on(bridge, registry):
    """The runner looks at the cancel flag as it steps, not only between windows: cancelled at step 30 of a 153-step
    window, it stops long before the window's end. The bound is half a window, not "a few" steps: the tiny model's
    steps take about a millisecond, so on a loaded box the cancel's trip from this process to the worker alone spans
    dozens of them (32 once, with four test workers on two cores)."""
    job = bridge.submit(request(registry, duration=60.0, seed=1), stream=True)
    pid = None
    seen_at_cancel = None
    last_step = 0
    for event in job.events(timeout=TIMEOUT):
        if isinstance(event, Progress) and event.phase == "generating":
            last_step = event.step
            if seen_at_cancel is None and event.step >= 30:
                pid = bridge.handle_for(registry.get("tiny")).pid
                seen_at_cancel = event.step
                job.cancel()
    assert isinstance(job.outcome, Failed) and job.outcome.kind == "cancelled", job.outcome
    assert last_step - seen_at_cancel <= 75, (seen_at_cancel, last_step)
    _, clips = run(bridge, request(registry, duration=0.5))
    assert clips[0].shape == (1, SR // 2)
    assert bridge.handle_for(registry.get("tiny")).pid == pid  # the same worker served it


@pytest.mark.slow
def test_long_take_is_exact_and_seamless(bridge, registry):
    req = request(registry, duration=7.0, seed=3)  # window 3 s, context 1 s: seams at 3 s and 5 s
    events, clips = run(bridge, req)
    audio = clips[0][0]
    assert audio.shape == (7 * SR,)
    steps = [e for e in events if isinstance(e, Progress) and e.phase == "generating"]
    assert [e.step for e in steps] == list(range(1, steps[-1].total + 1))  # progress covers every segment
    assert steps[-1].total == (150 + 3) + 2 * (100 + 3)
    jumps = np.abs(np.diff(audio))
    typical = np.percentile(jumps, 99)
    for seam in (3 * SR, 5 * SR):
        assert jumps[seam - 64 : seam + 64].max() <= 1.5 * typical, (seam, jumps[seam - 64 : seam + 64].max(), typical)
    _, streamed = run(bridge, req, stream=True)
    assert np.abs(streamed[0] - clips[0]).max() < 1e-5


def write_tune(path: Path, rate: int, channels: int, notes=(440.0, 330.0), seconds: float = 2.5) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    tune = np.where(t < seconds / 2, np.sin(2 * np.pi * notes[0] * t), np.sin(2 * np.pi * notes[1] * t)) * 0.3
    soundfile.write(path, np.repeat(tune[:, None], channels, axis=1).astype(np.float32), rate)
    return path


@pytest.mark.slow
def test_melody_conditioning_from_wav_and_flac(bridge, registry, checkpoints, reference, tmp_path):
    import librosa
    from scipy.signal import resample_poly
    from transformers.audio_utils import chroma_filter_bank

    from runners.musicgen.conditioning import ChromaSettings, melody_chroma

    wav = write_tune(tmp_path / "tune.wav", 44100, 1)
    flac = write_tune(tmp_path / "tune.flac", 48000, 2)
    other = write_tune(tmp_path / "other.wav", 32000, 1, notes=(262.0, 392.0))
    _, from_wav = run(bridge, request(registry, model="tiny-melody", melody=str(wav), duration=1.5, **PARAMS))
    _, from_flac = run(bridge, request(registry, model="tiny-melody", melody=str(flac), duration=1.5, **PARAMS))
    _, from_other = run(bridge, request(registry, model="tiny-melody", melody=str(other), duration=1.5, **PARAMS))
    assert from_wav[0].shape == from_flac[0].shape == (1, round(1.5 * SR))
    assert not np.allclose(from_wav[0], from_other[0])  # the melody changes the music

    # ttag's chroma (no torchaudio) agrees with a librosa STFT through the same filter bank ...
    wave = resample_poly(soundfile.read(wav, dtype="float32")[0], 320, 441).astype(np.float32)
    chroma = melody_chroma(wave, ChromaSettings())
    power = np.abs(librosa.stft(wave, n_fft=16384, hop_length=4096, center=True, pad_mode="reflect")) ** 2
    bank = chroma_filter_bank(sampling_rate=SR, num_frequency_bins=16384, tuning=0, num_chroma=12)
    assert (chroma[0].numpy().argmax(-1) == (bank @ power).argmax(0)).all()
    # ... and with it transformers' generate makes exactly ttag's audio
    expected = reference(
        checkpoints["melody"], "lofi hip hop with piano", 11, 1.5, melody=chroma, **hf_params(**PARAMS)
    )
    np.testing.assert_allclose(from_wav[0], expected, atol=1e-6)


def test_bad_melody_file_is_a_clear_error(bridge, registry, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt not really audio")
    with pytest.raises(RequestInvalid) as caught:
        request(registry, model="tiny-melody", melody=str(bad))
    assert "melody" in str(caught.value) and "broken.wav" in str(caught.value)
    with pytest.raises(RequestInvalid, match="does not take this parameter"):
        request(registry, model="tiny", melody=str(write_tune(tmp_path / "ok.wav", SR, 1)))
    # a file that went bad after validation: the runner says so in words
    unchecked = GenerationRequest(prompt="x", model="tiny-melody", duration=0.5, seed=1, melody=str(bad))
    job = bridge.submit(unchecked)
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=TIMEOUT)
    assert failed.value.kind == "invalid_request" and "broken.wav" in str(failed.value)
    assert "Traceback" not in str(failed.value)


@pytest.mark.slow
def test_audio_prompt_continues_the_take(bridge, registry, checkpoints, reference, tmp_path):
    import torch
    import transformers

    prompt = write_tune(tmp_path / "take.wav", SR, 1, seconds=0.5)
    req = request(registry, audio_prompt=str(prompt), duration=2.0, seed=8)
    _, clips = run(bridge, req)
    assert clips[0].shape == (1, 2 * SR)
    # transformers' own continuation from the processor's input_values
    processor = transformers.AutoProcessor.from_pretrained(checkpoints["mono"])
    model = transformers.MusicgenForConditionalGeneration.from_pretrained(checkpoints["mono"]).eval()
    inputs = processor(
        audio=soundfile.read(prompt, dtype="float32")[0], sampling_rate=SR, text=[req.prompt], return_tensors="pt"
    )
    torch.manual_seed(8)
    expected = model.generate(**inputs, **hf_params(1.0, 250, 0.0, 3.0), max_new_tokens=75 + 3)[0].numpy()
    np.testing.assert_allclose(clips[0], expected[:, : 2 * SR], atol=1e-6)
    _, streamed = run(bridge, req, stream=True)
    assert np.abs(streamed[0] - clips[0]).max() < 1e-5

    # a stereo model continuing a 22.05 kHz stereo file: resampled, exact length, both channels
    stereo_prompt = write_tune(tmp_path / "take.flac", 22050, 2, seconds=0.7)
    _, stereo = run(bridge, request(registry, model="tiny-stereo", audio_prompt=str(stereo_prompt), duration=1.2))
    assert stereo[0].shape == (2, round(1.2 * SR)) and not np.allclose(stereo[0][0], stereo[0][1])
    # a prompt as long as the request is a clear error
    with pytest.raises(JobFailed, match=r"already 0\.5 s long, and the take includes it: ask for more than 0\.5 s"):
        run(bridge, request(registry, audio_prompt=str(prompt), duration=0.4))


def test_missing_weights_names_the_command_and_the_worker_survives(bridge, registry):
    _, clips = run(bridge, request(registry, duration=0.3))
    pid = bridge.handle_for(registry.get("tiny")).pid
    with pytest.raises(JobFailed) as failed:
        run(bridge, request(registry, model="tiny-absent"))
    assert failed.value.kind == "missing_weights"
    assert "ttag models pull tiny-absent" in str(failed.value) and "1 MB" in str(failed.value)
    _, again = run(bridge, request(registry, duration=0.3))
    np.testing.assert_array_equal(again[0], clips[0])
    assert bridge.handle_for(registry.get("tiny")).pid == pid


# -- in this process -------------------------------------------------------------------------------------------------
def test_out_of_memory_is_typed_and_the_runner_stays_usable(registry, monkeypatch):
    from runners.contract import JobContext, OutOfMemory
    from runners.musicgen.runner import MusicGenRunner

    runner = MusicGenRunner(registry.get("tiny"), RunnerSettings(threads=1))
    runner.load_model(JobContext())
    req = request(registry, duration=0.3)
    healthy = runner.generate(req, JobContext())[0].audio

    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(runner.model, "forward", allocate)  # both decoders run the model's forward first
    with pytest.raises(OutOfMemory, match="smaller model"):
        runner.generate(req, JobContext())
    monkeypatch.undo()
    np.testing.assert_array_equal(runner.generate(req, JobContext())[0].audio, healthy)


def test_streaming_decoder_is_exact_for_a_causal_codec_too():
    import torch
    from transformers import EncodecConfig, EncodecModel

    from runners.musicgen.streaming import StreamingCodecDecoder

    torch.manual_seed(0)
    config = EncodecConfig(
        sampling_rate=SR,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[1.4],
        codebook_size=128,
        codebook_dim=16,
        hidden_size=16,
        num_filters=4,
        use_causal_conv=True,
    )
    codec = EncodecModel(config).eval()
    for layer in codec.quantizer.layers:
        layer.codebook.embed.normal_()
    codes = torch.randint(0, 128, (1, 4, 130))
    with torch.inference_mode():
        whole = codec.decode(codes[None], audio_scales=[None]).audio_values[0].numpy()
    decoder = StreamingCodecDecoder(codec)
    pieces = [decoder.feed(codes[..., i : i + 13]) for i in range(0, 130, 13)] + [decoder.finish()]
    assert np.abs(np.concatenate(pieces, axis=1) - whole).max() < 1e-5 * max(1.0, np.abs(whole).max())


# -- the command line ------------------------------------------------------------------------------------------------


def test_list_models_shows_musicgen_without_importing_torch():
    code = """
import sys
from ttag_tui.cli import main
main(["list-models", "--json"])
print("HEAVY:", sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "transformers", "huggingface_hub"}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY: []" in result.stdout
    models = {m["id"]: m for m in json.loads(result.stdout.split("HEAVY:")[0])}
    small = models["musicgen-small"]
    assert small["runnable"] is True and small["weights_cached"] is False
    assert small["reason"] == "weights not downloaded: ttag models pull musicgen-small"


def test_models_list_and_rm_on_a_hub_cache(checkpoints, tmp_path):
    cache = tmp_path / "hub"
    tiny_musicgen.install_in_hub_cache(checkpoints["mono"], cache, "facebook/musicgen-small")
    env = {"TTAG_CACHE_DIR": str(cache)}
    listed = ttag("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("musicgen-small "))
    assert "cached" in row and "MB" in row
    assert "not downloaded" in next(line for line in listed.stdout.splitlines() if line.startswith("musicgen-medium"))
    removed = ttag("models", "rm", "musicgen-small", env=env)
    assert removed.returncode == 0 and "freed" in removed.stdout, removed.stderr
    assert not (cache / "models--facebook--musicgen-small").exists()
    assert "musicgen-small                not downloaded" in ttag("models", "list", env=env).stdout
    again = ttag("models", "rm", "musicgen-small", env=env)
    assert again.returncode == 1 and "not downloaded" in again.stderr and "Traceback" not in again.stderr


def test_pull_offline_is_a_one_line_error(tmp_path):
    offline = ttag("models", "pull", "musicgen-small", env={"TTAG_CACHE_DIR": str(tmp_path)})
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr and "Traceback" not in offline.stderr

    # with offline mode off the real download path runs, against a local "hub" that has nothing
    class EmptyHub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EmptyHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            "TTAG_CACHE_DIR": str(tmp_path),
            "HF_HUB_OFFLINE": "0",
            "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        }
        missing = ttag("models", "pull", "musicgen-small", env=env)
    finally:
        server.shutdown()
    assert missing.returncode == 1, missing.stderr
    assert "cannot download facebook/musicgen-small" in missing.stderr and "Traceback" not in missing.stderr
    unknown = ttag("models", "pull", "nope")
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr  # a usage error
