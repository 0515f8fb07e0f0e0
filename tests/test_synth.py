"""The built-in synth model: does the audio obey the prompt, and does the runner keep the contract?

Every check is measured from the rendered audio (tempo from onsets, key from chroma, rain from its spectrum), so a
renderer that ignored the prompt would fail. Renders are shared through module-scoped fixtures to keep this quick.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from scipy import ndimage, signal

from runners.contract import Cancelled, JobContext
from runners.registry import default_registry
from runners.request import validate_request
from runners.synth.genres import GENRES
from runners.synth.patterns import arrange
from runners.synth.prompt import NOTE_NAMES, parse_prompt
from runners.synth.runner import SynthRunner

SR = 44100
librosa = pytest.importorskip("librosa")


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture(scope="module")
def runner(registry):
    r = SynthRunner(registry.get("synth"))
    r.load_model(JobContext())
    return r


@pytest.fixture(scope="module")
def render(runner, registry):
    """Render (prompt, duration, seed, takes, temperature) once per module."""
    cache: dict[tuple, list] = {}

    def _render(prompt: str, duration: float = 10.0, seed: int = 1, takes: int = 1, temperature: float | None = None):
        key = (prompt, duration, seed, takes, temperature)
        if key not in cache:
            data = {"prompt": prompt, "duration": duration, "seed": seed, "takes": takes}
            if temperature is not None:
                data["temperature"] = temperature
            cache[key] = runner.generate(validate_request(data, registry), JobContext())
        return cache[key]

    return _render


# ---------------------------------------------------------------- measurements


def measure_tempo(audio: np.ndarray) -> float:
    """BPM from the onset envelope: librosa's estimate, refined on the autocorrelation peak one bar (4 beats) away."""
    y = librosa.resample(audio.mean(axis=0), orig_sr=SR, target_sr=22050)
    hop = 128
    env = librosa.onset.onset_strength(y=y, sr=22050, hop_length=hop)
    fps = 22050 / hop
    coarse = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=env, sr=22050, hop_length=hop))[0])
    env = env - env.mean()
    ac = np.correlate(env, env, "full")[len(env) - 1 :]
    lag = 4 * 60 * fps / coarse
    lo, hi = int(lag * 0.96), int(np.ceil(lag * 1.04))
    k = lo + int(np.argmax(ac[lo : hi + 1]))
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return 4 * 60 * fps / (k + shift)


def band_spectrum(audio: np.ndarray, lo: float = 300.0, hi: float = 10000.0) -> tuple[float, float]:
    """(spectral flatness, largest narrow peak in dB above its neighbourhood) of the long-term spectrum in a band."""
    f, p = signal.welch(audio.mean(axis=0), SR, nperseg=4096)
    band = (f >= lo) & (f <= hi)
    power = p[band]
    flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
    db = 10 * np.log10(p + 1e-20)
    excess = (db - ndimage.median_filter(db, size=41, mode="nearest"))[band]
    return flatness, float(excess.max())


def median_along(spectrogram: np.ndarray, axis: int, size: int = 31) -> np.ndarray:
    """``ndimage.median_filter(spectrogram, size)`` along one axis (reflected edges), one row at a time: SciPy's
    one-dimensional rank filter is ~7x faster than its n-dimensional one, and a median is a selection, so the values
    are the same."""
    rows = np.moveaxis(spectrogram, axis, -1)
    out = np.empty(rows.shape, dtype=spectrogram.dtype)
    for index in np.ndindex(rows.shape[:-1]):
        out[index] = ndimage.median_filter(rows[index], size=size, mode="reflect")
    return np.moveaxis(out, -1, axis)


def harmonic(y: np.ndarray) -> np.ndarray:
    """``librosa.effects.harmonic(y)`` with its defaults (kernel 31, margin 1, power 2), the median filters taken by
    :func:`median_along` (test_harmonic_is_librosas checks the result is librosa's, bit for bit)."""
    magnitude, phase = librosa.magphase(librosa.stft(y))
    across_time, across_frequency = median_along(magnitude, -1), median_along(magnitude, -2)
    mask = librosa.util.softmask(across_time, across_frequency, power=2, split_zeros=True)
    return librosa.istft((magnitude * mask) * phase, dtype=y.dtype, length=y.shape[-1])


def assert_in_key(audio: np.ndarray, key: str) -> None:
    """Most of the pitched energy above C3 is in the key's scale (a uniform spread puts 7/12 there), and its tonic
    is among the strongest pitch classes. Any progression in the key passes; a take a semitone off does not."""
    from runners.synth.patterns import SCALES

    tonic, mode = key.split()
    root = NOTE_NAMES.index(tonic)
    scale = sorted((root + step) % 12 for step in SCALES[mode])
    # At 11.025 kHz: the five octaves above C3 end below its Nyquist, and the drum-removing median filters (most of
    # this check's time) see half the frames of 22.05 kHz
    y = librosa.resample(audio.mean(axis=0), orig_sr=SR, target_sr=11025)
    # drums out: a kick's pitch sweep smears every pitch class
    profile = librosa.feature.chroma_cqt(y=harmonic(y), sr=11025, fmin=130.81, n_octaves=5).mean(axis=1)
    ranking = [NOTE_NAMES[i] for i in np.argsort(profile)[::-1]]
    assert profile[scale].sum() >= 0.7 * profile.sum(), ranking
    assert tonic in ranking[:3], ranking


def true_peak_db(audio: np.ndarray) -> float:
    up = signal.resample_poly(audio.astype(np.float64), 4, 1, axis=-1)
    return 20 * np.log10(np.max(np.abs(up)))


def rms_db(audio: np.ndarray) -> float:
    return 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-20)


# ---------------------------------------------------------------- the prompt is obeyed


@pytest.mark.parametrize(
    ("prompt", "bpm"),
    [("techno 128 bpm", 128), ("hip hop beat at 90 bpm", 90), ("lofi hip hop with piano, 85 bpm", 85)],
)
def test_tempo_is_measured_from_the_audio(render, prompt, bpm):
    audio = render(prompt, 12.0)[0].audio
    assert bar_tempo(audio, bpm) == pytest.approx(bpm, abs=1.5)
    # the free estimate may read hats on every eighth as double time, never another tempo
    assert min(abs(measure_tempo(audio) - bpm * octave) for octave in (0.5, 1, 2)) <= 2.0


@pytest.mark.parametrize(
    ("prompt", "key"), [("solo piano in D minor", "D minor"), ("solo piano in E major", "E major")]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_key_shows_in_the_chroma(render, prompt, key, seed):
    assert_in_key(render(prompt, 8.0, seed=seed)[0].audio, key)


@pytest.mark.parametrize(("prompt", "wrong"), [("solo piano in D minor", "Eb minor"), ("house in F minor", "E minor")])
def test_the_key_check_fails_a_take_a_semitone_off(render, prompt, wrong):
    with pytest.raises(AssertionError):
        assert_in_key(render(prompt, 8.0, seed=1)[0].audio, wrong)


def test_harmonic_is_librosas(render):
    """The key check's drum removal is librosa's own, bit for bit, on a take with drums."""
    y = librosa.resample(render("house in F minor", 8.0, seed=1)[0].audio.mean(axis=0), orig_sr=SR, target_sr=11025)
    assert np.array_equal(harmonic(y), librosa.effects.harmonic(y))


def test_rain_is_broadband_noise_without_tones(render):
    rain = render("gentle rain on a window", 8.0)[0]
    assert rain.metadata["brief"]["instruments"] == []
    flatness, peak = band_spectrum(rain.audio)
    assert flatness > 0.5
    assert peak < 6.0
    # the same measure calls music tonal, so it can tell the difference
    music_flatness, music_peak = band_spectrum(render("solo piano in D minor", 8.0)[0].audio)
    assert music_flatness < 0.2 and music_peak > 10.0


def test_lofi_brief_has_swung_drums_bass_and_piano():
    brief = parse_prompt("lofi hip hop with piano, 85 bpm")
    assert brief.genre == "lofi" and brief.bpm == 85
    assert {"drums", "bass", "piano"} <= brief.instruments
    assert GENRES[brief.genre].swing > 0.1
    plan = arrange(brief, seed=3, temperature=1.0, n_samples=10 * SR)
    voices = {n.voice for n in plan.notes}
    assert {"kick", "snare", "hat", "bass", "piano"} <= voices
    # swing: off-beat sixteenths of the hats land late, not half-way between the beats' eighths
    step = plan.bar / 16
    offsets = [(n.start % plan.bar) / step for n in plan.notes if n.voice == "hat"]
    late = [o - round(o) for o in offsets if round(o) % 2 == 1 and abs(o - round(o)) < 0.5]
    assert late and np.mean(late) > 0.1


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("techno 128bpm in A minor", {"bpm": 128.0, "key": "A minor", "genre": "techno"}),
        ("C# major", {"key": "C# major"}),
        ("house in Bb", {"key": "Bb minor", "genre": "house"}),
        ("happy pop", {"genre": "pop"}),
        ("drum and bass", {"genre": "dnb", "bpm": 174.0}),
        ("sad ambient", {"genre": "ambient"}),
    ],
)
def test_prompt_parser(prompt, expected):
    described = parse_prompt(prompt).describe()
    for name, value in expected.items():
        assert described[name] == value, described


def test_parser_moods_tempo_words_and_scenes():
    assert parse_prompt("happy pop").mode == "major"
    assert parse_prompt("dark techno").mode == "minor"
    assert parse_prompt("fast house").bpm > parse_prompt("house").bpm > parse_prompt("slow house").bpm
    assert "key" not in parse_prompt("I am in a dark mood").notes  # "in a dark" is not the key of A
    assert parse_prompt("I am in a dark mood").mode == "minor"
    dnb = parse_prompt("drum and bass")
    assert dnb.instruments == frozenset(GENRES["dnb"].instruments)  # not "drums" + "bass" read twice
    rain = parse_prompt("gentle rain on a window")
    assert rain.scenes == ("rain",) and not rain.musical
    storm = parse_prompt("lofi beat with rain and thunder, no bass")
    assert {"rain", "thunder"} <= set(storm.scenes) and storm.musical and "bass" not in storm.instruments


def test_temperature_makes_patterns_busier():
    brief = parse_prompt("funk")
    plain = arrange(brief, seed=5, temperature=0.0, n_samples=20 * SR)
    busy = arrange(brief, seed=5, temperature=2.0, n_samples=20 * SR)
    # more drum hits in the bars where both play their whole groove (above temperature 0 an arrangement rests some
    # bars, drops the kick from some or plays them half-time)
    breaks = set().union(*busy.info["breaks"].values())
    drum_bars = {int(n.start // busy.bar) for n in busy.notes if n.voice in ("kick", "snare", "hat")} - breaks

    def hits(plan):
        return sum(n.voice in ("kick", "snare", "hat") and int(n.start // plan.bar) in drum_bars for n in plan.notes)

    assert hits(busy) > hits(plain)
    # plain drums repeat bar after bar
    bars = {}
    for n in plain.notes:
        if n.voice in ("kick", "snare", "hat"):
            bars.setdefault(int(n.start // plain.bar), []).append((n.voice, round((n.start % plain.bar) / 100)))
    patterns = [sorted(v) for k, v in sorted(bars.items()) if 0 < k < max(bars)]
    assert all(p == patterns[0] for p in patterns)


# ---------------------------------------------------------------- the contract


@pytest.mark.parametrize("duration", [0.5, 3.3, 10.0, 1.23456])
def test_duration_is_exact_to_the_sample(render, duration):
    clip = render("house with pads", duration)[0]
    assert clip.audio.shape == (2, round(duration * SR))
    assert clip.audio.dtype == np.float32 and clip.sample_rate == SR
    assert np.isfinite(clip.audio).all()


@pytest.mark.parametrize(
    "prompt",
    [
        "lofi hip hop with piano, 85 bpm",
        "techno 128 bpm",
        "gentle rain on a window",
        "florp zzz 999",
        "dubstep with heavy wobble bass",
        "thunderstorm over the ocean",
    ],
)
def test_true_peak_and_loudness(render, prompt):
    audio = render(prompt, 10.0)[0].audio
    assert true_peak_db(audio) <= -1.0
    assert -22.0 < rms_db(audio) < -12.0


def test_nonsense_prompt_still_renders(render):
    clip = render("florp zzz 999", 3.0)[0]
    assert clip.audio.shape == (2, 3 * SR)
    assert np.isfinite(clip.audio).all() and rms_db(clip.audio) > -30.0
    assert true_peak_db(clip.audio) <= -1.0


def test_same_seed_same_audio_other_seed_a_variation(render, runner, registry):
    a = render("techno 128 bpm", 12.0, seed=11)[0]
    again = runner.generate(
        validate_request({"prompt": "techno 128 bpm", "duration": 12.0, "seed": 11}, registry), JobContext()
    )[0]
    assert np.array_equal(a.audio, again.audio)
    b = render("techno 128 bpm", 12.0, seed=12)[0]
    assert not np.array_equal(a.audio, b.audio)
    assert np.mean(np.abs(a.audio - b.audio)) > 1e-3
    assert a.metadata["brief"] == b.metadata["brief"]
    assert bar_tempo(b.audio, 128) == pytest.approx(128, abs=1.5)
    assert bar_tempo(a.audio, 128) == pytest.approx(128, abs=1.5)


def test_stream_concatenates_to_generate(runner, registry, render):
    request = validate_request({"prompt": "lofi with rain", "duration": 3.3, "seed": 4, "takes": 2}, registry)
    chunks = list(runner.stream(request, JobContext()))
    clips = render("lofi with rain", 3.3, seed=4, takes=2)
    assert [c.take for c in chunks] == sorted(c.take for c in chunks)
    for take, clip in enumerate(clips):
        mine = [c for c in chunks if c.take == take]
        assert len(mine) > 1
        starts = np.cumsum([0] + [c.audio.shape[1] for c in mine[:-1]])
        assert [c.start for c in mine] == list(starts)
        assert all(c.sample_rate == SR and c.audio.dtype == np.float32 for c in mine)
        assert np.array_equal(np.concatenate([c.audio for c in mine], axis=1), clip.audio)


def test_cancel_mid_run_raises(runner, registry):
    seen = []

    def on_progress(phase, step, total):
        seen.append((phase, step, total))
        if step >= 2:
            ctx.cancel()

    ctx = JobContext(on_progress)
    request = validate_request({"prompt": "trance", "duration": 20.0, "seed": 1}, registry)
    with pytest.raises(Cancelled):
        runner.generate(request, ctx)
    assert seen and all(phase == "generating" for phase, _, _ in seen)
    assert max(step for _, step, _ in seen) == 2 and seen[-1][2] == 20


def test_progress_reaches_the_end(runner, registry):
    seen = []
    request = validate_request({"prompt": "jazz", "duration": 2.5, "seed": 1, "takes": 2}, registry)
    runner.generate(request, JobContext(lambda *a: seen.append(a)))
    steps = [s for _, s, _ in seen]
    assert steps == sorted(steps) and steps[-1] == seen[-1][2] == 6


def test_takes_use_consecutive_seeds(render):
    clips = render("chiptune", 2.0, seed=41, takes=3)
    assert [c.metadata["seed"] for c in clips] == [41, 42, 43]
    assert [c.metadata["take"] for c in clips] == [0, 1, 2]
    assert not np.array_equal(clips[0].audio, clips[1].audio)
    alone = render("chiptune", 2.0, seed=42, takes=1)[0]
    assert np.array_equal(alone.audio, clips[1].audio)  # any take re-creates alone from its seed


SMOKE = [
    *GENRES,
    "rain",
    "wind",
    "ocean",
    "fire",
    "birds",
    "city",
    "stream",
    "crickets",
    "thunder",
    "vinyl crackle",
    "kick and hats in F# phrygian",
    "lydian bells 200 bpm",
    "ambient with drums",
    "🎵 ünïcödé",
    "no drums",
]


@pytest.mark.parametrize("index", range(len(SMOKE)))
def test_every_genre_and_scene_renders(runner, registry, index):
    prompt = SMOKE[index]
    request = validate_request(
        {"prompt": prompt, "duration": 1.5, "seed": index, "temperature": 2.0 * (index % 2)}, registry
    )
    audio = runner.generate(request, JobContext())[0].audio
    assert audio.shape == (2, round(1.5 * SR)) and np.isfinite(audio).all()
    assert rms_db(audio) > -40.0, prompt
    assert true_peak_db(audio) <= -1.0, prompt


# ---------------------------------------------------------------- takes are different pieces


def bar_tempo(audio: np.ndarray, bpm: float) -> float:
    """The tempo whose bar (4 beats) best repeats in the onset envelope, searched within ±10 % of ``bpm``.

    Unlike :func:`measure_tempo` it cannot land on double or half time (a backbeat on every eighth reads as both),
    yet a take at a wrong tempo still fails: its bar peak is elsewhere, or at the edge of the window.
    """
    y = librosa.resample(audio.mean(axis=0), orig_sr=SR, target_sr=22050)
    fps = 22050 / 128
    env = librosa.onset.onset_strength(y=y, sr=22050, hop_length=128)
    env = env - env.mean()
    ac = np.correlate(env, env, "full")[len(env) - 1 :]
    lag = 4 * 60 * fps / bpm
    lo, hi = int(lag * 0.9), int(np.ceil(lag * 1.1))
    k = lo + int(np.argmax(ac[lo : hi + 1]))
    assert lo < k < hi and ac[k] > 0.3 * ac[0], "no bar-long periodicity near the asked tempo"
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    return 4 * 60 * fps / (k + 0.5 * (a - c) / (a - 2 * b + c))


def take_features(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chroma over time less the take's mean chroma — its progression, not its key profile — , onset envelope)."""
    y = librosa.resample(audio.mean(axis=0), orig_sr=SR, target_sr=22050)
    chroma = librosa.feature.chroma_cqt(y=y, sr=22050, fmin=130.81, n_octaves=5, hop_length=2048)
    onsets = librosa.onset.onset_strength(y=y, sr=22050, hop_length=512)
    return chroma - chroma.mean(axis=1, keepdims=True), onsets


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


VARIED = [
    ("sunny reggae with organ and bass in G major, 76 bpm", "G major", 76),
    ("lofi hip hop with piano in D minor, 85 bpm", "D minor", 85),
    ("house in F minor, 124 bpm", "F minor", 124),
    ("hip hop in C minor, 90 bpm", "C minor", 90),
    ("techno in A minor, 128 bpm", "A minor", 128),
    ("pop in C major, 110 bpm", "C major", 110),
    ("rock in E major, 120 bpm", "E major", 120),
    ("funk in D dorian, 105 bpm", "D dorian", 105),
    ("funky groove in A dorian, 100 bpm", "A dorian", 100),
    ("jazz in Bb major, 120 bpm", "Bb major", 120),
    ("smooth jazz in C minor, 100 bpm", "C minor", 100),
    ("trap in G minor, 140 bpm", "G minor", 140),
    ("trance in A minor, 138 bpm", "A minor", 138),
    ("drum and bass in F minor, 174 bpm", "F minor", 174),
    ("dubstep in E minor, 140 bpm", "E minor", 140),
    ("cinematic in D minor, 90 bpm", "D minor", 90),
    ("chiptune in C major, 150 bpm", "C major", 150),
    ("synthwave in A minor, 100 bpm", "A minor", 100),
    ("classical in G major, 80 bpm", "G major", 80),
]


def test_the_variation_test_covers_every_genre_with_a_beat():
    """Ambient alone is left out: it has no beat to measure a bar's tempo by, and its onsets are only its chord
    changes, which every take places on the same bars (the chords themselves differ: see its progressions)."""
    covered = {parse_prompt(prompt).genre for prompt, _, _ in VARIED}
    assert covered == set(GENRES) - {"ambient"}


@pytest.mark.parametrize(("prompt", "key", "bpm"), VARIED)
def test_takes_are_different_pieces_in_the_same_tempo_and_key(render, prompt, key, bpm):
    """Three takes (seeds 4, 5, 6): each obeys tempo and key; any two differ sample by sample, in their progression
    (chroma over time, the shared key profile removed) and in their rhythm (onset envelopes). Four-on-the-floor and
    straight-eighth genres meet the same rhythm bound as the rest: their takes differ in breaks (the beat, or the kick
    alone, dropping out, or half-time bars, placed by the seed), intro length, guitar and arpeggio rhythms."""
    clips = render(prompt, 16.0, seed=4, takes=3)
    features = []
    for clip in clips:
        assert clip.metadata["brief"]["key"] == key
        assert bar_tempo(clip.audio, bpm) == pytest.approx(bpm, abs=1.5)
        assert_in_key(clip.audio, key)
        features.append((clip.audio, *take_features(clip.audio)))
    for (a, chroma_a, onsets_a), (b, chroma_b, onsets_b) in itertools.combinations(features, 2):
        assert abs(correlation(a, b)) <= 0.5
        assert correlation(chroma_a, chroma_b) <= 0.8
        assert correlation(onsets_a, onsets_b) <= 0.8


def test_scene_takes_differ_sample_by_sample(render):
    clips = render("gentle rain on a window", 8.0, seed=1, takes=3)
    for a, b in itertools.combinations(clips, 2):
        assert abs(correlation(a.audio, b.audio)) <= 0.5


def test_a_take_is_its_seed_and_says_which_synth_made_it(render, runner, registry):
    take = render("sunny reggae with organ and bass in G major, 76 bpm", 16.0, seed=1, takes=3)[1]
    alone = runner.generate(
        validate_request(
            {"prompt": "sunny reggae with organ and bass in G major, 76 bpm", "duration": 16.0, "seed": 2}, registry
        ),
        JobContext(),
    )[0]
    assert np.array_equal(take.audio, alone.audio)
    assert take.metadata["runner_version"] == SynthRunner.version == "6"


def test_voices_kept_as_one_take_ignore_their_variation():
    """The sound cache keeps one take of a voice that ignores ``var`` (and four of one that reads it): it must really
    sound the same whatever ``var`` is, or reuse would change the take (and one that does is worth listing)."""
    from runners.synth import instruments

    kinds = {
        "bass": ("808", "reese", "wobble", "electric", "upright", "triangle", "cello", "synth", "sub"),
        "guitar": ("", "distorted"),
        "lead": ("saw", "square"),
    }
    for voice in instruments.VOICES.keys() - instruments.SCENE_VOICES:
        for kind in kinds.get(voice, ("",)):
            takes = [
                instruments._voice(instruments.Note(0, voice, 55.0, SR // 4, 1.0, var=v, kind=kind)) for v in range(4)
            ]
            same = all(np.array_equal(takes[0], take) for take in takes[1:])
            assert same == instruments.takes_alike(voice, kind), (voice, kind)


def test_the_sound_cache_keys_a_pad_by_the_brightness_it_hears():
    """A pad's brightness (``mod``) only picks its saw layer's low-passed wavetables, in half octaves: pads whose
    brightness picks the same tables are the same samples (so the cache serves one take's chord to another take),
    and pads that pick other tables are not."""
    from runners.synth import instruments

    brightness = np.linspace(0.0, 1.0, 21)
    for pitch in (53.0, 60.0, 67.0, 74.0):  # the pads' range (arrange voices them from 53 up)

        def pad(mod: float, pitch: float = pitch) -> np.ndarray:
            return instruments._voice(instruments.Note(0, "pad", pitch, SR // 2, 1.0, var=3, mod=mod))

        keys = [instruments._heard_mod("pad", pitch, float(mod)) for mod in brightness]
        heard = {}
        for mod, key in zip(brightness, keys, strict=True):
            audio = pad(float(mod))
            if key in heard:
                assert np.array_equal(audio, heard[key]), (pitch, mod)
            heard[key] = audio
        assert len(heard) >= 2, pitch  # the brightness is heard
        for a, b in itertools.combinations(heard.values(), 2):
            assert not np.array_equal(a, b)


# ---------------------------------------------------------------- numpy-only filters


@pytest.mark.parametrize(
    ("order", "cutoff", "kind"),
    [
        (2, 28.0, "highpass"),
        (2, 5500.0, "lowpass"),
        (2, (80.0, 1200.0), "bandpass"),
        (4, 180.0, "lowpass"),
        (2, 14.0, "lowpass"),
    ],
)
@pytest.mark.parametrize("single", [False, True])
def test_filters_match_scipy_chunk_by_chunk(order, cutoff, kind, single):
    """In double precision to 1e-9; in single precision (the take's bus) to float32's few 1e-7."""
    from runners.synth import dsp

    x = np.random.default_rng(0).standard_normal((2, 3 * SR))
    reference = signal.sosfilt(signal.butter(order, cutoff, btype=kind, fs=SR, output="sos"), x, axis=-1)
    chunked = dsp.Filter(dsp.butter(order, cutoff, kind), single=single)
    source = x.astype(np.float32) if single else x
    ours = np.concatenate([chunked(source[:, a:b]) for a, b in ((0, 50000), (50000, 50001), (50001, 3 * SR))], axis=1)
    assert ours.dtype == (np.float32 if single else np.float64)
    assert np.max(np.abs(ours - reference)) < (5e-6 if single else 1e-9) * np.max(np.abs(reference))


@pytest.mark.parametrize("single", [False, True])
def test_a_one_pole_on_sparse_clicks_matches_scipy(single):
    """Scene beds ring their clicks through one-pole filters (real poles: run without complex numbers)."""
    from runners.synth import dsp

    clicks = np.zeros((2, 2 * SR))
    clicks[:, np.random.default_rng(3).integers(0, 2 * SR, 300)] = 1.0
    a = np.exp(-1.0 / (0.003 * SR))
    reference = signal.lfilter([1 - a], [1, -a], clicks, axis=-1)
    chunked = dsp.Filter(dsp.one_pole(0.003), single=single)
    source = clicks.astype(np.float32) if single else clicks
    ours = np.concatenate([chunked(source[:, s : s + 30000]) for s in range(0, 2 * SR, 30000)], axis=1)
    assert np.max(np.abs(ours - reference)) < (5e-6 if single else 1e-9) * np.max(np.abs(reference))


def test_true_peak_oversampler_matches_resample_poly():
    from runners.synth import dsp

    x = np.random.default_rng(1).standard_normal((2, 5000))
    reference = np.abs(signal.resample_poly(x, 4, 1, axis=-1))
    ours = dsp.oversampled_abs(np.pad(x, ((0, 0), (dsp.CONTEXT, dsp.CONTEXT))))
    assert np.allclose(ours, reference, atol=1e-12)
    single = dsp.oversampled_abs(np.pad(x.astype(np.float32), ((0, 0), (dsp.CONTEXT, dsp.CONTEXT))))  # the limiter's
    assert single.dtype == np.float32 and np.allclose(single, reference, atol=5e-6)
    assert np.max(reference) <= dsp.overshoot() * np.max(np.abs(x))  # the bound the limiter skips quiet blocks by


def test_the_synth_imports_no_scipy():
    """scipy.signal alone took ~0.7 s to import: most of the synth's start-up. A take must not need it."""
    import subprocess
    import sys

    code = (
        "import sys; from runners.contract import JobContext; from runners.registry import default_registry; "
        "from runners.request import validate_request; from runners.synth.runner import SynthRunner; "
        "registry = default_registry(); runner = SynthRunner(registry.get('synth')); runner.load_model(JobContext()); "
        "runner.generate(validate_request({'prompt': 'lofi with rain and thunder', 'duration': 2, 'seed': 1}, "
        "registry), JobContext()); print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root)
    assert out.stdout.strip() == "[]"


FILTER_DESIGNS = [(2, 28.0, "highpass"), (2, (350.0, 11000.0), "bandpass"), (4, 180.0, "lowpass"), (2, 14.0, "lowpass")]


@pytest.mark.parametrize(("order", "cutoff", "kind"), FILTER_DESIGNS)
def test_filter_response_and_energy_match_scipy(order, cutoff, kind):
    """The frequency response shapes the noise banks; the energy normalises the scene beds."""
    from runners.synth import dsp

    iir = dsp.butter(order, cutoff, kind)
    sos = signal.butter(order, cutoff, btype=kind, fs=SR, output="sos")
    n_fft = 1 << 14
    _, reference = signal.sosfreqz(sos, worN=np.arange(n_fft // 2 + 1) * SR / n_fft, fs=SR)
    assert np.max(np.abs(iir.response(n_fft) - reference)) < 1e-9 * np.max(np.abs(reference))
    impulse = np.zeros(1 << 17)
    impulse[0] = 1.0
    assert iir.energy() == pytest.approx(np.sum(signal.sosfilt(sos, impulse) ** 2), rel=1e-9)


def test_a_filtered_noise_bank_is_the_filter_run_on_over_the_looping_white_bank():
    """A drum family's bank is the filter's steady state over the white bank played in a loop: no seam where a slice
    wraps around."""
    from runners.synth import dsp, instruments

    white = instruments.noise_bank("white").astype(np.float64)
    for kind, band in (("hat", (2, 7000.0, "highpass")), ("low", (2, 400.0, "lowpass"))):
        steady = dsp.lfilter(dsp.butter(*band), np.tile(white, 3))[2 * white.size :]  # two loops in: settled
        steady /= np.sqrt(np.mean(steady**2))
        assert np.max(np.abs(instruments.noise_bank(kind) - steady)) < 1e-5


@pytest.mark.parametrize(
    "text",
    [
        " rain ",
        " raindrops ",
        " heavy_rain ",
        " rain, thunder ",
        "rain",
        " drum and bass ",
        " drums2 ",
        " pianoé ",
        " élan piano ",
        " dark-techno ",
        " ",
        "",
        " very fast very slow ",
        " birdsong birds ",
    ],
)
def test_whole_word_lookup_agrees_with_the_phrase_pattern(text):
    from runners.synth import prompt

    tables = [*prompt.SCENE_WORDS.values(), *prompt.INSTRUMENT_WORDS.values(), prompt.FAST_WORDS, prompt.MINOR_WORDS]
    for words in tables:
        assert prompt._has(text, words) == (prompt._phrase_pattern(words).search(text) is not None), words


@pytest.mark.parametrize("room", [0.2, 0.9])
@pytest.mark.parametrize("single", [False, True])
def test_reverb_chunk_by_chunk_is_the_whole_convolution(room, single):
    """Partitioned convolution, chunk by chunk (the last one short), gives the mono input's convolution with each of
    the IR's two channels over the whole input: to 1e-9 in double precision, to float32's few 1e-7 in single (the
    take's bus)."""
    from runners.synth import mix

    x = np.random.default_rng(2).standard_normal(5 * SR + 1234)
    reverb = mix.Reverb(room, SR, single=single)
    source = x.astype(np.float32) if single else x
    ours = np.concatenate([reverb(source[a : a + SR]) for a in range(0, x.size, SR)], axis=1)
    assert ours.shape == (2, x.size)
    assert ours.dtype == (np.float32 if single else np.float64)
    reference = signal.fftconvolve(x[None, :], mix.impulse_response(room), axes=-1)[:, : x.size]
    assert np.max(np.abs(ours - reference)) < (5e-6 if single else 1e-9) * np.max(np.abs(reference))


def test_the_reverb_send_is_taken_before_the_pan():
    """One piano note alone, hard left and centred: the reverb returns in both channels either way (the send is
    mono, before the pan), and the two takes differ by the dry note alone — the hard-left take's extra left is
    (√2 − 1) times what the centred take has on the right beyond it, which holds only if the wet parts are equal."""
    from runners.synth.instruments import Note, render
    from runners.synth.render import TakeRenderer

    def raw_take(pan: float) -> np.ndarray:
        renderer = TakeRenderer(parse_prompt("solo piano ballad, 70 bpm"), 1, 1.0, 3 * SR)
        renderer.notes = [Note(1000, "piano", 60.0, SR // 2, 0.8, pan=pan, send=0.4)]
        return np.concatenate(list(renderer._raw(None)), axis=1).astype(np.float64)

    assert render(Note(0, "piano", 60.0, SR // 2, 0.8))[0].ndim == 1  # a mono voice: the pan places it
    left, centre = raw_take(-1.0), raw_take(0.0)
    peak = np.max(np.abs(centre))
    assert np.sqrt(np.mean(left[1] ** 2)) > 1e-3 * peak  # the reverb of a hard-left note returns on the right too
    dry_beyond = centre[1] - left[1]  # the centred note's dry right (its wet is the same in both takes)
    assert np.max(np.abs(dry_beyond)) > 0.1 * peak
    assert np.allclose(left[0] - centre[0], (np.sqrt(2.0) - 1.0) * dry_beyond, atol=1e-5 * peak)
