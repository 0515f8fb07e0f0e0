"""Sound scenes: rain, wind, ocean, fire, city, streams... as filtered noise, rendered chunk by chunk.

A scene is a continuous bed (noise through filters whose state is carried from chunk to chunk, gains that are
functions of absolute time) plus occasional events (bird calls, thunder, passing cars, crickets) planned up front like
notes. Beds draw their noise from one generator in chunk order, so a take renders the same however it is consumed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from runners.synth import dsp
from runners.synth.instruments import SR, Note

BED_SCENES = ("rain", "wind", "ocean", "fire", "city", "stream", "birds", "vinyl", "thunder")


@cache
def _band(kind: str, lo: float, hi: float, order: int = 2) -> dsp.IIR:
    """A filter normalised so white noise in gives unit-RMS noise out (beds are mixed by ear, not by math)."""
    cutoff = {"bandpass": (lo, hi), "lowpass": hi}.get(kind, lo)
    iir = dsp.butter(order, cutoff, kind)
    return iir.scaled(1.0 / np.sqrt(iir.energy()))


def _swell(t: np.ndarray, rates: tuple[float, ...], phases: np.ndarray) -> np.ndarray:
    """Slow movement (gusts, waves) as a sum of slow sines of absolute time: the same in any chunking."""
    out = np.zeros((2, t.size))
    for i, rate in enumerate(rates):
        out += np.sin(2 * np.pi * rate * t[None, :] + phases[i][:, None])
    return out / len(rates)


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
        self.f = _Filters(lambda name: dsp.Filter(_band(*BANDS[name])))  # each made when its scene first sounds
        self.d = _Filters(lambda name: dsp.Filter(dsp.one_pole(DECAYS[name])))

    def _noise(self, n: int) -> np.ndarray:
        """Stereo noise, partly correlated (0.4) so a bed is wide but still solid in mono."""
        x = self.rng.standard_normal((2, n), dtype=np.float32)
        x[1] = 0.4 * x[0] + 0.9165 * x[1]
        return x

    def _impulses(self, n: int, rate: float) -> np.ndarray:
        """Sparse random clicks (``rate`` per second per channel) with random strengths."""
        hits = self.rng.random((2, n)) < rate / SR
        return hits * self.rng.exponential(1.0, (2, n))

    def render(self, start: int, n: int) -> np.ndarray:
        out = np.zeros((2, n))
        if not self.scenes:
            return out
        t = (start + np.arange(n)) / SR
        k = self.k
        for scene in self.scenes:
            if scene == "rain":
                out += (0.35 + 0.25 * k) * self.f["rain"](self._noise(n))
                drops = self.d["drops"](self._impulses(n, 300 + 900 * k))
                out += 1.6 * k * self.f["drops"](drops * self._noise(n)) * 4.0
            elif scene == "wind":
                gust = 0.55 + 0.45 * _swell(t, (0.05, 0.13, 0.31), self.phases)
                lo = self.f["wind_lo"](self._noise(n))
                hi = self.f["wind_hi"](self._noise(n))
                out += (0.3 + 0.3 * k) * gust * (lo + 0.6 * gust * hi)
            elif scene == "ocean":
                phase = np.mod(t / 9.0 + self.phases[3][:, None] / (2 * np.pi), 1.0)
                wave = np.where(phase < 0.25, phase / 0.25, np.exp(-(phase - 0.25) * 4.0))
                out += (0.35 + 0.35 * k) * (0.25 + 0.75 * wave) * self.f["ocean"](self._noise(n))
                out += (0.2 + 0.2 * k) * wave**2 * self.f["foam"](self._noise(n))
            elif scene == "fire":
                out += 0.35 * self.f["fire"](self._noise(n))
                out += 0.05 * (0.7 + 0.3 * _swell(t, (0.4, 1.1), self.phases[2:])) * self.f["fire_hiss"](self._noise(n))
                crackle = self.d["crackle"](self._impulses(n, 20 + 40 * k)) * self._noise(n)
                pops = self.d["pops"](self._impulses(n, 2 + 3 * k)) * self._noise(n)
                out += 12.0 * crackle + 4.0 * pops
            elif scene == "city":
                hum = 0.8 + 0.2 * _swell(t, (0.03, 0.07), self.phases[4:])
                out += 0.35 * hum * self.f["city"](self._noise(n)) + 0.12 * hum * self.f["city_mid"](self._noise(n))
            elif scene == "stream":
                bubbling = np.abs(self.f["bubbles"](self._noise(n))) * 9.0
                out += (0.25 + 0.2 * k) * (0.4 + bubbling) * self.f["stream"](self._noise(n))
                out += 0.08 * self.f["stream_hi"](self._noise(n))
            elif scene == "birds":
                leaves = 0.6 + 0.4 * _swell(t, (0.09, 0.21), self.phases[6:])
                out += 0.03 * leaves * self.f["leaves"](self._noise(n))
            elif scene == "thunder":  # the storm's distant rumble between the claps
                roll = 0.5 + 0.5 * _swell(t, (0.04, 0.11, 0.23), self.phases[5:])
                out += 0.25 * roll**2 * self.f["rumble"](self._noise(n))
            elif scene == "vinyl":
                clicks = self.d["vinyl"](self._impulses(n, 6.0)) * self._noise(n)
                out += 0.012 * self.f["hiss"](self._noise(n)) + 2.5 * clicks
        return out * self.level


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
