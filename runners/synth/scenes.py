"""Sound scenes: rain, wind, ocean, fire, city, streams... as filtered noise, rendered chunk by chunk.

A scene is a continuous bed (layers of shaped noise, gains that are functions of absolute time) plus occasional events
(bird calls, thunder, passing cars, crickets) planned up front like notes. A layer's noise is read, at the take's own
offsets, from two looping banks per filter, of coprime lengths (6 and 4 s): filtered once per process as a product of
spectra, and summed so the pattern never repeats within hours. Clicks and crackle draw from one generator in chunk
order. Either way a take renders the same however it is consumed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from runners.synth import dsp
from runners.synth.instruments import NOISE_LEN, SR, Note, noise_bank, seconds

BED_SCENES = ("rain", "wind", "ocean", "fire", "city", "stream", "birds", "vinyl", "thunder")


@cache
def _band(kind: str, lo: float, hi: float, order: int = 2) -> dsp.IIR:
    """A filter normalised so white noise in gives unit-RMS noise out (beds are mixed by ear, not by math)."""
    cutoff = {"bandpass": (lo, hi), "lowpass": hi}.get(kind, lo)
    iir = dsp.butter(order, cutoff, kind)
    return iir.scaled(1.0 / np.sqrt(iir.energy()))


def _swell(start: int, n: int, rates: tuple[float, ...], phases: np.ndarray) -> np.ndarray:
    """Slow movement (gusts, waves) as a sum of slow sines of absolute time: the same in any chunking. In float32, from
    the cycles done before ``start`` (kept in double precision, so an hour in is as exact as the first second)."""
    within = seconds(n)
    out = np.zeros((2, n), dtype=np.float32)
    for i, rate in enumerate(rates):
        done = (rate * start / SR) % 1.0  # cycles before this chunk, all but the fraction dropped
        angle = np.float32(2 * np.pi * rate) * within + (2 * np.pi * done + phases[i]).astype(np.float32)[:, None]
        out += np.sin(angle, out=angle)
    out *= np.float32(1 / len(rates))
    return out


BANDS = {  # the beds' noise filters: kind, low and high edge in Hz
    "rain": ("bandpass", 350.0, 11000.0),
    "drops": ("highpass", 1500.0, 0.0),
    "wind_lo": ("bandpass", 120.0, 600.0),
    "wind_hi": ("bandpass", 500.0, 1800.0),
    "ocean": ("bandpass", 80.0, 1200.0),
    "foam": ("bandpass", 1800.0, 9000.0),
    "fire": ("lowpass", 0.0, 250.0),
    "fire_hiss": ("bandpass", 2000.0, 7000.0),
    "city": ("lowpass", 0.0, 300.0),
    "city_mid": ("bandpass", 300.0, 2000.0),
    "stream": ("bandpass", 400.0, 3500.0),
    "stream_hi": ("bandpass", 3000.0, 9000.0),
    "leaves": ("bandpass", 1500.0, 6000.0),
    "hiss": ("bandpass", 3000.0, 12000.0),
    "bubbles": ("lowpass", 0.0, 14.0),
    "rumble": ("lowpass", 0.0, 120.0),
}
DECAYS = {"drops": 0.003, "crackle": 0.0006, "pops": 0.004, "vinyl": 0.0004}  # impulse ring times in seconds


@cache
def _ring(name: str) -> np.ndarray:
    """A click's ring: the one-pole decay of ``DECAYS[name]`` as float32 taps, cut where it falls under 1e-7 (float32's
    own resolution, so the cut is inaudible)."""
    a = np.exp(-1.0 / (DECAYS[name] * SR))
    length = int(np.ceil(np.log(1e-7) / np.log(a)))
    return ((1.0 - a) * a ** np.arange(length)).astype(np.float32)


LAYERS = {name: i for i, name in enumerate(BANDS)}
BANK_LENGTHS = (1 << 18, 3**11)  # coprime, about 6 and 4 s: their sum repeats after some 2 hours


@cache
def _bank(name: str, length: int) -> np.ndarray:
    """``length`` samples of unit-RMS noise through the bed filter ``name``, looping without a seam: white noise's
    spectrum (complex Gaussian: drawn as such, one FFT saved) times the filter's response."""
    rng = np.random.default_rng([0xBED, LAYERS[name], length])
    real, imaginary = rng.standard_normal((2, length // 2 + 1))
    white = real + 1j * imaginary
    out = np.fft.irfft(white * _band(*BANDS[name]).response(length), length)
    return (out / np.sqrt(np.mean(out**2))).astype(np.float32)


def _loop(bank: np.ndarray, at: int, n: int) -> np.ndarray:
    """``n`` samples of a looping bank from sample ``at`` on."""
    at %= bank.size
    if at + n <= bank.size:
        return bank[at : at + n]
    return np.concatenate([bank[at:], bank[: at + n - bank.size]])


class _Filters(dict[str, dsp.Filter]):
    """A take's stateful filters by name, each made on first use: a take builds only its own scenes' filters."""

    def __init__(self, make: Callable[[str], dsp.Filter]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, name: str) -> dsp.Filter:
        made = self[name] = self.make(name)
        return made


class SceneBed:
    """The continuous part of the scenes of one take."""

    def __init__(self, scenes: tuple[str, ...], intensity: float, seed: int, level: float) -> None:
        self.scenes = tuple(s for s in scenes if s in BED_SCENES)
        self.k = intensity
        self.level = level
        self.rng = np.random.default_rng([seed, 0x5CE4E])
        self.phases = self.rng.uniform(0, 2 * np.pi, (8, 2))
        self.offsets = self.rng.integers(0, BANK_LENGTHS[1], (len(BANDS), 2, 2))  # layer, channel, bank
        # made when its scene first sounds
        self.d = _Filters(lambda name: dsp.Filter(dsp.one_pole(DECAYS[name]), single=True))
        self.spill: dict[str, np.ndarray] = {}  # rings of sparse clicks reaching into the next chunk

    def _layer(self, name: str, start: int, n: int) -> np.ndarray:
        """Stereo noise through the filter ``name`` for samples ``start`` .. ``start + n``, partly correlated (0.4)
        so a bed is wide but still solid in mono: a function of absolute time."""
        offsets = self.offsets[LAYERS[name]]
        out = np.empty((2, n), dtype=np.float32)
        for channel in range(2):
            a, b = (_loop(_bank(name, length), start + offsets[channel, i], n) for i, length in enumerate(BANK_LENGTHS))
            np.add(a, b, out=out[channel])
        out[1] *= np.float32(0.9165)
        out[1] += np.float32(0.4) * out[0]
        out *= np.float32(np.sqrt(0.5))
        return out

    def _crackle(self, name: str, n: int, rate: float) -> np.ndarray:
        """Sparse clicks (``rate`` per second per channel, random strengths), each ringing with the decay ``name``
        through its own stretch of the white noise bank: the work is the clicks' rings, not a filter and a noise draw
        over every sample (at a few clicks a second, most of a chunk is silence)."""
        ring = _ring(name)
        taps = np.arange(ring.size)
        out = np.zeros((2, n + ring.size), dtype=np.float64)
        if name in self.spill:
            out[:, : ring.size] = self.spill[name]
        white = noise_bank("white")
        for channel in range(2):
            count = int(self.rng.binomial(n, min(1.0, rate / SR)))
            at = self.rng.integers(0, n, count)
            strength = self.rng.exponential(1.0, count)
            noise = white[self.rng.integers(0, NOISE_LEN - ring.size, count)[:, None] + taps]
            rings = (strength[:, None] * ring) * noise  # (count, ring)
            out[channel] += np.bincount((at[:, None] + taps).ravel(), rings.ravel(), minlength=out.shape[1])
        self.spill[name] = out[:, n:]
        return out[:, :n].astype(np.float32)

    def _impulses(self, n: int, rate: float) -> np.ndarray:
        """Sparse random clicks (``rate`` per second per channel) with random strengths: a draw per click, not per
        sample."""
        out = np.zeros((2, n), dtype=np.float32)
        for channel in range(2):
            count = int(self.rng.binomial(n, min(1.0, rate / SR)))
            out[channel, self.rng.integers(0, n, count)] = self.rng.exponential(1.0, count)
        return out

    def render(self, start: int, n: int) -> np.ndarray:
        out = np.zeros((2, n), dtype=np.float32)
        if not self.scenes:
            return out
        k = float(self.k)
        for scene in self.scenes:
            if scene == "rain":
                out += (0.35 + 0.25 * k) * self._layer("rain", start, n)
                drops = self.d["drops"](self._impulses(n, 300 + 900 * k))
                out += 1.6 * k * drops * self._layer("drops", start, n) * 4.0
            elif scene == "wind":
                gust = 0.55 + 0.45 * _swell(start, n, (0.05, 0.13, 0.31), self.phases)
                lo = self._layer("wind_lo", start, n)
                hi = self._layer("wind_hi", start, n)
                out += (0.3 + 0.3 * k) * gust * (lo + 0.6 * gust * hi)
            elif scene == "ocean":
                t = (start + np.arange(n)) / SR
                phase = np.mod(t / 9.0 + self.phases[3][:, None] / (2 * np.pi), 1.0)
                wave = np.where(phase < 0.25, phase / 0.25, np.exp(-(phase - 0.25) * 4.0)).astype(np.float32)
                out += (0.35 + 0.35 * k) * (0.25 + 0.75 * wave) * self._layer("ocean", start, n)
                out += (0.2 + 0.2 * k) * wave**2 * self._layer("foam", start, n)
            elif scene == "fire":
                out += 0.35 * self._layer("fire", start, n)
                out += (
                    0.05
                    * (0.7 + 0.3 * _swell(start, n, (0.4, 1.1), self.phases[2:]))
                    * self._layer("fire_hiss", start, n)
                )
                crackle = self._crackle("crackle", n, 20 + 40 * k)
                pops = self._crackle("pops", n, 2 + 3 * k)
                out += 12.0 * crackle + 4.0 * pops
            elif scene == "city":
                hum = 0.8 + 0.2 * _swell(start, n, (0.03, 0.07), self.phases[4:])
                out += 0.35 * hum * self._layer("city", start, n) + 0.12 * hum * self._layer("city_mid", start, n)
            elif scene == "stream":
                bubbling = np.abs(self._layer("bubbles", start, n)) * 9.0
                out += (0.25 + 0.2 * k) * (0.4 + bubbling) * self._layer("stream", start, n)
                out += 0.08 * self._layer("stream_hi", start, n)
            elif scene == "birds":
                leaves = 0.6 + 0.4 * _swell(start, n, (0.09, 0.21), self.phases[6:])
                out += 0.03 * leaves * self._layer("leaves", start, n)
            elif scene == "thunder":  # the storm's distant rumble between the claps
                roll = 0.5 + 0.5 * _swell(start, n, (0.04, 0.11, 0.23), self.phases[5:])
                out += 0.25 * roll**2 * self._layer("rumble", start, n)
            elif scene == "vinyl":
                clicks = self._crackle("vinyl", n, 6.0)
                out += 0.012 * self._layer("hiss", start, n) + 2.5 * clicks
        out *= np.float32(self.level)
        return out


def scene_events(scenes: tuple[str, ...], intensity: float, seed: int, n_samples: int) -> list[Note]:
    """Occasional sounds of the scenes (bird calls, thunder, cars, crickets) for a whole take."""
    rng = np.random.default_rng([seed, 0xE7E])
    notes: list[Note] = []
    seconds = n_samples / SR

    def poisson(rate: float, first: float = 0.0) -> list[int]:
        times: list[int] = []
        t = first
        while True:
            t += rng.exponential(1.0 / rate)
            if t >= seconds:
                return times
            times.append(int(t * SR))

    if "birds" in scenes:
        for start in poisson(0.9):
            notes.append(
                Note(
                    start,
                    "chirp",
                    0.0,
                    1,
                    float(rng.uniform(0.3, 1.0)),
                    pan=float(rng.uniform(-0.8, 0.8)),
                    send=0.35,
                    var=int(rng.integers(1 << 31)),
                )
            )
    if "crickets" in scenes:
        for start in poisson(3.0):
            notes.append(
                Note(
                    start,
                    "cricket",
                    0.0,
                    1,
                    float(rng.uniform(0.2, 0.6)),
                    pan=float(rng.uniform(-1, 1)),
                    send=0.2,
                    var=int(rng.integers(1 << 31)),
                )
            )
    if "thunder" in scenes:
        first = float(rng.uniform(0.1, 0.3)) * min(seconds, 10.0)  # the first clap comes early, even in short takes
        for start in [int(first * SR), *poisson(1 / 12.0, first=first)]:
            length = int(rng.uniform(3.0, 6.0) * SR)
            notes.append(
                Note(
                    start,
                    "thunder",
                    0.0,
                    length,
                    float(rng.uniform(0.5, 1.0)) * (0.6 + 0.4 * intensity),
                    pan=float(rng.uniform(-0.5, 0.5)),
                    send=0.4,
                    var=int(rng.integers(1 << 31)),
                )
            )
    if "city" in scenes:
        for start in poisson(0.25):
            length = int(rng.uniform(3.0, 7.0) * SR)
            notes.append(
                Note(
                    start, "car", 0.0, length, float(rng.uniform(0.15, 0.5)), send=0.15, var=int(rng.integers(1 << 30))
                )
            )
    return notes
