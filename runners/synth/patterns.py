"""The arranger: from a :class:`Brief`, a seed and a temperature, every note of a take, planned up front.

Planning the whole take before rendering anything is what makes streaming exact: the renderer only has to play the
plan chunk by chunk. Everything random comes from one ``numpy.random.Generator`` seeded with the take's seed, in a
fixed order, so a seed always gives the same notes. Temperature scales how often the arranger departs from the plain
groove: 0 repeats the take's pattern and a simple tune verbatim, 2 adds ghost notes, fills, leaps and busy rhythms.

What the prompt fixes (tempo, key, genre, the band it names) every seed keeps; everything else is the seed's to choose,
so takes are different pieces rather than copies: the chord progression, the genre's groove variant and drum kit, the
bass line and comping style, chord voicings and sounds, an extra part when the prompt names no instrument, the melody,
a power-chord guitar's and an arpeggio's rhythm, and (above temperature 0) the arrangement — an intro, breaks closing
four-bar phrases (drop-outs, kick-less or half-time bars), a late entry for the tune.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runners.synth.genres import GENRES, VELOCITY, Genre
from runners.synth.instruments import SR, Note, kick_pitch
from runners.synth.prompt import TONAL, Brief

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}

# Chord roots as scale degrees (0 = tonic). The first of each family is the plain choice (temperature 0).
PROGRESSIONS = {
    "minor": ((0, 5, 0, 4), (0, 5, 2, 6), (0, 5, 3, 4), (0, 6, 5, 6), (0, 3, 5, 4)),
    "minor_loop": ((0, 5, 0, 4), (0, 3, 0, 4), (0, 5, 3, 4), (0, 6, 5, 4), (0, 3, 6, 2)),
    "lofi": ((0, 5, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0), (0, 5, 3, 4), (0, 3, 6, 2)),
    "major": ((0, 5, 0, 4), (0, 3, 0, 4), (0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4)),
    "rock": ((0, 3, 0, 4), (0, 3, 4, 3), (0, 4, 5, 3), (0, 6, 3, 0)),
    "jazz": ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (0, 3, 1, 4)),
    "drone": ((0, 0), (0, 5), (0, 3), (0, 6), (0, 5, 3, 0)),
    "ambient": ((0, 3), (0, 5, 3, 4), (0, 2, 3, 0), (0, 4, 5, 3), (0, 1, 0, 5)),
    "cinematic": ((0, 5, 2, 6), (0, 5, 3, 4), (0, 3, 5, 4), (0, 6, 5, 4)),
    "funk": ((0, 3), (0, 0, 3, 0), (0, 0, 0, 4), (0, 3, 0, 4), (0, 0, 6, 0), (0, 0, 3, 3)),  # vamps on the tonic
}

# What the chord instrument plays in one bar: (step, length in steps).
COMP_RHYTHMS: dict[str, tuple[tuple[float, float], ...]] = {
    "sustain": ((0, 16),),
    "lofi": ((0, 9), (10, 6)),
    "half": ((0, 8), (8, 8)),
    "stab": ((2, 1.2), (6, 1.2), (10, 1.2), (14, 1.2)),
    "power": tuple((s, 1.8) for s in range(0, 16, 2)),
    "charleston": ((0, 3), (6, 4)),
    "funk": ((0, 1), (3, 1), (6, 1), (8, 1), (11, 1), (14, 1)),
    "pulse": tuple((s, 1.6) for s in range(0, 16, 2)),
    "skank": ((2, 1), (6, 1), (10, 1), (14, 1)),
    "backbeat": ((4, 1.5), (12, 1.5)),  # the one-drop chop on two and four
    "double": tuple((s, 0.7) for s in (2, 3, 6, 7, 10, 11, 14, 15)),
    "bubble": tuple((s, 0.8) for s in (1, 3, 4, 5, 7, 9, 11, 12, 13, 15)),  # reggae organ shuffle
}
# Rhythms of a distorted guitar's power chords, one per take: driving eighths, 3-3-2 pushes, chords left to ring,
# a gallop.
POWER_RHYTHMS: tuple[tuple[tuple[float, float], ...], ...] = (
    COMP_RHYTHMS["power"],
    ((0, 2.8), (3, 2.8), (6, 1.8), (8, 2.8), (11, 2.8), (14, 1.8)),
    ((0, 7.5), (8, 3.5), (12, 3.5)),
    tuple((s + d, 0.9 if d < 2 else 1.8) for s in range(0, 16, 4) for d in (0, 1, 2)),
)
ORGANS = ("organ", "organ_mellow", "organ_bright")  # drawbar registrations (see instruments.ORGAN_DRAWBARS)

# Arrangement layers: which parts a section of a take leaves out.
LAYERS = ("drums", "bass", "chords", "pads", "melody")
INTROS = (("chords",), ("drums",), ("drums", "bass"), ("chords", "pads"), ("pads", "melody"), ("bass", "chords"))
# What a break closing a phrase leaves out ("kick": the kit without its kick; "half": the drums in half-time).
BREAKS = (("drums",), ("kick",), ("half",), ("drums", "bass"), ("kick", "bass"))
HALF_TIME = {"kick": "X.........X.....", "snare": "........X.......", "clap": "........X......."}

DRUM_VOICE = {
    "kick": ("kick", ""),
    "snare": ("snare", ""),
    "clap": ("clap", ""),
    "hat": ("hat", "closed"),
    "openhat": ("hat", "open"),
    "ride": ("hat", "ride"),
    "tom": ("tom", ""),
}
DRUM_PART = {
    "kick": "kick",
    "snare": "snare",
    "clap": "snare",
    "hat": "hats",
    "openhat": "hats",
    "ride": "hats",
    "tom": "drums",
}
DRUM_MIX = {  # level, pan, reverb send
    "kick": (0.85, 0.0, 0.04),
    "snare": (0.62, 0.05, 0.22),
    "clap": (0.55, -0.05, 0.3),
    "hat": (0.3, 0.3, 0.08),
    "openhat": (0.25, 0.3, 0.12),
    "ride": (0.2, -0.3, 0.15),
    "tom": (0.7, -0.2, 0.3),
}
DUCKED = frozenset({"pad", "bass", "strings", "pluck", "organ", "piano", "epiano"})


@dataclass
class Plan:
    """Everything the renderer needs: the notes (sorted by start) and the mix settings."""

    notes: list[Note]
    n_samples: int
    bpm: float
    bar: float  # bar length in samples
    room: float
    lowpass: float | None
    duck: float
    scenes: tuple[str, ...]
    intensity: float
    scene_level: float
    intro: int = 0  # samples before the whole band plays (loudness is measured after it)
    info: dict[str, object] = field(default_factory=dict)


def vary(grid: str, rng: np.random.Generator, adds: int, drops: int) -> str:
    """``grid`` with ``adds`` rests turned into soft hits and ``drops`` hits (never the downbeat) into rests."""
    steps = list(grid)
    rests = [i for i, c in enumerate(steps) if c == "."]
    hits = [i for i, c in enumerate(steps) if c != "." and i]
    for i in rng.permutation(rests)[:adds]:
        steps[i] = "o"
    for i in rng.permutation(hits)[:drops]:
        steps[i] = "."
    return "".join(steps)


class Grid:
    """Bar/step positions in samples, with swing on the off-beats."""

    def __init__(self, bpm: float, swing: float, unit: int) -> None:
        self.bar = 4 * 60.0 / bpm * SR
        self.step = self.bar / 16
        self.swing = swing
        self.unit = unit

    def at(self, bar: int, step: float) -> int:
        pos = bar * self.bar + step * self.step
        if self.swing and float(step).is_integer():
            s = int(step)
            if self.unit == 1 and s % 2 == 1:
                pos += self.swing * self.step
            elif self.unit == 2 and s % 4 == 2:
                pos += self.swing * 2 * self.step
        return round(pos)

    def span(self, bar: int, step: float, length: float) -> tuple[int, int]:
        start = self.at(bar, step)
        return start, max(1, self.at(bar, step + length) - start)


class Harmony:
    """The key and the chord of every bar."""

    def __init__(
        self, brief: Brief, genre: Genre, rng: np.random.Generator, seed: int, temperature: float, bars: int
    ) -> None:
        self.root = brief.root
        self.scale = SCALES.get(brief.mode, SCALES["minor"])
        name = genre.progressions
        minorish = brief.mode in ("minor", "dorian", "phrygian")
        if minorish and name in ("major", "rock"):
            name = "minor"
        elif not minorish and name in ("minor", "minor_loop", "cinematic", "lofi"):
            name = "major"
        family = PROGRESSIONS[name]
        first = family[seed % len(family)]  # the take's own progression (even at temperature 0); neighbours differ
        second = family[int(rng.integers(len(family)))]
        wander = rng.random()  # drawn at any temperature, so the choices after it are the seed's alone
        if temperature <= 0.05 or wander >= 0.3 + 0.2 * temperature:
            second = first
        self.sevenths = genre.sevenths or (temperature > 1.2 and rng.random() < 0.5)
        per = max(1, genre.bars_per_chord)
        degrees = [*first, *second]
        self.bar_degree = [degrees[(b // per) % len(degrees)] for b in range(bars + 1)]
        self.bar_degree[max(1, bars - 2) :] = [0] * (bars + 1 - max(1, bars - 2))  # the take ends home, on the tonic

    def pitch(self, degree: int, octave: int = 4) -> int:
        """MIDI pitch of a scale degree (may exceed 0..6: 7 is the tonic an octave up)."""
        return 12 * (octave + 1) + self.root + self.scale[degree % 7] + 12 * (degree // 7)

    def chord_degrees(self, bar: int) -> list[int]:
        d = self.bar_degree[bar]
        return [d, d + 2, d + 4, d + 6] if self.sevenths else [d, d + 2, d + 4]

    def chord_classes(self, bar: int) -> list[int]:
        return [self.pitch(d) % 12 for d in self.chord_degrees(bar)]

    def voicing(self, bar: int, low: int, high: int | None = None) -> list[int]:
        """Chord tones placed in one octave from ``low``: nearby chords share notes, so voice leading is smooth."""
        notes = sorted(low + (pc - low) % 12 for pc in self.chord_classes(bar))
        return notes if high is None else [n for n in notes if n <= high]

    def bass_pitch(self, bar: int, degree_offset: int = 0) -> int:
        pc = self.pitch(self.bar_degree[bar] + degree_offset) % 12
        return 33 + (pc - 33) % 12  # A1 .. G#2


class Sections:
    """Which layers rest in which bars: an intro that starts with a few parts, breaks that close some four-bar
    phrases (the beat drops out, the kick alone drops out, or the drums go half-time), a tune that comes in late.
    The intro's length and the first break's place turn with the seed, so neighbouring takes are shaped differently.
    Temperature 0 (or a take too short for it) plays everything throughout."""

    def __init__(self, rng: np.random.Generator, seed: int, bars: int, present: set[str], temperature: float) -> None:
        # "kick": bars without the kick (the rest of the kit plays); "half": bars the drums play half-time
        self.rest: dict[str, set[int]] = {layer: set() for layer in (*LAYERS, "kick", "half")}
        self.intro = 0
        intros = [i for i in INTROS if present & set(i) and present - set(i)]
        if temperature <= 0.05 or not intros:
            return
        longest = min(4, (bars - 1) // 4)  # the last bar is only ringing out
        self.intro = (seed + int(rng.integers(0, 2))) % (longest + 1) if longest else 0
        first = intros[int(rng.integers(len(intros)))]
        for layer in LAYERS:
            if layer not in first:
                self.rest[layer].update(range(self.intro))
        if "melody" in present and rng.random() < 0.5:  # the tune waits for the second phrase
            self.rest["melody"].update(range(self.intro + 2 * int(rng.integers(1, 3))))
        tops = list(range(self.intro + 4, bars - 1, 4))  # bars that open a new four-bar phrase
        skip = seed % 2  # odd seeds keep their first phrase whole: their first break comes a phrase later
        for i, top in enumerate(tops):
            if i < skip or (i > skip and rng.random() < 0.5):
                continue
            length = int(rng.integers(1, 3))
            kind = BREAKS[(seed + i + int(rng.integers(0, 2))) % len(BREAKS)]
            for layer in kind:
                self.rest[layer].update(range(top - length, top))

    def plays(self, layer: str, bar: int) -> bool:
        if layer == "kick":
            return bar not in self.rest["kick"] and bar not in self.rest["drums"]
        return bar not in self.rest[layer]


class Arranger:
    def __init__(self, brief: Brief, seed: int, temperature: float, n_samples: int) -> None:
        self.brief = brief
        self.genre = genre = GENRES[brief.genre]
        self.t = float(temperature)
        self.seed = seed
        self.rng = rng = np.random.default_rng(seed)
        self.n = n_samples
        swing = max(0.0, genre.swing + float(rng.choice((-0.1, 0.0, 0.12)))) if genre.swing else 0.0  # the take's feel
        self.grid = Grid(brief.bpm, swing, genre.swing_unit)
        self.bars = int(np.ceil(n_samples / self.grid.bar)) + 1
        self.harmony = Harmony(brief, genre, rng, seed, self.t, self.bars)
        self.notes: list[Note] = []
        self._var = int(rng.integers(1 << 30))
        # The take's own sound and style, chosen once in a fixed order (so a seed always makes the same choices).
        # The main ones rotate with the seed, so the takes of one request (consecutive seeds) never share them.
        beat = self.rotate(genre.options("drums"), 0)  # kick and snare
        cymbals = self.rotate(genre.options("drums"), 1)  # hats and ride, from another of the genre's grooves
        self.groove = {k: v for k, v in beat.items() if DRUM_PART[k] != "hats"} | {
            k: v for k, v in cymbals.items() if DRUM_PART[k] == "hats"
        }
        # Above temperature 0 the take plays its own version of the groove: cymbals with a few hits moved, and a
        # B bar (every second or fourth) where kick and snare answer the main pattern, as a drummer would.
        self.b_every = self.pick((2, 4))
        varied = {k: vary(v, rng, 2, 1 if DRUM_PART[k] != "hats" else 2) for k, v in self.groove.items()}
        if self.t > 0:
            self.groove = {k: varied[k] if DRUM_PART[k] == "hats" else v for k, v in self.groove.items()}
        self.b_groove = {k: v for k, v in varied.items() if DRUM_PART[k] != "hats" and self.t > 0}
        self.bass_style = self.rotate(genre.options("bass"), 1)
        self.bass_sound = self.pick(genre.options("bass_sound"))
        self.comp_style = self.rotate(genre.options("comp"), 2)
        self.power_rhythm = self.rotate(POWER_RHYTHMS, 3)
        self.arp_rate = self.rotate((1, 3, 2), 4)  # an arpeggio genre's pluck in sixteenths, dotted eighths, eighths
        self.kit = self.pick(genre.options("kit"))
        self.lead_wave = self.pick(genre.options("lead_wave"))
        self.organ = self.pick(ORGANS)
        self.kick_degree = self.pick((0, 4))  # the kick tuned to the tonic or the fifth
        self.voicing_shift = int(rng.integers(-4, 5))  # other inversions of the same chords
        self.bass_cell = self._bass_cell()
        self.band = set(brief.instruments)
        if not brief.named & set(TONAL) and not brief.implicit and rng.random() < 0.6:
            extras = [e for e in genre.extras if e not in self.band]
            if extras:
                self.band.add(self.pick(tuple(extras)))
        self.layer = "drums"  # the part being written, for :meth:`add`
        self.sections = Sections(rng, seed, self.bars, self._layers(), self.t)

    # ------------------------------------------------------------ helpers

    def chance(self, p: float) -> bool:
        return self.t > 0 and self.rng.random() < p

    def pick(self, options: tuple) -> Any:
        """One of ``options`` at random."""
        return options[int(self.rng.integers(len(options)))]

    def rotate(self, options: tuple, salt: int) -> Any:
        """One of ``options`` by the seed: seeds k and k + 1 always get different ones (when there are several)."""
        return options[(self.seed + salt) % len(options)]

    def add(self, start: int, voice: str, pitch: float, length: int, vel: float, **kw: object) -> None:
        """One note of the current :attr:`layer`; dropped when its section rests that layer."""
        if 0 <= start < self.n and self.sections.plays(self.layer, int(start // self.grid.bar)):
            self._var += 7919
            self.notes.append(Note(start, voice, pitch, length, vel, var=self._var, **kw))  # type: ignore[arg-type]

    def tune(self, natural_hz: float, degrees: tuple[int, ...] = (0,)) -> float:
        """Semitone shift that puts a drum's natural pitch on the nearest of the key's ``degrees`` (tuned kicks
        keep the low end in key)."""
        here = 69 + 12 * np.log2(natural_hz / 440.0)
        shifts = [((self.harmony.pitch(d) - here + 6) % 12) - 6 for d in degrees]
        return float(min(shifts, key=abs))

    def jitter(self) -> int:
        return int(self.rng.normal(0.0, 0.0025 * SR * self.t)) if self.t > 0 else 0

    # ------------------------------------------------------------ parts

    def drums(self) -> None:
        inst = self.band
        grids = self.groove or GENRES["pop"].drums
        kit = self.kit if self.kit != "none" else "jazz"
        full = "drums" in inst
        for name, grid in grids.items():
            part = DRUM_PART[name]
            if part in self.brief.muted or not (full or part in inst):
                continue
            voice, kind = DRUM_VOICE[name]
            level, pan, send = DRUM_MIX[name]
            kind = kind or kit
            tuning = {
                "kick": self.tune(kick_pitch(kit), (self.kick_degree,)),
                "snare": self.tune(185.0, (0, 4)),
                "tom": self.tune(90.0, (0, 4)),
            }.get(name, 0.0)
            self.layer = "kick" if name == "kick" else "drums"
            for bar in range(self.bars):
                fill = name in ("snare", "tom") and bar % 4 == 3 and self.chance(0.25 + 0.3 * self.t)
                b_bar = name in self.b_groove and bar % self.b_every == self.b_every - 1
                pattern = self.b_groove[name] if b_bar else grid
                if name in HALF_TIME and not self.sections.plays("half", bar):
                    pattern = HALF_TIME[name]
                for step, ch in enumerate(pattern):
                    vel = VELOCITY.get(ch, 0.0)
                    if name == "hat" and vel == 0 and self.chance(0.06 * self.t):
                        vel = 0.25
                    if name == "kick" and vel == 0 and step % 2 == 0 and self.chance(0.04 * self.t):
                        vel = 0.6
                    if name == "hat" and self.genre.name == "trap" and step % 4 == 2 and self.chance(0.2 * self.t):
                        for k in range(3):  # hat roll: 32nd notes
                            self.add(
                                self.grid.at(bar, step + k / 2),
                                voice,
                                0.0,
                                1,
                                level * 0.6,
                                pan=pan,
                                send=send,
                                kind=kind,
                            )
                        continue
                    if vel == 0 or (fill and step >= 12):
                        continue
                    vel = float(np.clip(vel + self.rng.normal(0, 0.05 + 0.05 * self.t), 0.1, 1.0))
                    start = self.grid.at(bar, step) + (self.jitter() if name != "kick" else 0)
                    self.add(start, voice, tuning, 1, vel * level, pan=pan, send=send, kind=kind)
                if fill:
                    tom_tuning = self.tune(90.0, (0, 4))
                    for step in range(12, 16):
                        if name == "tom" or kit == "epic":
                            drop = (7, 3, 0, -5)[step - 12]  # toms falling through the key's fifth
                            self.add(
                                self.grid.at(bar, step),
                                "tom",
                                tom_tuning + drop,
                                1,
                                0.6,
                                pan=0.4 - 0.25 * (step - 12),
                                send=0.3,
                                kind=kit,
                            )
                        elif step % 2 == 0 or self.chance(0.5):
                            self.add(
                                self.grid.at(bar, step),
                                "snare",
                                tuning,
                                1,
                                level * (0.5 + 0.1 * (step - 12)),
                                pan=pan,
                                send=send,
                                kind=kit,
                            )

    def bass(self) -> None:
        style, sound = self.bass_style, self.bass_sound
        if self.brief.implicit:
            style = "long"
        h, g = self.harmony, self.grid
        level = 0.5
        kick_grid = (self.groove or GENRES["pop"].drums).get("kick", "X.......X.......")
        for bar in range(self.bars):
            root = h.bass_pitch(bar)
            nxt = h.bass_pitch(bar + 1)
            hits: list[tuple[float, float, float]] = []  # step, length, pitch
            if style in ("root", "long", "drone"):
                per = self.genre.bars_per_chord if style != "root" else 1
                if bar % per == 0:
                    hits.append((0, 16 * per - 0.5, root - (12 if style == "drone" else 0)))
                if style == "root" and self.chance(0.3 * self.t):
                    hits[-1] = (0, 13.5, root)
                    hits.append((14, 2, root + 7 if self.rng.random() < 0.5 else nxt - 1))
            elif style in ("follow", "follow808"):
                steps = [s for s, c in enumerate(kick_grid) if c != "."]
                for i, s in enumerate(steps):
                    end = steps[i + 1] if i + 1 < len(steps) else 16
                    pitch = root + (12 if i > 0 and self.chance(0.15 * self.t) else 0)
                    hits.append((s, max(1.0, end - s - 0.3), pitch))
            elif style == "offbeat":
                for s in (2, 6, 10, 14):
                    hits.append((s, 1.5, root + (12 if self.chance(0.1 * self.t) else 0)))
            elif style == "rolling":
                for s in range(16):
                    if s % 4:
                        hits.append((s, 0.8, root + (12 if s % 4 == 3 and self.chance(0.2 * self.t) else 0)))
            elif style == "wobble":
                rate = self.brief.bpm / 60.0 * (2 if self.rng.random() < 0.6 else 3 if self.t > 0.8 else 1)
                hits.append((0, 7.8, root))
                hits.append((8, 7.8, root if not self.chance(0.3) else nxt))
                for step, length, p in hits:
                    start, n = g.span(bar, step, length)
                    self.add(start, "bass", p, n, level, send=0.03, kind=sound, mod=rate)
                continue
            elif style == "eighths":
                for s in range(0, 16, 2):
                    hits.append((s, 1.7, root + (12 if s in (6, 14) and self.chance(0.2 * self.t) else 0)))
            elif style == "octave":
                for s in range(0, 16, 2):
                    hits.append((s, 1.6, root + (12 if s % 4 == 2 else 0)))
            elif style == "walking":
                second = h.bass_pitch(bar, 2 if self.rng.random() < 0.7 else 1)
                third = h.bass_pitch(bar, 4 if self.rng.random() < 0.6 else 3)
                line = [root, second, third, nxt + (1 if self.rng.random() < 0.5 else -1)]  # chromatic approach
                for i, p in enumerate(line):
                    hits.append((4 * i, 3.6, p))
            elif style == "funk":
                for s, off in ((0, 0), (3, 12), (6, 0), (7, 10), (10, 0), (12, 12), (14, 7)):
                    hits.append((s, 1.2, root + off))
                    if s in (7, 14) and self.chance(0.2 * self.t):  # a ghosted sixteenth pickup
                        hits.append((s + 1, 0.6, root + 12))
            elif style == "melodic":
                for i, (cell_step, length, degree) in enumerate(self.bass_cell):
                    if i and self.chance(0.12 * self.t):
                        degree = int(self.rng.choice([0, 2, 4]))
                    pitch = h.bass_pitch(bar, degree % 7) + 12 * (degree // 7)
                    if degree == -1:  # a step up into the next chord, in the key
                        pitch = h.bass_pitch(min(bar + 1, self.bars), -1)
                    hits.append((cell_step, length, pitch))
            for step, length, p in hits:
                start, n = g.span(bar, step, length)
                self.add(start, "bass", p, n, level * (1.0 if step % 4 == 0 else 0.85), send=0.03, kind=sound)

    def _bass_cell(self) -> list[tuple[float, float, int]]:
        """The take's one-bar bass rhythm as (step, length, scale degree above the chord root; -1: lead-in)."""
        weights = [0.9 if s == 0 else 0.5 if s % 4 == 0 else 0.35 if s % 2 == 0 else 0.12 for s in range(16)]
        steps = [s for s in range(16) if self.rng.random() < weights[s]] or [0]
        cell = []
        for i, s in enumerate(steps):
            end = steps[i + 1] if i + 1 < len(steps) else 16
            degree = 0 if i == 0 else int(self.rng.choice([0, 2, 4, 7, 4, 5, -1 if s >= 12 else 2]))
            cell.append((float(s), max(0.8, (end - s) * 0.85), degree))
        return cell

    def comp(self, voice: str) -> None:
        """Chords for a keyboard or guitar in the genre's comping rhythm."""
        h, g = self.harmony, self.grid
        style = self.comp_style
        if self.brief.implicit and not self.band & {"drums", "kick", "snare", "hats"}:
            style = "broken"
        if voice == "guitar" and self.genre.guitar == "distorted":
            style = "power"
        if style in ("sustain", "arp"):
            style = "half" if style == "arp" else "sustain"
        kind = self.genre.guitar if voice == "guitar" else self.organ if voice == "organ" else ""
        low = {"guitar": 52, "organ": 55}.get(voice, 55) + self.voicing_shift
        per = self.genre.bars_per_chord if style == "sustain" else 1
        for bar in range(self.bars):
            if style == "broken":
                self._broken(voice, bar)
                continue
            if style == "power":
                r = h.bass_pitch(bar) + 12
                chord = [r, r + 7, r + 12]
            else:
                chord = h.voicing(bar, low)
                if h.sevenths and h.root % 12 in h.chord_classes(bar):  # the tonic on top where the chord has it:
                    chord = [*chord, chord[-1] + ((h.root - chord[-1]) % 12 or 12)]  # a common tone that sings home
            rhythm = self.power_rhythm if style == "power" else COMP_RHYTHMS[style]
            if bar % per:
                continue
            extra = []
            if style in ("funk", "stab", "skank", "lofi", "half", "backbeat") and self.chance(0.2 * self.t):
                extra = [(float(self.rng.choice([7, 11, 15])), 1.0)]  # an off-beat push before the next chord
            for s, length in (*rhythm, *extra):
                start, n = g.span(bar, s, length * per)
                strum = int(0.012 * SR) if voice == "guitar" and style != "power" else 0
                vel = 0.42 if s % 4 == 0 else 0.34
                for i, p in enumerate(chord):
                    self.add(
                        start + i * strum + (self.jitter() if i else 0),
                        voice,
                        p,
                        n,
                        vel,
                        pan=-0.25 + 0.5 * i / max(1, len(chord) - 1),
                        send=0.22,
                        kind=kind,
                    )

    def _broken(self, voice: str, bar: int) -> None:
        """Solo-piano accompaniment: a low root, then the chord rolled upwards in eighths."""
        h, g = self.harmony, self.grid
        root = h.bass_pitch(bar) + 12
        upper = h.voicing(bar, root + 7)
        figure = [root, *upper, upper[1] + 12 if len(upper) > 1 else root + 24, *upper[::-1]][:8]
        start, n = g.span(bar, 0, 16)
        self.add(start, voice, root - 12, n, 0.35, pan=-0.3, send=0.3)
        for i, p in enumerate(figure[1:8], start=1):
            s, ln = g.span(bar, 2 * i, 4)
            self.add(s, voice, p, ln, 0.22 + 0.04 * (i % 2 == 0), pan=-0.2 + 0.07 * i, send=0.3)

    def sustained(self, voice: str) -> None:
        """Pads, strings and brass: the chord held for as long as it lasts."""
        h, g = self.harmony, self.grid
        per = max(1, self.genre.bars_per_chord)
        low = {"strings": 52, "brass": 50, "pad": 53}[voice] + self.voicing_shift
        level = {"pad": 0.3, "strings": 0.28, "brass": 0.28}[voice]
        bright = float(self.rng.random())
        for bar in range(0, self.bars, per):
            notes = h.voicing(bar, low)
            if h.root % 12 in h.chord_classes(bar):  # the tonic held on top where the chord has it (see comp)
                notes = [*notes, notes[-1] + ((h.root - notes[-1]) % 12 or 12)]
            if voice == "strings":
                notes = [*notes, notes[0] + 12, h.bass_pitch(bar) + 12]
            start, n = g.span(bar, 0, 16 * per)
            for i, p in enumerate(notes):
                self.add(start, voice, p, n + int(0.05 * SR), level, pan=-0.4 + 0.8 * (i % 2), send=0.45, mod=bright)

    def arp(self, voice: str, level: float = 0.3, rate: int = 1) -> None:
        """Chord tones in a running pattern (sixteenths, or eighths with ``rate=2``)."""
        h, g = self.harmony, self.grid
        shapes = ("up", "updown", "down", "random")
        shape = shapes[int(self.rng.integers(len(shapes)))] if self.t > 0.3 else "up"
        octave_low = 60 if voice == "pluck" else 67
        for bar in range(self.bars):
            tones = h.voicing(bar, octave_low)
            seq = tones + [p + 12 for p in tones]
            if shape == "down":
                seq = seq[::-1]
            elif shape == "updown":
                seq = seq + seq[-2:0:-1]
            for i, s in enumerate(range(0, 16, rate)):
                p = seq[int(self.rng.integers(len(seq)))] if shape == "random" else seq[i % len(seq)]
                start, n = g.span(bar, s, rate * 0.8)
                vel = level * (1.0 if s % 4 == 0 else 0.75)
                self.add(
                    start,
                    voice,
                    p,
                    n,
                    vel,
                    pan=0.35 if i % 2 else -0.35,
                    send=0.35,
                    kind=self.lead_wave if voice == "lead" else "",
                )

    def melody(self, voice: str, center: int) -> None:
        """A tune in two-bar phrases: motif A, A varied, A, then B resolving to the tonic; new motifs later on."""
        h, g = self.harmony, self.grid
        octave = (center - h.root + 6) // 12 - 1  # puts the tonic within a fifth of ``center``
        level = {"lead": 0.42, "bells": 0.4, "pluck": 0.42, "piano": 0.38, "guitar": 0.4, "organ": 0.34}.get(voice, 0.4)
        kind = self.lead_wave if voice == "lead" else (self.genre.guitar if voice == "guitar" else "")
        motif = self._motif()
        for phrase in range(0, self.bars, 2):
            section_pos = (phrase // 2) % 4
            if section_pos == 0 and phrase > 0 and self.chance(0.25 * self.t):
                motif = self._motif()
            notes = motif
            if section_pos == 1 and self.t > 0:
                notes = motif[: len(motif) // 2] + self._motif()[len(motif) // 2 :]
            elif section_pos == 3:
                notes = self._motif()
            if section_pos in (1, 3):  # phrase ends settle: on the tonic at the end of a section, else its triad
                end = 0 if section_pos == 3 else int(self.rng.choice([0, 2, 4]))
                notes = [*notes[:-1], (notes[-1][0], notes[-1][1], end)]
            for step, length, deg in notes:
                bar = phrase + int(step // 16)
                if bar >= self.bars:
                    break
                if step % 8 == 0:  # strong beats land on a chord tone
                    tones = [c + 7 * k for c in h.chord_degrees(bar) for k in (-2, -1, 0, 1)]
                    deg = min(tones, key=lambda d: (abs(d - deg), d))
                pitch = h.pitch(deg, octave)
                start, n = g.span(bar, step % 16, length)
                vel = level * (1.0 if step % 4 == 0 else 0.8)
                self.add(start + self.jitter(), voice, pitch, n, vel, pan=0.15, send=0.35, kind=kind)

    def _motif(self) -> list[tuple[float, float, int]]:
        """Two bars of (step, length, scale degree); busier and leapier with temperature."""
        t = self.t
        onsets = []
        for s in range(32):
            if s % 4 == 0:
                p = 0.85 if t > 0 else (1.0 if s % 8 == 0 else 0.7)
            elif s % 2 == 0:
                p = 0.25 + 0.3 * t
            else:
                p = 0.12 * t**1.5
            if s == 0 or self.rng.random() < p:
                onsets.append(s)
        deg = int(self.rng.choice([0, 2, 4]))
        moves = [-2, -1, 1, 2] + ([-4, -3, 3, 4] if self.rng.random() < 0.3 * t else [])
        out = []
        for i, s in enumerate(onsets):
            end = onsets[i + 1] if i + 1 < len(onsets) else 32
            length = max(0.9, (end - s) * 0.92)
            if i:
                deg = int(np.clip(deg + int(self.rng.choice(moves)), -3, 9))
            out.append((float(s), float(length), deg))
        return out

    # ------------------------------------------------------------ all together

    def _layers(self) -> set[str]:
        """The arrangement layers this band has (see :meth:`plan` for which part plays in which)."""
        band = self.band
        present = {
            "drums": bool(band & {"drums", "kick", "snare", "hats"}),
            "bass": "bass" in band,
            "chords": bool(band & {"piano", "epiano", "organ", "guitar"}),
            "pads": bool(band & {"pad", "strings", "brass"}),
            "melody": bool(band & {"lead", "bells", "pluck"}),
        }
        return {layer for layer, here in present.items() if here}

    def plan(self) -> Plan:
        inst = self.band
        self.layer = "drums"
        if inst & {"drums", "kick", "snare", "hats"}:
            self.drums()
        self.layer = "bass"
        if "bass" in inst:
            self.bass()
        self.layer = "chords"
        for voice in ("piano", "epiano", "organ", "guitar"):
            if voice in inst:
                self.comp(voice)
        self.layer = "pads"
        for voice in ("pad", "strings", "brass"):
            if voice in inst:
                self.sustained(voice)
        self.layer = "chords"
        melodic = [v for v in ("lead", "bells", "pluck") if v in inst]
        arp_genre = self.genre.name in ("trance", "techno", "synthwave", "chiptune")
        if "pluck" in melodic and (arp_genre or len(melodic) > 1):
            self.arp("pluck", rate=self.arp_rate if arp_genre else 2)
            melodic.remove("pluck")
        if "bells" in melodic and len(melodic) > 1:
            self.arp("bells", level=0.16, rate=4 if self.genre.name != "chiptune" else 2)
            melodic.remove("bells")
        self.layer = "melody"
        if melodic:
            self.melody(melodic[0], 76 if melodic[0] == "bells" else 72)
        elif (inst & {"piano", "guitar"} and not inst & {"drums", "bass"}) or self.genre.name == "classical":
            self.melody("piano" if "piano" in inst else "guitar", 74)
        self.notes.sort(key=lambda note: note.start)
        return Plan(
            notes=self.notes,
            n_samples=self.n,
            bpm=self.brief.bpm,
            bar=self.grid.bar,
            room=self.genre.room,
            lowpass=self.genre.lowpass,
            duck=self.genre.duck if inst & {"drums", "kick"} else 0.0,
            scenes=self.brief.scenes,
            intensity=self.brief.intensity,
            scene_level=0.35 if inst else 1.0,
            intro=min(self.n, round(self.sections.intro * self.grid.bar)),
            info={
                "progression": [int(d) for d in self.harmony.bar_degree[:8]],
                "groove": self.groove,
                "bass": self.bass_style,
                "comp": self.comp_style,
                "band": sorted(self.band),
                "intro_bars": self.sections.intro,
                "breaks": {kind: sorted(self.sections.rest[kind]) for kind in ("drums", "kick", "half")},
            },
        )


def arrange(brief: Brief, seed: int, temperature: float, n_samples: int) -> Plan:
    """Plan every note of one take."""
    if not brief.instruments:
        return Plan(
            [], n_samples, brief.bpm, 4 * 60.0 / brief.bpm * SR, 0.6, None, 0.0, brief.scenes, brief.intensity, 1.0
        )
    return Arranger(brief, seed, temperature, n_samples).plan()
