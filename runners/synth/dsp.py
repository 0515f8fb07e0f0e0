"""Filters without scipy, whose ``signal`` package alone takes ~0.7 s to import (it pulls in ``scipy.stats``): most of
what starting the synth used to cost.

Butterworth filters are designed the way ``scipy.signal.butter`` designs them (analog prototype, pre-warped bilinear
transform) and run as a sum of one-pole recursions (partial fractions). Each recursion is solved a block at a time with
a cumulative sum instead of a loop over samples, so filtering is a few vectorised passes, and the state carried from
one call to the next is one complex number per pole. The true-peak oversampler is ``scipy.signal.resample_poly``'s
4× filter applied as a polyphase matrix product.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SR = 44100
OVERSAMPLE = 4
CONTEXT = 10  # input samples the oversampling filter reaches on either side


def next_fast_len(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n: a size numpy's FFT handles fast."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


class IIR:
    """A linear recursive filter as ``direct * x + sum of one-pole recursions`` (one per real pole or per conjugate
    pair, whose real part counts twice)."""

    def __init__(self, poles: np.ndarray, residues: np.ndarray, direct: float, doubled: np.ndarray) -> None:
        self.poles = poles.astype(np.complex128)
        self.residues = residues.astype(np.complex128)
        self.direct = float(direct)
        self.weight = np.where(doubled, 2.0, 1.0)
        # Blocks short enough that |p|**-block stays far from overflow for every pole: within one, a cumsum.
        fastest = np.clip(np.abs(self.poles), 1e-9, 1 - 1e-12).min(initial=1 - 1e-12)
        self.block = int(min(4096, max(16, 200.0 / -np.log(fastest))))

    @classmethod
    def from_zpk(cls, zeros: np.ndarray, poles: np.ndarray, gain: float) -> IIR:
        """Partial fractions of H(q) = gain * prod(1 - z q) / prod(1 - p q), q the unit delay, with as many zeros as
        poles (what the bilinear transform gives): H = direct + sum r / (1 - p q)."""
        b, a = gain * np.poly(zeros), np.poly(poles)  # coefficients of q**0 .. q**n
        order = len(poles)
        keep, residues, doubled = [], [], []
        for k, p in enumerate(poles):
            if p.imag < -1e-12:
                continue  # its conjugate stands for both
            others = np.delete(poles, k)
            keep.append(p)
            residues.append(np.polyval(b, p) / p**order / np.prod(1 - others / p))  # (1 - p q) H at q = 1/p
            doubled.append(p.imag > 1e-12)
        return cls(np.array(keep), np.array(residues), (b[-1] / a[-1]).real, np.array(doubled))

    def scaled(self, factor: float) -> IIR:
        """The same filter with its gain times ``factor``."""
        return IIR(self.poles, self.residues * factor, self.direct * factor, self.weight > 1)

    def __call__(self, x: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Filter along the last axis from ``state`` (None: at rest); returns (output, state for the next call)."""
        if state is None:
            state = np.zeros((len(self.poles), *x.shape[:-1]), dtype=np.complex128)
        shape = (-1, *[1] * x.ndim)
        out, state = _recursion(self.residues.reshape(shape) * x, self.poles, state, self.block)
        return self.direct * x + np.tensordot(self.weight, out.real, axes=1), state


@cache
def _powers(poles: tuple[complex, ...], block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """p**i, p**-i and p**(i+1) for i < block, and p**block, for each pole (rows)."""
    p = np.array(poles)[:, None]
    i = np.arange(block, dtype=np.float64)
    return p**i, p**-i, p ** (i + 1), p[:, 0] ** block


def _recursion(u: np.ndarray, poles: np.ndarray, s: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """y[i] = p * y[i-1] + u[i] from y[-1] = s for each pole p (axis 0 of ``u`` and ``s``), a block at a time:
    within a block y[i] = p**i * cumsum(u[j] * p**-j)."""
    n = u.shape[-1]
    if n == 0:
        return u.astype(np.complex128), s
    count = -(-n // block)
    padded = np.zeros((*u.shape[:-1], count * block), dtype=np.complex128)
    padded[..., :n] = u
    parts = padded.reshape(*u.shape[:-1], count, block)
    rise, fall, carry, stepped = _powers(tuple(poles.tolist()), block)
    shape = (len(poles), *[1] * (u.ndim - 1), block)  # broadcast a pole's powers over channels and blocks
    rise, fall, carry = rise.reshape(shape), fall.reshape(shape), carry.reshape(shape)
    local = np.cumsum(parts * fall, axis=-1)
    local *= rise  # each block from rest
    ends = local[..., -1].copy()
    if np.all(np.abs(stepped) < 1e-30):  # a block outlasts every pole's memory: a block starts from the last's end
        entering = np.concatenate([s[..., None], ends[..., :-1]], axis=-1)
        local += carry * entering[..., None]
    else:  # a slow pole next to a fast one, or capped blocks: one step per block, tens per second of audio
        step = stepped.reshape(-1, *[1] * (s.ndim - 1))
        for k in range(count):
            local[..., k, :] += carry[..., 0, :] * s[..., None]
            s = step * s + ends[..., k]
    y = local.reshape(*u.shape[:-1], count * block)[..., :n]
    return y, y[..., -1].copy()


def _prototype(order: int) -> np.ndarray:
    """Analog Butterworth poles for a 1 rad/s cut-off."""
    k = np.arange(order)
    return np.exp(1j * np.pi * (2 * k + order + 1) / (2 * order))


@cache
def butter(order: int, cutoff: float | tuple[float, float], kind: str = "lowpass") -> IIR:
    """A digital Butterworth filter (lowpass, highpass or bandpass), designed as ``scipy.signal.butter`` does."""
    fs2 = 2.0 * SR
    warp = fs2 * np.tan(np.pi * np.asarray(cutoff, dtype=float) / SR)
    proto = _prototype(order)
    if kind == "lowpass":
        zeros_s, poles_s, gain = np.array([]), warp * proto, warp**order
    elif kind == "highpass":
        zeros_s, poles_s, gain = np.zeros(order), warp / proto, 1.0
    elif kind == "bandpass":
        lo, hi = warp
        bw, w0 = hi - lo, np.sqrt(lo * hi)
        scaled = proto * bw / 2
        root = np.sqrt(scaled**2 - w0**2 + 0j)
        zeros_s, poles_s, gain = np.zeros(order), np.concatenate([scaled + root, scaled - root]), bw**order
    else:
        raise ValueError(f"unknown filter kind {kind!r}")
    # bilinear transform: s-plane roots to z-plane, the missing zeros at Nyquist, and the gain that keeps the response
    zeros_z = (fs2 + zeros_s) / (fs2 - zeros_s)
    poles_z = (fs2 + poles_s) / (fs2 - poles_s)
    zeros_z = np.concatenate([zeros_z, -np.ones(len(poles_s) - len(zeros_s))])
    gain_z = (gain * np.prod(fs2 - zeros_s) / np.prod(fs2 - poles_s)).real
    return IIR.from_zpk(zeros_z, poles_z, gain_z)


def one_pole(tau: float) -> IIR:
    """y[i] = (1 - a) x[i] + a y[i-1]: impulses in, exponential decays of time constant ``tau`` seconds out."""
    a = np.exp(-1.0 / (tau * SR))
    return IIR(np.array([a]), np.array([1.0 - a]), 0.0, np.array([False]))


def lfilter(iir: IIR, x: np.ndarray) -> np.ndarray:
    """Filter from rest along the last axis (one-shot: a note, a noise bank)."""
    return iir(x)[0]


class Filter:
    """A filter whose state survives from one chunk to the next."""

    def __init__(self, iir: IIR) -> None:
        self.iir = iir
        self.state: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.state = self.iir(x, self.state)
        return y


@cache
def _polyphase() -> np.ndarray:
    """``resample_poly``'s 4× interpolation filter (Kaiser-windowed sinc, beta 5, 81 taps) as ``(taps, phases)``."""
    half = CONTEXT * OVERSAMPLE
    n = np.arange(2 * half + 1) - half
    h = np.sinc(n / OVERSAMPLE) * np.kaiser(2 * half + 1, 5.0)
    h = h / h.sum() * OVERSAMPLE
    # output 4 m + q = sum_t h[4 t + q] x[m + CONTEXT - t]: row e of the bank weighs element e of the window
    # x[m - CONTEXT .. m + CONTEXT], so it holds h[4 (2 CONTEXT - e) + q]
    taps = -(-len(h) // OVERSAMPLE)
    padded = np.zeros(taps * OVERSAMPLE)
    padded[: len(h)] = h
    return padded.reshape(taps, OVERSAMPLE)[::-1].copy()


@cache
def overshoot() -> float:
    """How far the 4× interpolation can exceed the largest input sample it reads: no more than this times it."""
    return float(np.abs(_polyphase()).sum(axis=0).max())


def oversampled_abs(x: np.ndarray) -> np.ndarray:
    """|x| at 4× the rate along the last axis, as ``resample_poly(x, 4, 1)`` gives it, for all but the first and
    last :data:`CONTEXT` samples of ``x``, which only feed the filter."""
    bank = _polyphase()
    taps = bank.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, taps, axis=-1)  # (..., n - taps + 1, taps)
    up = np.abs(windows @ bank)  # (..., n - taps + 1, 4)
    return up.reshape(*x.shape[:-1], -1)
