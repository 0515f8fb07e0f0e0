"""Voices: each renders one note (or drum hit, or scene event) as a numpy array, vectorised, no per-sample loops.

Tonal voices read band-limited wavetables (one per octave, so high notes do not alias) and shape them with
envelopes and cheap per-note filters. Noisy voices slice a fixed noise bank, so a hit costs a slice, not a random
draw, and is identical wherever it is rendered. A voice returns mono ``(n,)`` or stereo ``(2, n)`` audio at
:data:`SR`, peaking around 1 at velocity 1; the arranger sets levels.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from runners.synth import dsp

SR = 44100
TABLE_BITS = 12
TABLE = 1 << TABLE_BITS  # wavetable length (power of two: index wrap is a bitwise and)
NOISE_LEN = 1 << 18  # about 6 s
WARM_UP = 1 << 15  # samples a drum family's filter runs before its bank begins: its transient is long gone by then


@dataclass(slots=True)
class Note:
    """One event on the timeline. ``var`` picks per-note variation (noise offset, detune) deterministically."""

    start: int  # sample index in the take
    voice: str
    pitch: float  # MIDI note number (drums: tuning offset in semitones)
    length: int  # gate length in samples (the voice may ring past it)
    vel: float  # 0..1, already scaled by the part's level
    pan: float = 0.0  # -1 left .. 1 right
    send: float = 0.2  # reverb send
    var: int = 0
    kind: str = ""  # sound variant: drum kit, bass sound, guitar tone...
    mod: float = 0.0  # voice-specific modulation (wobble rate in Hz, ...)


def midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


# ---------------------------------------------------------------- tables and shared buffers


# Organ registrations as (harmonic, level): the 8', 4', 2 2/3', 2', 1 3/5', 1 1/3' and 1' drawbars.
ORGAN_DRAWBARS = {
    "organ": ((1, 1.0), (2, 0.8), (3, 0.6), (4, 0.5), (6, 0.3), (8, 0.25)),
    "organ_mellow": ((1, 1.0), (2, 0.45), (3, 0.15)),  # flutes: round, for bubbling reggae and ballads
    "organ_bright": ((1, 1.0), (2, 0.9), (3, 0.8), (4, 0.7), (5, 0.45), (6, 0.55), (8, 0.6)),  # full gospel
}


def _harmonics(wave: str, count: int) -> np.ndarray:
    k = np.arange(1, count + 1, dtype=np.float64)
    if wave == "sine":
        amps = (k == 1).astype(float)
    elif wave == "saw":
        amps = 1.0 / k
    elif wave == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif wave == "triangle":
        amps = np.where(k % 2 == 1, (-1.0) ** ((k - 1) // 2) / k**2, 0.0)
    elif wave == "soft":  # a saw through a gentle low-pass: warm pads and basses
        amps = 1.0 / k**2
    elif wave == "piano":
        amps = 1.0 / k**1.6 * (1.0 + 0.5 * np.cos(k * 0.9))  # uneven partials from the hammer position
    elif wave in ORGAN_DRAWBARS:
        amps = np.zeros(count)
        for h, a in ORGAN_DRAWBARS[wave]:
            if h <= count:
                amps[h - 1] = a
    elif wave == "sub":
        amps = np.zeros(count)
        amps[:3] = (1.0, 0.25, 0.08)[: min(3, count)]
    else:
        raise ValueError(f"unknown wave {wave!r}")
    return amps


@cache
def wavetable(wave: str, band: int, tone: int = -1) -> np.ndarray:
    """One cycle of ``wave`` holding only the harmonics that stay below ~19 kHz for notes in octave ``band``.

    ``tone`` >= 0 bakes in a 2nd-order low-pass at 2**(tone/2) times the fundamental: filtering a periodic wave only
    rescales its harmonics, so a filtered note costs a table lookup instead of a filter run.
    """
    top = 27.5 * 2.0 ** (band + 1)
    count = max(1, min(TABLE // 2 - 1, int(19000.0 / top)))
    amps = _harmonics(wave, count)
    if tone >= 0:
        k = np.arange(1, count + 1)
        amps = amps / np.sqrt(1.0 + (k / 2.0 ** (tone / 2.0)) ** 4)
    spectrum = np.zeros(TABLE // 2 + 1, dtype=np.complex128)
    spectrum[1 : count + 1] = -1j * amps * (TABLE / 2)  # sine phase
    table = np.fft.irfft(spectrum, TABLE)
    return (table / np.max(np.abs(table))).astype(np.float32)


def _tone(freq: float, cutoff: float | None) -> int:
    if cutoff is None:
        return -1
    return int(np.clip(round(2 * np.log2(max(cutoff, 1.0) / freq)), 0, 14))


def _band(freq: float) -> int:
    return int(min(max(np.floor(np.log2(max(freq, 1.0) / 27.5)), 0), 9))


@lru_cache(maxsize=1)
def _ramp() -> np.ndarray:
    return np.arange(SR * 30, dtype=np.float64)


def ramp(n: int) -> np.ndarray:
    """0, 1, ..., n-1 as float64 (cached: notes are rendered by the thousand). Used for phases, which need it."""
    r = _ramp()
    return r[:n] if n <= len(r) else np.arange(n, dtype=np.float64)


@cache
def _uramp() -> np.ndarray:
    return np.arange(SR * 30, dtype=np.uint64)


def uramp(n: int) -> np.ndarray:
    """0, 1, ..., n-1 as uint64: sample counts for fixed-point phases."""
    r = _uramp()
    return r[:n] if n <= len(r) else np.arange(n, dtype=np.uint64)


@cache
def _ramp32() -> np.ndarray:
    return np.arange(SR * 30, dtype=np.float32)


def ramp32(n: int) -> np.ndarray:
    """Like :func:`ramp` in float32: envelopes and modulators do not need more, and float32 math is twice as fast."""
    r = _ramp32()
    return r[:n] if n <= len(r) else np.arange(n, dtype=np.float32)


def seconds(n: int) -> np.ndarray:
    """Time axis in seconds (float32), for envelopes and slow modulators."""
    return ramp32(n) * np.float32(1.0 / SR)


@cache
def noise_bank(kind: str) -> np.ndarray:
    """Fixed noise (the same on every machine), optionally pre-filtered for one drum family. Built on first use: a
    take only pays for the families it plays, and every family filters the one white bank as a loop — run in from the
    bank's own last :data:`WARM_UP` samples, so it starts where it ends and a slice that wraps has no seam."""
    if kind == "white":
        return np.random.default_rng(0x7A6).standard_normal(NOISE_LEN).astype(np.float32)
    band = {
        "hat": ("highpass", 7000.0),
        "snare": ("bandpass", (900.0, 9000.0)),
        "clap": ("bandpass", (800.0, 3200.0)),
        "low": ("lowpass", 400.0),
        "mid": ("bandpass", (300.0, 3000.0)),
    }[kind]
    white = noise_bank("white")
    out = dsp.lfilter(dsp.butter(2, band[1], band[0]), np.concatenate([white[-WARM_UP:], white]))[WARM_UP:]
    return (out / np.sqrt(np.mean(out**2))).astype(np.float32)


def noise(kind: str, n: int, offset: int) -> np.ndarray:
    bank = noise_bank(kind)
    offset %= NOISE_LEN - 1
    if offset + n <= NOISE_LEN:
        return bank[offset : offset + n]
    return np.resize(np.roll(bank, -offset), n)


def lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """Per-note low-pass (cutoff rounded so the designs are cached)."""
    return dsp.lfilter(dsp.butter(2, min(round(cutoff / 50.0) * 50 or 50, SR * 0.45)), x)


# ---------------------------------------------------------------- oscillators and envelopes


def osc(
    wave: str,
    freq: float,
    n: int,
    *,
    phase: float = 0.0,
    vibrato: np.ndarray | None = None,
    cutoff: float | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Wavetable oscillator; ``vibrato`` is a per-sample frequency ratio (1 = no bend), ``cutoff`` a low-pass in Hz;
    written into ``out`` (float32, ``n`` long) when given."""
    table = wavetable(wave, _band(freq), _tone(freq, cutoff))
    inc = freq / SR
    if vibrato is not None:
        idx = (((phase + np.cumsum(inc * vibrato)) * TABLE).astype(np.int64)) & (TABLE - 1)
        return np.take(table, idx, out=out, mode="wrap")  # in range already: "wrap" checks least ("raise" buffers)
    # A steady tone counts its phase in 64-bit fixed point (one cycle = 2**64, wrapping as the integers do): the
    # table index is the top 12 bits, four integer passes where floats needed six.
    step = np.uint64(round(inc * 2.0**64) % (1 << 64))
    start = np.uint64(round((phase % 1.0) * 2.0**64) % (1 << 64))
    acc = uramp(n) * step
    acc += start
    acc >>= np.uint64(64 - TABLE_BITS)
    index = acc.view(np.int64)  # 0..TABLE-1 now: the same bits as signed, so take() need not convert them
    return np.take(table, index, out=out, mode="wrap")


def sweep(freqs: np.ndarray, wave: str = "sine") -> np.ndarray:
    """Oscillator following a per-sample frequency curve (kicks, toms, chirps, 808 slides)."""
    ph = np.cumsum(freqs / SR)
    idx = (ph * TABLE).astype(np.int64) & (TABLE - 1)
    return wavetable(wave, _band(float(np.max(freqs))))[idx]


@lru_cache(maxsize=32)
def decay(n: int, tau: float) -> np.ndarray:
    """An exponential decay (read-only: kept, as a take's notes repeat their lengths)."""
    out = np.exp(ramp32(n) * np.float32(-1.0 / (tau * SR)))
    out.flags.writeable = False
    return out


@lru_cache(maxsize=32)
def envelope(n: int, gate: int, attack: float, release: float, sustain_tau: float | None = None) -> np.ndarray:
    """Attack ramp, optional exponential decay while held, exponential release after the gate closes (read-only:
    kept, as a take's notes repeat their lengths)."""
    t = ramp32(n)
    env = np.minimum(t * np.float32(1.0 / max(1.0, attack * SR)), np.float32(1.0))
    if sustain_tau is not None:
        env *= np.exp(t * np.float32(-1.0 / (sustain_tau * SR)))
    if gate < n:
        level = env[gate - 1] if gate > 0 else np.float32(0.0)
        r = max(1.0, release * SR)
        after = ramp32(n - gate)
        tail = np.exp(after * np.float32(-1.0 / r)) * np.clip(1.0 - after * np.float32(1.0 / (RELEASE_TAUS * r)), 0, 1)
        env[gate:] = level * tail
    env.flags.writeable = False
    return env


RELEASE_TAUS = 5  # a release lasts this many time constants and then reaches exactly zero


def ring(gate: int, release: float) -> int:
    """Samples a note needs: its gate plus the release tail."""
    return gate + int(release * SR * RELEASE_TAUS)


def _detune(f: float, cents: float) -> tuple[float, float]:
    """The two frequencies ``cents`` either side of ``f``."""
    return f * 2 ** (cents / 1200), f * 2 ** (-cents / 1200)


def _detuned(
    note: Note, wave: str, n: int, cents: float, vib: np.ndarray | None = None, cutoff: float | None = None
) -> np.ndarray:
    """A ``(2, n)`` pair of oscillators ``cents`` either side of the note, left and right."""
    up, down = _detune(midi_hz(note.pitch), cents)
    ph = (note.var * 0.618) % 1.0
    out = np.empty((2, n), dtype=np.float32)
    osc(wave, up, n, phase=ph, vibrato=vib, cutoff=cutoff, out=out[0])
    osc(wave, down, n, phase=(ph + 0.37) % 1.0, vibrato=vib, cutoff=cutoff, out=out[1])
    return out


# ---------------------------------------------------------------- drums

KICKS = {  # start Hz, end Hz, pitch tau, amp tau, click, drive, length s
    "808": (160.0, 48.0, 0.03, 0.45, 0.08, 1.3, 0.9),
    "909": (230.0, 50.0, 0.014, 0.22, 0.3, 2.2, 0.45),
    "acoustic": (150.0, 58.0, 0.012, 0.17, 0.35, 1.2, 0.35),
    "lofi": (130.0, 52.0, 0.015, 0.2, 0.12, 1.1, 0.4),
    "jazz": (110.0, 70.0, 0.015, 0.14, 0.1, 1.0, 0.3),
    "epic": (120.0, 42.0, 0.025, 0.55, 0.3, 1.6, 1.3),
    "chip": (300.0, 60.0, 0.01, 0.09, 0.0, 1.0, 0.18),
}


def kick_pitch(kind: str) -> float:
    """The pitch a kick is heard at: where its sweep settles (the spectral peak), so it can be tuned to the key."""
    return KICKS.get(kind, KICKS["acoustic"])[1]


def kick(note: Note) -> np.ndarray:
    f0, f1, ptau, atau, click, drive, length = KICKS.get(note.kind, KICKS["acoustic"])
    shift = 2.0 ** (note.pitch / 12.0)
    n = int(max(length, 5 * atau) * SR)
    freqs = (f1 + (f0 - f1) * decay(n, ptau)) * shift
    body = sweep(freqs)
    if note.kind == "chip":
        body = np.sign(body) * 0.7
    out = body * decay(n, atau) * np.minimum(ramp(n) / 40.0, 1.0)
    out += click * noise("white", n, note.var) * decay(n, 0.003)
    return np.tanh(drive * out) / np.tanh(drive)


def tom(note: Note) -> np.ndarray:
    tau = 0.35 if note.kind == "epic" else 0.18
    n = int(5 * tau * SR)
    base = 90.0 * 2.0 ** (note.pitch / 12.0)
    freqs = base * (1.0 + 0.6 * decay(n, 0.03))
    out = sweep(freqs) * decay(n, tau)
    out += 0.25 * noise("mid", n, note.var) * decay(n, 0.04)
    return np.tanh(1.5 * out)


def snare(note: Note) -> np.ndarray:
    chip = note.kind == "chip"
    tau = 0.03 if chip else {"808": 0.13, "lofi": 0.09, "jazz": 0.07, "epic": 0.2}.get(note.kind, 0.1)
    n = int(5 * tau * SR)
    f = 185.0 * 2.0 ** (note.pitch / 12.0)
    tone = osc("sine", f, n) * decay(n, 0.05) + 0.5 * osc("sine", f * 1.78, n) * decay(n, 0.03)
    body = noise("white" if chip else "snare", n, note.var) * decay(n, tau)
    mix = 0.55 * tone + 0.6 * body
    if note.kind == "jazz":  # brushes: softer attack
        mix *= np.minimum(ramp(n) / (0.004 * SR), 1.0)
    return np.tanh(1.4 * mix)


def clap(note: Note) -> np.ndarray:
    n = int(0.35 * SR)
    t = ramp(n)
    env = np.zeros(n)
    for k, delay in enumerate((0.0, 0.011, 0.022)):
        d = int(delay * SR)
        env[d:] += (0.8 if k < 2 else 1.0) * np.exp(-(t[: n - d]) / (0.006 * SR if k < 2 else 0.09 * SR))
    return 0.8 * noise("clap", n, note.var) * env


def hat(note: Note) -> np.ndarray:
    tau = {"open": 0.22, "ride": 0.45, "closed": 0.035}[note.kind if note.kind in ("open", "ride") else "closed"]
    n = int(tau * 6 * SR)
    out = noise("hat", n, note.var) * decay(n, tau)
    if note.kind == "ride":  # a little metallic ring under the wash
        f = 3200.0 + 40.0 * (note.var % 7)
        out = 0.7 * out + 0.3 * (osc("square", f, n) * osc("square", f * 1.41, n)) * decay(n, tau * 1.5)
    return 0.6 * out


# ---------------------------------------------------------------- basses


def bass(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    kind = note.kind
    if kind == "808":
        n = ring(note.length, 0.08)
        slide = 1.0 + 0.35 * decay(n, 0.025)
        out = sweep(f * slide, "sine") * envelope(n, note.length, 0.002, 0.06, sustain_tau=1.2)
        return np.tanh(1.8 * out) / np.tanh(1.8)
    if kind == "reese":
        n = ring(note.length, 0.08)
        out = _detuned(note, "saw", n, 14.0, cutoff=420.0 + 20 * (note.var % 5)).sum(axis=0) * 0.5
        return out * envelope(n, note.length, 0.02, 0.08)
    if kind == "wobble":
        n = ring(note.length, 0.05)
        lfo = 0.5 - 0.5 * np.cos(2 * np.pi * note.mod * seconds(n))
        bright = osc("saw", f, n, cutoff=2400.0)
        dark = osc("saw", f, n, cutoff=300.0)
        out = (dark + lfo * (bright - dark)) * 1.5 + 0.6 * osc("sine", f, n)
        return np.tanh(1.6 * out) * envelope(n, note.length, 0.005, 0.05)
    if kind in ("electric", "upright"):
        n = ring(note.length, 0.06)
        cutoff = 1800.0 if kind == "electric" else 900.0
        pluck = osc("saw", f, n, cutoff=cutoff) * decay(n, 0.08 if kind == "electric" else 0.04)
        body = osc("triangle", f, n) * decay(n, 0.9 if kind == "electric" else 0.5)
        out = 0.5 * pluck + body
        return out * envelope(n, note.length, 0.004 if kind == "electric" else 0.012, 0.05)
    if kind == "triangle":
        n = ring(note.length, 0.01)
        return osc("triangle", f, n) * envelope(n, note.length, 0.001, 0.01)
    if kind == "cello":
        return 0.8 * strings(note).mean(axis=0)
    if kind == "synth":
        n = ring(note.length, 0.04)
        bright = osc("saw", f, n, cutoff=900.0) * decay(n, 0.12)
        out = 0.6 * bright + osc("soft", f, n, cutoff=900.0)
        return out * envelope(n, note.length, 0.003, 0.04) * 1.2
    n = ring(note.length, 0.04)  # "sub"
    return osc("sub", f, n) * envelope(n, note.length, 0.006, 0.04)


# ---------------------------------------------------------------- keys, pads, leads


def piano(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    n = ring(note.length, 0.12)
    tau = float(np.clip(1.6 * (261.6 / f) ** 0.6, 0.25, 4.0))
    bright = osc("piano", f, n) * decay(n, tau * 0.18)
    warm = osc("sine", f, n) + 0.3 * osc("sine", 2 * f, n)
    return (0.7 * bright + 0.5 * warm * decay(n, tau)) * envelope(n, note.length, 0.002, 0.12)


def epiano(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    n = ring(note.length, 0.2)
    out = osc("sine", f, n) * decay(n, 2.0) + 0.22 * osc("sine", 2 * f, n) * decay(n, 0.4)
    if f * 7 < 16000:
        out = out + 0.12 * osc("sine", 7 * f, n) * decay(n, 0.03)  # the tine's bark
    trem = 1.0 + 0.12 * np.sin(2 * np.pi * 4.5 * seconds(n) + note.var)
    return out * trem * envelope(n, note.length, 0.003, 0.2)


def organ(note: Note) -> np.ndarray:
    n = ring(note.length, 0.05)
    leslie = 1.0 + 0.004 * np.sin(2 * np.pi * 6.2 * seconds(n))
    out = _detuned(note, note.kind or "organ", n, 3.0, vib=leslie)
    amp = 1.0 + 0.15 * np.sin(2 * np.pi * 6.2 * seconds(n) + np.array([[0.0], [1.6]]))
    return 0.6 * out * amp * envelope(n, note.length, 0.01, 0.05)


PAD_CENTS = 9.0  # the saw layer's detune (the soft layer's is 4)


def _pad_cutoff(f: float, brightness: float) -> float:
    return min(1400.0 + 800.0 * brightness, f * 12)


def pad(note: Note) -> np.ndarray:
    """``mod``: brightness (0..1), the saw layer's low-pass."""
    n = ring(note.length, 0.6)
    out = _detuned(note, "saw", n, PAD_CENTS, cutoff=_pad_cutoff(midi_hz(note.pitch), note.mod))
    out += _detuned(note, "soft", n, 4.0)
    out *= envelope(n, note.length, 0.5, 0.6) * np.float32(0.45)  # in place: pads are the longest notes
    return out


def strings(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    n = ring(note.length, 0.4)
    t = seconds(n)
    vib = 1.0 + 0.004 * np.sin(2 * np.pi * 5.3 * t + note.var) * np.minimum(t / 0.4, 1.0)
    out = _detuned(note, "saw", n, 7.0, vib=vib, cutoff=min(3800.0, f * 10))
    out *= envelope(n, note.length, 0.18, 0.4) * np.float32(0.8)
    return out


def brass(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    n = ring(note.length, 0.15)
    swell = 1.0 - decay(n, 0.09)
    cutoff = min(3000.0, f * 8)
    soft, saw = osc("soft", f, n, cutoff=cutoff), osc("saw", f, n, cutoff=cutoff)
    out = soft + swell * 0.8 * (saw - soft)
    return out * envelope(n, note.length, 0.05, 0.15)


BELL_PARTIALS = ((1.0, 1.0, 1.0), (2.0, 0.35, 0.6), (2.756, 0.5, 0.45), (5.404, 0.25, 0.2), (8.933, 0.12, 0.1))


def bells(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    gate = max(note.length, int(1.2 * SR))
    n = ring(gate, 0.4)
    out = np.zeros(n, dtype=np.float32)
    for ratio, amp, tau in BELL_PARTIALS:
        if f * ratio < 18000:
            out += amp * osc("sine", f * ratio, n) * decay(n, tau * 1.6)
    return 0.55 * out * envelope(n, gate, 0.001, 0.4)


def pluck(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    n = ring(note.length, 0.06)
    bright = osc("saw", f, n) * decay(n, 0.05)
    body = osc("soft", f, n) * decay(n, 0.3)
    return (0.6 * bright + body) * envelope(n, note.length, 0.001, 0.06) * 0.8


def guitar(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    if note.kind == "distorted":
        n = ring(note.length, 0.05)
        raw = osc("saw", f * 1.003, n) + osc("saw", f * 0.997, n)
        out = lowpass(np.tanh(4.0 * raw), 3200.0)
        return 0.45 * out * envelope(n, note.length, 0.003, 0.05)
    n = ring(note.length, 0.1)
    bright = osc("saw", f, n, cutoff=3500.0) * decay(n, 0.04)
    body = osc("triangle", f, n) * decay(n, 0.6)
    return (0.5 * bright + body) * envelope(n, note.length, 0.001, 0.1) * 0.8


def lead(note: Note) -> np.ndarray:
    f = midi_hz(note.pitch)
    n = ring(note.length, 0.08)
    t = seconds(n)
    vib = 1.0 + 0.005 * np.sin(2 * np.pi * 5.5 * t) * np.clip((t - 0.2) / 0.3, 0.0, 1.0)
    wave = note.kind or "saw"
    out = _detuned(note, wave, n, 6.0, vib=vib, cutoff=None if wave == "square" else min(4200.0, f * 9))
    return out * envelope(n, note.length, 0.01, 0.08) * 0.6


# ---------------------------------------------------------------- scene events


def chirp(note: Note) -> np.ndarray:
    """A bird call: a few quick frequency sweeps with a warble, shaped by the note's own random draw."""
    rng = np.random.default_rng(note.var)
    count = int(rng.integers(2, 7))
    gap = rng.uniform(0.05, 0.14)
    dur = rng.uniform(0.04, 0.11)
    base = rng.uniform(2200, 5200)
    n = int((count * (gap + dur) + 0.05) * SR)
    out = np.zeros(n)
    m = int(dur * SR)
    t = ramp(m) / dur / SR
    shape = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)
    for k in range(count):
        start = int(k * (gap + dur) * SR)
        freqs = base * (1 + shape * t) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(30, 80) * t * dur))
        out[start : start + m] += sweep(freqs) * np.sin(np.pi * t) ** 2
    return 0.5 * out


def cricket(note: Note) -> np.ndarray:
    n = int(0.35 * SR)
    t = seconds(n)
    pulses = np.clip(np.sin(2 * np.pi * 28.0 * t), 0.0, 1.0) ** 2
    return 0.25 * osc("sine", 4400.0 + 30 * (note.var % 9), n) * pulses * np.sin(np.pi * t / 0.35)


def thunder(note: Note) -> np.ndarray:
    rng = np.random.default_rng(note.var)
    n = note.length
    raw = rng.standard_normal(n)
    rumble = dsp.lfilter(dsp.butter(4, 180.0), raw) * 6.0
    crack = lowpass(raw, 1500.0) * decay(n, 0.15) * rng.uniform(0.0, 1.0)
    t = seconds(n)
    attack = rng.uniform(0.05, 0.6)
    env = np.minimum(t / attack, 1.0) * np.exp(-t / rng.uniform(1.2, 2.5))
    wobble = 1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.8, 2.5) * t + rng.uniform(0, 6))
    return (rumble * wobble + crack) * env


def car(note: Note) -> np.ndarray:
    """A car passing: band-passed noise swelling and fading, moving across the stereo field."""
    n = note.length
    t = ramp(n) / n
    env = np.exp(-((t - 0.5) ** 2) / 0.03)
    body = noise("mid", n, note.var) * 0.6 + noise("low", n, note.var + 999) * 0.8
    pos = (t - 0.5) * 2.0 * (1 if note.var % 2 else -1)
    left, right = np.sqrt(0.5 * (1 - pos)), np.sqrt(0.5 * (1 + pos))
    return np.stack([body * env * left, body * env * right])


VOICES: dict[str, Callable[[Note], np.ndarray]] = {
    "kick": kick,
    "snare": snare,
    "clap": clap,
    "hat": hat,
    "tom": tom,
    "bass": bass,
    "piano": piano,
    "epiano": epiano,
    "organ": organ,
    "pad": pad,
    "strings": strings,
    "brass": brass,
    "bells": bells,
    "pluck": pluck,
    "guitar": guitar,
    "lead": lead,
    "chirp": chirp,
    "cricket": cricket,
    "thunder": thunder,
    "car": car,
}


END_FADE = 220  # 5 ms: every voice ends at exactly zero, so a cut-off tail never clicks


ROUND_ROBIN = 4  # takes of each repeated sound (noise slice, phases), as a sampler keeps a few per key
SCENE_VOICES = frozenset({"chirp", "cricket", "thunder", "car"})  # one of a kind: never reused
CACHE_BYTES = 96 << 20  # the rendered sounds kept, least recently used dropped first


def _voice(note: Note) -> np.ndarray:
    audio = VOICES[note.voice](note)
    m = min(END_FADE, audio.shape[-1])
    audio[..., audio.shape[-1] - m :] *= np.linspace(1.0, 0.0, m)
    return audio


_sounds: OrderedDict[tuple[str, str, float, int, object, int], np.ndarray] = OrderedDict()
_sound_bytes = 0


def _heard_mod(voice: str, pitch: float, mod: float) -> object:
    """What of ``mod`` a voice's sound depends on (the sound cache's key): a pad's brightness only picks its
    wavetables' low-pass, in half octaves, so takes whose pads differ in brightness by less than that share their
    rendered chords."""
    if voice == "pad":
        f = midi_hz(pitch)
        cutoff = _pad_cutoff(f, mod)
        return tuple(_tone(freq, cutoff) for freq in _detune(f, PAD_CENTS))
    return mod


def _sound(voice: str, kind: str, pitch: float, length: int, mod: float, var: int) -> np.ndarray:
    """A note at velocity 1, kept: a groove repeats the same hits and chords bar after bar, and a progression its
    pad chords every few bars. Identical whenever it is rendered, so reuse changes no sample."""
    global _sound_bytes
    key = (voice, kind, pitch, length, _heard_mod(voice, pitch, mod), var)
    audio = _sounds.get(key)
    if audio is not None:
        _sounds.move_to_end(key)
        return audio
    audio = _voice(Note(0, voice, pitch, length, 1.0, var=var, kind=kind, mod=mod)).astype(np.float32, copy=False)
    audio.flags.writeable = False
    _sounds[key] = audio
    _sound_bytes += audio.nbytes
    while _sound_bytes > CACHE_BYTES and len(_sounds) > 1:
        _sound_bytes -= _sounds.popitem(last=False)[1].nbytes
    return audio


def render(note: Note) -> tuple[np.ndarray, float]:
    """The note's audio at velocity 1 (mono or stereo, as the voice made it; read-only) and the gain its velocity
    gives: the mixer applies that with the pan in one pass."""
    gain = note.vel * (0.55 + 0.45 * note.vel) if note.voice == "piano" else note.vel  # harder piano hits: louder
    if note.voice in SCENE_VOICES:
        return _voice(note), gain
    var = 0 if takes_alike(note.voice, note.kind) else note.var % ROUND_ROBIN
    return _sound(note.voice, note.kind, note.pitch, note.length, note.mod, var), gain


ALIKE = frozenset({"piano", "brass", "bells", "pluck", "guitar"})  # voices that do not read ``var``
VARIED_BASSES = frozenset({"reese", "cello"})  # the bass sounds that do (detune phases)


def takes_alike(voice: str, kind: str) -> bool:
    """Whether a voice's sound ignores ``var``: then one take serves (a round robin of identical takes rendered each
    sound up to four times)."""
    return voice in ALIKE or (voice == "bass" and kind not in VARIED_BASSES)
