"""Mixing and mastering that stream: panning, a convolution reverb and a look-ahead true-peak limiter.

Every stage keeps its state between chunks (the reverb's tail, the limiter's gain), so a take rendered chunk by chunk
is the take. Loudness is set once, up front, from the first seconds of the raw mix after the intro (a take that starts
with a few instruments is not turned up to the whole band's level) — never from the finished clip — and the limiter
then guarantees the ceiling.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from functools import cache

import numpy as np

from runners.synth import dsp
from runners.synth.instruments import SR

TRUE_PEAK_CEILING_DB = -1.3  # a little under the -1 dBTP promise, for the estimate's error
OVERSAMPLE = dsp.OVERSAMPLE


def pan(position: float, stereo: bool) -> np.ndarray:
    """Left and right gains: constant-power placement of mono audio; stereo audio is balanced instead."""
    angle = (np.clip(position, -1.0, 1.0) + 1.0) * np.pi / 4
    gains = np.array([np.cos(angle), np.sin(angle)]) * np.sqrt(2.0)
    return np.minimum(gains, 1.0) if stereo else gains


def impulse_response(room: float, seed: int = 0x12EB) -> np.ndarray:
    """A stereo room: a few early reflections, then decorrelated decaying noise that darkens as it fades."""
    rng = np.random.default_rng(seed)
    rt60 = 0.4 + 2.4 * room
    length = int(min(rt60, 2.2) * SR)
    t = np.arange(length) / SR
    predelay = int((0.008 + 0.02 * room) * SR)
    ir = rng.standard_normal((2, length)) * np.exp(-6.9 * t / rt60)
    ir[:, :predelay] = 0.0
    for delay, gain in ((0.011, 0.5), (0.017, 0.4), (0.023, 0.35), (0.031, 0.3)):
        d = predelay + int(delay * SR * (0.5 + room))
        if d < length:
            ir[0, d] += gain * rng.choice([-1, 1]) * 3
            ir[1, d + int(0.0013 * SR)] += gain * rng.choice([-1, 1]) * 3
    # darker tail: blend towards a low-passed copy as time goes on
    dark = dsp.lfilter(dsp.butter(1, 2500.0), ir)
    mix = np.minimum(t / (0.6 * rt60), 1.0)
    ir = ir * (1 - mix) + dark * mix
    ir /= np.sqrt(np.sum(ir**2) / 2)
    return ir


@cache
def _room(room: float, block: int) -> tuple[int, np.ndarray]:
    """(FFT size, spectra of the IR cut into ``block``-long partitions): the same for every take in a room, so built
    once."""
    ir = impulse_response(room)
    count = -(-ir.shape[1] // block)
    parts = np.zeros((count, 2, block))
    for k in range(count):
        piece = ir[:, k * block : (k + 1) * block]
        parts[k, :, : piece.shape[1]] = piece
    nfft = dsp.next_fast_len(2 * block)
    spectra = np.fft.rfft(parts, nfft, axis=-1)
    spectra.flags.writeable = False
    return nfft, spectra


class Reverb:
    """Mono in, stereo out, as a hardware reverb takes its send: the room's two decorrelated channels make the width,
    and a take pays for one forward FFT per chunk, not one per channel (a tenth of its render).

    Uniformly partitioned convolution: the IR in chunk-long pieces, each chunk's spectrum kept for as many chunks
    as there are pieces, so a chunk costs one FFT of twice its length each way (not of the chunk plus the whole IR)
    and a few spectral products; the second half of each block's result rings into the next chunk. ``single``: in
    float32 (complex64) arithmetic — its inverse FFT and products at twice the speed, to a few 1e-7 of the wet
    signal."""

    def __init__(self, room: float, chunk: int, single: bool = False) -> None:
        self.block = chunk
        self.nfft, spectra = _room(room, chunk)
        complex_type = np.complex64 if single else np.complex128
        self.spectra = _single(room, chunk) if single else spectra
        self.history = np.zeros((spectra.shape[0], self.nfft // 2 + 1), dtype=complex_type)  # a ring
        self.newest = 0
        self.tail = np.zeros((2, chunk), dtype=np.float32 if single else np.float64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One mono chunk (``chunk`` samples; only the last of a take may be shorter) in, a stereo ``(2, n)`` one
        out."""
        n = x.shape[-1]
        count = self.spectra.shape[0]
        self.newest = (self.newest + 1) % count
        # In double precision either way: numpy's float32 forward transform took half as long again (and is cast
        # to complex64 as it is stored).
        self.history[self.newest] = np.fft.rfft(x.astype(np.float64, copy=False), self.nfft)
        spectrum = self.history[self.newest] * self.spectra[0]
        for age in range(1, count):  # the chunk ``age`` chunks ago meets the IR's piece ``age``
            spectrum += self.history[(self.newest - age) % count] * self.spectra[age]
        y = np.fft.irfft(spectrum, self.nfft, axis=-1)
        out = y[:, :n] + self.tail[:, :n]
        self.tail = y[:, n : n + self.block]
        return out


@cache
def _single(room: float, block: int) -> np.ndarray:
    """The room's IR spectra in complex64."""
    spectra = _room(room, block)[1].astype(np.complex64)
    spectra.flags.writeable = False
    return spectra


class Master:
    """Fades, loudness gain decided from the first seconds after ``measure_from``, then a look-ahead true-peak limiter.

    The limiter works in blocks: each block's gain is at most ceiling / (its oversampled peak), recovers slowly
    afterwards, and is ramped linearly from block to block, never above the block's own limit — so no sample (and,
    to within the oversampling estimate, no inter-sample peak) passes the ceiling. It needs one chunk of look-ahead.
    """

    BLOCK = 441  # 10 ms; divides the 1 s render chunk
    PAD = 16  # context for the oversampling filter (its half-length is 10 input samples)

    def __init__(
        self,
        n_samples: int,
        target_rms_db: float,
        fade_in: float,
        fade_out: float,
        measure_seconds: float = 4.0,
        release: float = 0.15,
        measure_from: int = 0,
    ) -> None:
        self.n = n_samples
        self.target = 10 ** (target_rms_db / 20)
        self.ceiling = 10 ** (TRUE_PEAK_CEILING_DB / 20)
        self.fade_in = max(1, int(fade_in * SR))
        self.fade_out = max(1, int(fade_out * SR))
        self.measure_from = measure_from  # a sparse intro would set the gain too high for the full band after it
        self.measure = int(measure_seconds * SR)
        self.recover = self.BLOCK / (release * SR)  # log-gain regained per block
        self.gain = 1.0

    def _fades(self, x: np.ndarray, start: int) -> np.ndarray:
        if self.fade_in <= start and start + x.shape[1] <= self.n - self.fade_out:
            return x  # between the fades
        idx = start + np.arange(x.shape[1])
        fin = np.clip(idx / self.fade_in, 0.0, 1.0)
        fout = np.clip((self.n - idx) / self.fade_out, 0.0, 1.0)
        env = np.sin(0.5 * np.pi * fin) ** 2 * np.sin(0.5 * np.pi * fout) ** 2
        return x * env.astype(x.dtype)

    def run(self, raw: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Raw mix chunks in, mastered float32 chunks out (the same sizes, in order)."""
        head: list[np.ndarray] = []
        pos = 0
        raw = iter(raw)
        for chunk in raw:
            head.append(self._fades(chunk, pos))
            pos += chunk.shape[1]
            if pos >= self.measure_from + self.measure:
                break
        joined = np.concatenate(head, axis=1) if head else np.zeros((2, 0))
        if joined.shape[1] > self.measure_from:
            joined = joined[:, self.measure_from :]
        rms = float(np.sqrt(np.mean(np.square(joined, dtype=np.float64)))) if joined.size else 0.0
        self.gain = min(self.target / rms, 1000.0) if rms > 1e-9 else 1.0

        def gained() -> Iterator[np.ndarray]:
            nonlocal pos
            for chunk in head:
                yield chunk * self.gain
            for chunk in raw:
                yield self._fades(chunk, pos) * self.gain
                pos += chunk.shape[1]

        yield from self._limit(gained())

    def _peaks(self, seg: np.ndarray, count: int) -> np.ndarray:
        """True peak of each of ``count`` blocks of ``seg`` (which starts with PAD samples of context). Blocks that
        cannot reach the ceiling — the samples the filter reads for them (the block and :data:`dsp.CONTEXT` either
        side) times its overshoot stay under it — get that bound instead: the limiter leaves both alone, so only loud
        blocks pay for oversampling."""
        B, P, C = self.BLOCK, self.PAD, dsp.CONTEXT
        sample = np.abs(seg).max(axis=0)
        body = np.zeros((count, B), dtype=sample.dtype)
        body.reshape(-1)[: min(count * B, sample.size - P)] = sample[P : P + count * B]
        before = np.r_[sample[P - C : P].max(initial=0.0), body[:-1, -C:].max(axis=1)]  # the context of each block
        after = np.r_[body[1:, :C].max(axis=1), sample[P + count * B : P + count * B + C].max(initial=0.0)]
        near = np.maximum(body.max(axis=1), np.maximum(before, after)).astype(np.float64)
        peaks = near * dsp.overshoot()
        loud = np.flatnonzero(peaks > self.ceiling)
        if loud.size:
            starts = P - C + loud * B  # each loud block with its filter context
            index = starts[:, None] + np.arange(B + 2 * C)
            short = int(index.max()) + 1 - seg.shape[1]
            windows = (np.pad(seg, ((0, 0), (0, short))) if short > 0 else seg)[:, index]  # (2, loud, B + 2C)
            peaks[loud] = dsp.oversampled_abs(windows).max(axis=(0, 2))
        return peaks

    def _limit(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        B, P = self.BLOCK, self.PAD
        context = np.zeros((2, P), dtype=np.float32)  # the chunks are float32 (and so is all the work on them)
        state = 0.0  # log gain of the last block
        edge: float | None = None  # gain at the start of the pending chunk
        pending: np.ndarray | None = None
        for nxt in itertools.chain(chunks, [None]):
            if pending is None:
                pending = nxt
                continue
            n = pending.shape[1]
            blocks = -(-n // B)
            ahead = nxt[:, : B + P] if nxt is not None else np.zeros((2, P), dtype=np.float32)
            seg = np.concatenate([context, pending, np.zeros((2, blocks * B - n), dtype=np.float32), ahead], axis=1)
            seg = seg.astype(np.float32, copy=False)
            count = blocks + (1 if nxt is not None else 0)
            peaks = self._peaks(seg, count)
            limit = np.log(np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12)))
            j = np.arange(count)
            logs = self.recover * j + np.minimum(state + self.recover, np.minimum.accumulate(limit - self.recover * j))
            g = np.exp(logs)
            bounds = np.empty(blocks + 1)
            bounds[0] = g[0] if edge is None else min(edge, g[0])
            bounds[1:blocks] = np.minimum(g[: blocks - 1], g[1:blocks])
            bounds[blocks] = min(g[blocks - 1], g[blocks]) if nxt is not None else g[blocks - 1]
            ramp = np.arange(B) / B  # linear from each block's starting gain to the next's, broadcast (no repeats)
            gains = (bounds[:-1, None] + np.diff(bounds)[:, None] * ramp).reshape(-1).astype(np.float32)
            out = np.multiply(pending, gains[:n], dtype=np.float32)
            np.clip(out, -self.ceiling, self.ceiling, out=out)
            yield out
            edge = bounds[blocks]
            state = float(logs[blocks - 1])
            context = np.concatenate([context, pending[:, -P:]], axis=1)[:, -P:]
            pending = nxt
