"""The diffusers runners and Riffusion's spectrogram converter, offline.

The converter is checked against librosa (same filters, same mel spectrogram) and on signals whose answer is known;
the runners run through the real worker process via the Bridge, on tiny random-weight pipelines built in code
(tests/tiny_diffusion.py), and their audio is compared with the diffusers pipeline called directly in this process on
the same folder, prompt and seed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runners.contract import Cancelled, JobContext, RunnerSettings
from runners.diffusion import AUDIOLDM2, MODELS, RIFFUSION, STABLE_AUDIO
from runners.diffusion import spectrogram as spec_mod
from runners.diffusion.riffusion import join, lerp, normalise, plan_piece
from runners.registry import Registry
from runners.request import GenerationRequest, validate_request
from ttag_tui.backend.events import Done, Failed, JobFailed, Progress
from ttag_tui.bridge import Bridge, BridgeSettings

sys.path.insert(0, str(Path(__file__).parent))
import tiny_diffusion
import tiny_musicgen

ROOT = Path(__file__).resolve().parent.parent
SR = 44100
HOP = 441
COLUMNS = 128  # tiny Riffusion clips: 128 columns = 1.28 s
CLIP = COLUMNS * HOP
OVERLAP = round(0.2 * SR)
TIMEOUT = 180
pytestmark = [
    pytest.mark.filterwarnings("ignore:Should have t:UserWarning"),  # torchsde's float round-off notes (StableAudio)
    pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning"),  # AudioLDM 2's GPT-2 call
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),  # in diffusers
]
needs_diffusers = pytest.mark.skipif(
    importlib.util.find_spec("diffusers") is None, reason="needs the diffusion extra: pip install -e '.[diffusion]'"
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    torch.set_num_threads(1)


def tone_mel(freqs_per_column: list[list[float]], amplitude: float = 0.5) -> np.ndarray:
    """A synthetic mel spectrogram, column by column: the filters' response to each column's steady tones.

    A tone's column is the filter bank applied to the magnitude spectrum of one Hann-windowed frame of it
    (zero-padded to n_fft) — the window's main lobe included, so the column is one a real tone could have.
    """
    params = spec_mod.RIFFUSION
    bank = spec_mod.mel_filterbank()
    n = np.arange(params.win_length)
    window = np.hanning(params.win_length + 1)[:-1]  # periodic, as torch.hann_window

    @functools.cache
    def column(f: float) -> np.ndarray:
        frame = np.zeros(params.n_fft, np.float32)
        frame[: params.win_length] = window * amplitude * np.sin(2 * np.pi * f * n / SR)
        return bank @ np.abs(np.fft.rfft(frame)).astype(np.float32)

    return np.stack([sum(column(f) for f in freqs) for freqs in freqs_per_column], axis=1).astype(np.float32)


def dominant_hz(audio: np.ndarray, start: int, length: int = 8192) -> float:
    frame = audio[start : start + length] * np.hanning(length)
    spectrum = np.abs(np.fft.rfft(frame, 8 * length))
    return float(np.argmax(spectrum) * SR / (8 * length))


# -- the converter ---------------------------------------------------------------------------------------------------
def test_filters_and_mel_spectrogram_match_librosa():
    import librosa

    bank = spec_mod.mel_filterbank()
    expected = librosa.filters.mel(sr=SR, n_fft=17640, n_mels=512, fmin=0.0, fmax=10000.0, htk=True, norm=None)
    np.testing.assert_allclose(bank, expected, atol=1e-6)
    audio = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32) * 0.1
    ours = spec_mod.mel_from_audio(audio).numpy()
    theirs = librosa.feature.melspectrogram(
        y=audio,
        sr=SR,
        n_fft=17640,
        hop_length=HOP,
        win_length=4410,
        power=1.0,
        n_mels=512,
        fmin=0.0,
        fmax=10000.0,
        htk=True,
        norm=None,
        center=True,
        pad_mode="reflect",
    )
    assert ours.shape == theirs.shape == (512, SR // 2 // HOP + 1)
    assert np.abs(ours - theirs).max() <= 1e-4 * theirs.max()


def test_image_convention_is_riffusions():
    t = np.arange(SR) / SR
    low = 0.5 * np.sin(2 * np.pi * 300 * t)
    high = 0.5 * np.sin(2 * np.pi * 5000 * t)
    mel = spec_mod.mel_from_audio(np.where(t < 0.5, low, high).astype(np.float32)).numpy()
    image = spec_mod.image_from_mel(mel)
    assert image.shape == (512, mel.shape[1], 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    assert image.min() == 0 and image.max() > 240  # the loudest pixel is black, near-silence near white
    # low frequencies at the bottom: the 300 Hz tone's darkest row is far below the 5 kHz tone's
    row_low = int(np.argmin(image[:, 20, 0]))
    row_high = int(np.argmin(image[:, 80, 0]))
    assert row_low > 400 and row_high < 200
    # value mapping: 255 - 255 * (mel / max) ** 0.25, truncated to uint8
    expected = np.floor(255 - 255 * (mel / mel.max()) ** 0.25)[::-1]
    assert np.abs(image[..., 0].astype(float) - expected).max() <= 1
    # and back: the mel spectrogram again, up to the image's 8 bits and its scale
    back = spec_mod.mel_from_image(image, max_value=float(mel.max()))
    loud = mel > 0.01 * mel.max()
    assert np.median(np.abs(back[loud] - mel[loud]) / mel[loud]) < 0.03


def test_synthetic_tones_come_back_at_their_frequencies():
    mel = tone_mel([[440.0, 2500.0]] * 100 + [[440.0, 2500.0, 1000.0]] * 100)
    audio = spec_mod.audio_from_mel(mel)
    assert audio.shape == (200 * HOP,) and audio.dtype == np.float32
    hz = np.fft.rfftfreq(80 * HOP, 1 / SR)
    for start, tones, absent in ((10, (440, 2500), 1000), (110, (440, 2500, 1000), None)):
        spectrum = np.abs(np.fft.rfft(audio[start * HOP : (start + 80) * HOP] * np.hanning(80 * HOP)))
        floor = np.median(spectrum)
        for f in tones:  # a sharp peak within a few Hz of each tone
            near = np.abs(hz - f) < 100
            assert abs(hz[near][np.argmax(spectrum[near])] - f) < 0.002 * f + 2, (start, f)
            assert spectrum[near].max() > 100 * floor
        if absent:
            assert spectrum[np.abs(hz - absent) < 20].max() < 0.01 * spectrum.max()
    # the spectral-convergence figure: ‖M − mel(audio)‖ / ‖M‖ on a spectrogram a real signal can have
    assert spec_mod.spectral_convergence(mel, audio) < 0.15


def test_synthetic_chirp_comes_back_as_a_sweep():
    chirp = [200.0 + (4000.0 - 200.0) * i / 199 for i in range(200)]
    audio = spec_mod.audio_from_mel(tone_mel([[f] for f in chirp]))
    for column in (30, 70, 110, 150):  # each 50 ms window's dominant frequency follows the sweep
        found = dominant_hz(audio, column * HOP - 1100, 2205)
        assert abs(found - chirp[column]) < 0.03 * chirp[column] + 20, (column, found, chirp[column])


def test_converter_beats_plain_griffin_lim_and_is_much_faster():
    """Same input, librosa's route (mel pseudo-inverse + 32 plain Griffin-Lim iterations at n_fft 17640) vs ttag's."""
    import librosa

    rng = np.random.default_rng(1)
    t = np.arange(COLUMNS * HOP) / SR
    notes = sum(
        0.2 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * r * t))
        for f, r in ((220, 2), (330, 3), (523, 1.5), (1760, 4))
    )
    hits = rng.standard_normal(t.size) * (np.mod(t, 0.25) < 0.03) * 0.3
    mel = spec_mod.mel_from_image(spec_mod.image_from_audio((notes + hits).astype(np.float32)))
    started = time.perf_counter()
    ours = spec_mod.audio_from_mel(mel)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    bank = spec_mod.mel_filterbank().astype(np.float64)
    linear = np.maximum(bank.T @ np.linalg.solve(bank @ bank.T, mel), 0)  # = pinv(bank) @ mel, without the SVD
    theirs = librosa.griffinlim(
        linear, n_iter=32, hop_length=HOP, win_length=4410, n_fft=17640, momentum=0.0, init="random", random_state=0
    )
    theirs_s = time.perf_counter() - started
    ours_sc, theirs_sc = spec_mod.spectral_convergence(mel, ours), spec_mod.spectral_convergence(mel, theirs)
    assert ours_sc < theirs_sc, (ours_sc, theirs_sc)
    assert ours_s * 5 < theirs_s, (ours_s, theirs_s)
    # the same image always makes the same audio (fixed initial phase)
    np.testing.assert_array_equal(spec_mod.audio_from_mel(mel), ours)


def test_audio_image_audio_round_trip():
    t = np.arange(2 * SR) / SR
    audio = np.where(t < 1, 0.3 * np.sin(2 * np.pi * 660 * t), 0.2 * np.sin(2 * np.pi * 1320 * t)).astype(np.float32)
    image = spec_mod.image_from_audio(audio)
    assert image.shape == (512, 200, 3)
    again = spec_mod.audio_from_image(image)
    assert again.shape == audio.shape
    assert abs(dominant_hz(again, 10000) - 660) < 3 and abs(dominant_hz(again, SR + 10000) - 1320) < 3
    second = spec_mod.image_from_audio(again)
    assert np.abs(second.astype(float) - image.astype(float)).mean() < 4  # of 255
    assert spec_mod.work_rate() == 24000  # phase retrieval at 24 kHz: hop 240, window 2400


def test_command_line_turns_seed_images_into_audio_prompts(tmp_path):
    t = np.arange(48000) / 48000
    soundfile.write(tmp_path / "in.wav", (0.3 * np.sin(2 * np.pi * 880 * t)).astype(np.float32), 48000)
    spec_mod.main([str(tmp_path / "in.wav"), str(tmp_path / "seed.png")])
    from PIL import Image

    assert Image.open(tmp_path / "seed.png").size == (100, 512)  # 1 s: 100 columns of 10 ms
    spec_mod.main([str(tmp_path / "seed.png"), str(tmp_path / "seed.wav")])
    audio, rate = soundfile.read(tmp_path / "seed.wav", dtype="float32")
    assert rate == SR and audio.shape == (100 * HOP,) and abs(dominant_hz(audio, 10000) - 880) < 3


def test_piece_planning_and_crossfades():
    plans = plan_piece(3 * CLIP - 2 * OVERLAP, CLIP, OVERLAP, 0.0)
    assert [p.start for p in plans] == [0, CLIP - OVERLAP, 2 * (CLIP - OVERLAP)]
    assert [p.alpha for p in plans] == [0.0, 0.5, 1.0]
    assert [p.alpha for p in plan_piece(CLIP // 2, CLIP, OVERLAP, 0.3)] == [0.3]
    assert [round(p.alpha, 3) for p in plan_piece(3 * CLIP, CLIP, OVERLAP, 0.4)] == [0.4, 0.6, 0.8, 1.0]
    ones = [np.ones(CLIP, np.float32)] * 3
    joined = join(ones, plans, OVERLAP, 3 * CLIP - 2 * OVERLAP)
    seam = joined[CLIP - OVERLAP : CLIP]
    ramp = np.sin(0.5 * np.pi * (np.arange(OVERLAP) + 0.5) / OVERLAP)
    np.testing.assert_allclose(seam, ramp + ramp[::-1])  # sine/cosine fades: equal power for unrelated clips
    np.testing.assert_allclose(ramp**2 + ramp[::-1] ** 2, 1.0)
    assert (joined[: CLIP - OVERLAP] == 1).all() and (joined[CLIP : 2 * CLIP - 2 * OVERLAP] == 1).all()
    assert lerp(0.0, 1.0, 2.0) == 1.0 and lerp(1.0, 1.0, 2.0) == 2.0


def test_specs():
    assert [m.id for m in MODELS] == [
        "riffusion-model-v1",
        "stable-audio-open-1.0",
        "audioldm2",
        "audioldm2-music",
        "audioldm2-large",
    ]
    assert RIFFUSION.hub_repo == "riffusion/riffusion-model-v1" and RIFFUSION.sample_rate == 44100
    assert {p.name for p in RIFFUSION.params} == {
        "guidance",
        "steps",
        "negative_prompt",
        "audio_prompt",
        "strength",
        "end_prompt",
        "alpha",
    }
    assert STABLE_AUDIO.channels == 2 and STABLE_AUDIO.max_duration == 47.0 and "torchsde" in STABLE_AUDIO.requires
    assert [m.hub_repo for m in AUDIOLDM2] == ["cvssp/audioldm2", "cvssp/audioldm2-music", "cvssp/audioldm2-large"]
    assert all(m.sample_rate == 16000 and m.runner_name == "diffusion" for m in AUDIOLDM2)


def test_listing_models_imports_no_ml_library():
    code = """
import sys
from ttag_tui.cli import main
main(["list-models", "--json"])
print("HEAVY:", sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "diffusers", "transformers"}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY: []" in result.stdout
    models = {m["id"]: m for m in json.loads(result.stdout.split("HEAVY:")[0])}
    assert models["riffusion-model-v1"]["reason"] == "weights not downloaded: ttag models pull riffusion-model-v1"


# -- the runners through the worker ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    root = tmp_path_factory.mktemp("diffusion")
    out = {
        "riff": tiny_diffusion.build_riffusion(root / "riff"),
        "sa": tiny_diffusion.build_stable_audio(root / "sa"),
        "ldm2": tiny_diffusion.build_audioldm2(root / "ldm2"),
        "ldm2-bare": tiny_diffusion.build_audioldm2(root / "ldm2-bare", bare_gpt2=True),
        "cache": root / "hub",
    }
    tiny_musicgen.install_in_hub_cache(out["riff"], out["cache"], "riffusion/riffusion-tiny")
    return out


@pytest.fixture(scope="module")
def registry(folders) -> Registry:
    riff = dict(min_duration=0.5, size_bytes=350_000, extra={**RIFFUSION.extra, "clip_columns": COLUMNS})
    return Registry(
        [
            replace(RIFFUSION, id="tiny-riff", hub_repo=str(folders["riff"]), **riff),
            replace(RIFFUSION, id="tiny-riff-hub", hub_repo="riffusion/riffusion-tiny", **riff),
            replace(RIFFUSION, id="tiny-absent", hub_repo="riffusion/riffusion-absent", **riff),
            replace(STABLE_AUDIO, id="tiny-sa", hub_repo=str(folders["sa"]), min_duration=0.5),
            replace(AUDIOLDM2[0], id="tiny-ldm2", hub_repo=str(folders["ldm2"]), min_duration=0.5),
            replace(AUDIOLDM2[0], id="tiny-ldm2-bare", hub_repo=str(folders["ldm2-bare"]), min_duration=0.5),
        ]
    )


@pytest.fixture(scope="module")
def bridge(registry, folders):
    settings = BridgeSettings(
        RunnerSettings(threads=1, cache_dir=str(folders["cache"])), idle_unload_s=0, cancel_grace_s=20
    )
    with Bridge(registry, settings) as bridge:
        yield bridge


def request(registry: Registry, **fields) -> GenerationRequest:
    return validate_request(
        {"prompt": "lofi piano", "model": "tiny-riff", "duration": 1.0, "seed": 11, "steps": 4, **fields}, registry
    )


def run(bridge: Bridge, req: GenerationRequest) -> tuple[list, list[np.ndarray]]:
    job = bridge.submit(req)
    events = list(job.events(timeout=TIMEOUT))
    if isinstance(events[-1], Failed):
        raise JobFailed(events[-1].kind, events[-1].message)
    assert isinstance(events[-1], Done)
    return events, [clip.audio for clip in events[-1].clips]


@pytest.fixture(scope="module")
def pipes(folders):
    """diffusers' own pipelines on the same folders: the reference ttag must reproduce."""
    import diffusers

    loaded: dict[str, object] = {}

    def get(name: str, folder: str):
        if (name, folder) not in loaded:
            pipe = getattr(diffusers, name).from_pretrained(folders[folder])
            pipe.set_progress_bar_config(disable=True)
            loaded[(name, folder)] = pipe
        return loaded[(name, folder)]

    return get


def riffusion_reference(image: np.ndarray, seconds: float) -> np.ndarray:
    """What the runner does with one clip's image: Griffin-Lim, trim, normalise."""
    return normalise(spec_mod.audio_from_image(image * 255.0)[: round(seconds * SR)])


def generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def steps_of(events: list, phase: str = "generating") -> list[Progress]:
    return [e for e in events if isinstance(e, Progress) and e.phase == phase]


@needs_diffusers
def test_riffusion_takes_match_diffusers(bridge, registry, pipes):
    req = request(registry, takes=2, guidance=5.0, negative_prompt="drums")
    events, clips = run(bridge, req)
    assert [c.shape for c in clips] == [(1, SR)] * 2
    pipe = pipes("StableDiffusionPipeline", "riff")
    for take, audio in enumerate(clips):
        image = pipe(
            "lofi piano",
            negative_prompt="drums",
            height=512,
            width=COLUMNS,
            num_inference_steps=4,
            guidance_scale=5.0,
            generator=generator(11 + take),
            output_type="np",
        ).images[0]
        np.testing.assert_allclose(audio[0], riffusion_reference(image, 1.0), atol=2e-5)
    assert not np.allclose(clips[0], clips[1])
    assert steps_of(events)[-1].step == steps_of(events)[-1].total == 2 * 4
    assert steps_of(events, "decoding")[-1].total == spec_mod.ITERATIONS == 48
    _, alone = run(bridge, request(registry, seed=12, guidance=5.0, negative_prompt="drums"))
    np.testing.assert_array_equal(alone[0], clips[1])  # take 1 is seed + 1, alone
    _, from_cache = run(
        bridge, request(registry, model="tiny-riff-hub", seed=12, guidance=5.0, negative_prompt="drums")
    )
    np.testing.assert_array_equal(from_cache[0], clips[1])  # a hub id resolves in the cache like a download


@needs_diffusers
def test_riff_alpha_ends_are_the_single_prompt_results(bridge, registry):
    riff = dict(prompt="lofi piano", end_prompt="techno drums", seed=5)
    _, (start,) = run(bridge, request(registry, **riff, alpha=0.0))
    _, (end,) = run(bridge, request(registry, **riff, alpha=1.0))
    _, (middle,) = run(bridge, request(registry, **riff, alpha=0.5))
    _, (a,) = run(bridge, request(registry, prompt="lofi piano", seed=5))
    _, (b,) = run(bridge, request(registry, prompt="techno drums", seed=6))  # the end of a riff is the next seed
    np.testing.assert_array_equal(start, a)
    np.testing.assert_array_equal(end, b)
    assert np.abs(middle - a).max() > 0.1 and np.abs(middle - b).max() > 0.1
    _, (again,) = run(bridge, request(registry, **riff, alpha=0.5))
    np.testing.assert_array_equal(again, middle)  # same seed, same audio


@needs_diffusers
def test_img2img_from_an_audio_file_matches_diffusers(bridge, registry, pipes, tmp_path):
    from PIL import Image

    from runners.diffusion.riffusion import load_mono

    t = np.arange(int(22050 * 0.7)) / 22050
    loop = np.stack([0.4 * np.sin(2 * np.pi * 330 * t), 0.4 * np.sin(2 * np.pi * 990 * t)], axis=1)
    path = tmp_path / "seed.flac"
    soundfile.write(path, loop.astype(np.float32), 22050)  # stereo 22.05 kHz: mixed down, resampled, looped
    req = request(registry, audio_prompt=str(path), strength=0.5, steps=6, seed=3)
    events, (audio,) = run(bridge, req)
    assert steps_of(events)[-1].total == 3  # int(6 * 0.5) denoising steps
    window = np.resize(load_mono(str(path), SR), CLIP)
    init = Image.fromarray(spec_mod.image_from_audio(window, columns=COLUMNS))
    pipe = pipes("StableDiffusionImg2ImgPipeline", "riff")
    image = pipe(
        "lofi piano",
        image=init,
        strength=0.5,
        num_inference_steps=6,
        guidance_scale=7.0,
        generator=generator(3),
        output_type="np",
    ).images[0]
    np.testing.assert_allclose(audio[0], riffusion_reference(image, 1.0), atol=2e-5)
    _, (stronger,) = run(bridge, request(registry, audio_prompt=str(path), strength=0.9, steps=6, seed=3))
    assert not np.allclose(stronger, audio)
    # a riff from the same seed audio ends exactly where the end prompt alone with the next seed does
    _, (riff_end,) = run(
        bridge,
        request(registry, audio_prompt=str(path), strength=0.5, steps=6, seed=3, end_prompt="techno drums", alpha=1.0),
    )
    _, (end_alone,) = run(
        bridge, request(registry, audio_prompt=str(path), strength=0.5, steps=6, seed=4, prompt="techno drums")
    )
    np.testing.assert_array_equal(riff_end, end_alone)


@needs_diffusers
def test_a_long_piece_chains_clips_from_start_to_end(bridge, registry):
    seconds = (3 * CLIP - 2 * OVERLAP) / SR  # three clips: alpha 0, 0.5, 1
    events, (piece,) = run(bridge, request(registry, duration=seconds, end_prompt="techno drums", seed=5))
    assert piece.shape == (1, 3 * CLIP - 2 * OVERLAP)
    assert steps_of(events)[-1].total == 3 * 4
    _, (first,) = run(bridge, request(registry, duration=CLIP / SR, seed=5))
    _, (last,) = run(bridge, request(registry, duration=CLIP / SR, prompt="techno drums", seed=6))

    def scaled_match(part: np.ndarray, whole: np.ndarray) -> float:
        gain = float(part @ whole / (whole @ whole))
        return float(np.abs(part - gain * whole).max() / np.abs(part).max())

    head = slice(0, CLIP - OVERLAP)  # before the first crossfade: clip 1 alone (alpha 0)
    assert scaled_match(piece[0, head], first[0, head]) < 1e-4
    tail = slice(2 * (CLIP - OVERLAP) + OVERLAP, 3 * CLIP - 2 * OVERLAP)  # after the last one: clip 3 (alpha 1)
    assert scaled_match(piece[0, tail], last[0, OVERLAP:]) < 1e-4
    assert np.abs(piece).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)


@needs_diffusers
def test_cancel_stops_within_a_step_and_the_worker_goes_on(bridge, registry):
    job = bridge.submit(request(registry, duration=60.0, seed=1))
    seen_at_cancel = last = 0
    pid = None
    for event in job.events(timeout=TIMEOUT):
        if isinstance(event, Progress) and event.phase == "generating":
            last = event.step
            if not seen_at_cancel and event.step >= 6:
                pid = bridge.handle_for(registry.get("tiny-riff")).pid
                seen_at_cancel = event.step
                job.cancel()
    assert isinstance(job.outcome, Failed) and job.outcome.kind == "cancelled", job.outcome
    assert last - seen_at_cancel <= 4
    _, (audio,) = run(bridge, request(registry, duration=0.5))
    assert audio.shape == (1, SR // 2) and bridge.handle_for(registry.get("tiny-riff")).pid == pid


@needs_diffusers
def test_missing_weights_names_the_command(bridge, registry):
    with pytest.raises(JobFailed) as failed:
        run(bridge, request(registry, model="tiny-absent"))
    assert failed.value.kind == "missing_weights"
    assert "ttag models pull tiny-absent" in str(failed.value) and "Traceback" not in str(failed.value)
    run(bridge, request(registry, duration=0.5))  # the worker is still there


@needs_diffusers
def test_stable_audio_makes_the_requested_duration_like_diffusers(bridge, registry, pipes):
    req = request(
        registry, model="tiny-sa", prompt="dog barking", duration=1.2, takes=2, steps=4, negative_prompt="hammer"
    )
    events, clips = run(bridge, req)
    assert [c.shape for c in clips] == [(2, round(1.2 * SR))] * 2
    pipe = pipes("StableAudioPipeline", "sa")
    for take, audio in enumerate(clips):
        expected = pipe(
            "dog barking",
            negative_prompt="hammer",
            audio_end_in_s=1.2,
            num_inference_steps=4,
            guidance_scale=7.0,
            generator=generator(11 + take),
            output_type="np",
        ).audios[0]
        np.testing.assert_allclose(audio, expected, atol=1e-5)
    assert not np.allclose(clips[0], clips[1])
    assert [e.step for e in steps_of(events)] == list(range(1, 9))
    with pytest.raises(JobFailed, match=r"at most 1\.49 s") as failed:  # the tiny model's window
        run(bridge, request(registry, model="tiny-sa", duration=2.0))
    assert failed.value.kind == "invalid_request"


@needs_diffusers
def test_audioldm2_makes_the_requested_duration_like_diffusers(bridge, registry, pipes):
    req = request(registry, model="tiny-ldm2", prompt="dog barking", duration=1.5, steps=4)
    events, (audio,) = run(bridge, req)
    assert audio.shape == (1, 24000)
    expected = pipes("AudioLDM2Pipeline", "ldm2")(
        "dog barking",
        audio_length_in_s=1.5,
        num_inference_steps=4,
        negative_prompt="Low quality.",
        generator=generator(11),
        output_type="np",
    ).audios[0]
    np.testing.assert_allclose(audio[0], expected, atol=1e-6)
    assert np.abs(audio).max() > 1e-3
    assert [e.step for e in steps_of(events)] == [1, 2, 3, 4]
    # a repo whose language model is a bare GPT2Model loads it as GPT2LMHeadModel: same weights, same audio
    _, (bare,) = run(bridge, replace(req, model="tiny-ldm2-bare"))
    np.testing.assert_array_equal(bare, audio)


@needs_diffusers
@pytest.mark.parametrize("model", ["tiny-sa", "tiny-ldm2"])
def test_old_style_callback_cancels(registry, model):
    from runners.diffusion.audioldm2 import AudioLDM2Runner
    from runners.diffusion.stable_audio import StableAudioRunner

    runner_class = StableAudioRunner if model == "tiny-sa" else AudioLDM2Runner
    runner = runner_class(registry.get(model), RunnerSettings(threads=1))
    runner.load_model(JobContext())
    seen = []

    def on_progress(phase, step, total):
        seen.append((phase, step))
        if phase == "generating" and step == 2:
            ctx.cancel()

    ctx = JobContext(on_progress)
    with pytest.raises(Cancelled):
        runner.generate(request(registry, model=model, duration=1.0, steps=8), ctx)
    assert seen[-1] == ("generating", 2)
    assert len(runner.generate(request(registry, model=model, duration=1.0, steps=2), JobContext())) == 1
