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
        # Each pole runs in blocks short enough that |p|**-block stays far from overflow: within one, a cumsum. A
        # block of its own, not one for all: a slow pole in a fast pole's short blocks needs a step per block.
        magnitude = np.clip(np.abs(self.poles), 1e-9, 1 - 1e-12)
        self.blocks = [int(min(4096, max(16, 200.0 / -np.log(m)))) for m in magnitude]
        # In single precision |p|**-block must stay far inside float32's range (e**36, about 4e15).
        self.blocks32 = [int(min(4096, max(16, 36.0 / -np.log(m)))) for m in magnitude]
        # A real positive pole with a real residue needs no complex numbers (its powers come out real, exactly).
        self.real = [p.imag == 0 and p.real > 0 and r.imag == 0 for p, r in zip(self.poles, self.residues, strict=True)]

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

    def response(self, n_fft: int) -> np.ndarray:
        """H at the ``n_fft // 2 + 1`` frequencies of an ``rfft`` of length ``n_fft``: filtering a periodic signal
        (a loopable noise bank) is a multiplication of its spectrum by this."""
        q = _unit_delay(n_fft)
        h = np.full(q.shape, self.direct, dtype=np.complex128)
        for pole, residue, weight in zip(self.poles, self.residues, self.weight, strict=True):
            if weight > 1:  # the pair r / (1 - p q) + conj: one real biquad, one complex division
                numerator = 2 * residue.real - 2 * (residue * np.conj(pole)).real * q
                h += numerator / (1 - 2 * pole.real * q + abs(pole) ** 2 * (q * q))
            else:
                h += residue.real / (1 - pole.real * q)
        return h

    def energy(self) -> float:
        """Sum of the squared impulse response (Parseval on a dense grid): white noise in, this power out."""
        n_fft = 1 << 14  # the filters' impulse responses die out well within it
        power = np.abs(self.response(n_fft)) ** 2
        return float((2 * power.sum() - power[0] - power[-1]) / n_fft)

    def scaled(self, factor: float) -> IIR:
        """The same filter with its gain times ``factor``."""
        return IIR(self.poles, self.residues * factor, self.direct * factor, self.weight > 1)

    def __call__(
        self, x: np.ndarray, state: np.ndarray | None = None, single: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filter along the last axis from ``state`` (None: at rest); returns (output, state for the next call).
        ``single``: in float32 arithmetic, twice as fast, for audio on its way to a float32 take (a few 1e-7 of
        error, not the 1e-12 of double precision)."""
        if state is None:
            state = np.zeros((len(self.poles), *x.shape[:-1]), dtype=np.complex128)
        y = np.multiply(x, self.direct, dtype=np.float32 if single else np.float64)
        after = np.empty_like(state)
        blocks = self.blocks32 if single else self.blocks
        for k, (pole, residue, weight, block, real) in enumerate(
            zip(self.poles, self.residues, self.weight, blocks, self.real, strict=True)
        ):  # a few poles, summed one by one: not np.tensordot, whose BLAS threads spin on after the call and
            # starve the rest of the render on a small machine
            out, after[k] = _recursion(x, residue, pole, state[k], block, real, single)
            y += float(weight) * out.real  # a Python float: float32 audio stays float32
        return y, after


@cache
def _unit_delay(n_fft: int) -> np.ndarray:
    """The unit delay q = exp(-i w) at the frequencies of an ``rfft`` of length ``n_fft``."""
    return np.exp(-2j * np.pi * np.arange(n_fft // 2 + 1) / n_fft)


@cache
def _powers(
    pole: complex, block: int, dtype: type[np.generic] = np.complex128
) -> tuple[np.ndarray, np.ndarray, np.ndarray, complex]:
    """p**i, p**-i and p**(i+1) for i < block, and p**block: as exp(i log p), ten times faster than complex powers;
    as ``dtype`` (a real one for a real pole)."""
    log_p = np.log(pole)
    i = np.arange(block, dtype=np.float64)
    rise = np.exp(i * log_p)
    fall, carry = np.exp(-i * log_p), rise * pole
    if np.dtype(dtype).kind == "f":
        rise, fall, carry = rise.real, fall.real, carry.real
    return rise.astype(dtype), fall.astype(dtype), carry.astype(dtype), pole**block


def _recursion(
    x: np.ndarray, residue: complex, pole: complex, s: np.ndarray, block: int, real: bool = False, single: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """y[i] = p * y[i-1] + r * x[i] along the last axis from y[-1] = s, a block at a time: within a block
    y[i] = p**i * cumsum(r * x[j] * p**-j), plus p**(i+1) times the state the block starts from. In place, in one
    buffer: each pass over the audio counts. A real pole (and residue) runs in real numbers: the same values, half the
    work. ``single``: in float32 (complex64)."""
    n = x.shape[-1]
    dtype = (np.float32 if single else np.float64) if real else (np.complex64 if single else np.complex128)
    if n == 0:
        return np.zeros(x.shape, dtype=dtype), s
    count = -(-n // block)
    y = np.zeros((*x.shape[:-1], count * block), dtype=dtype)
    np.multiply(x, residue.real if real else residue, out=y[..., :n], dtype=dtype)
    local = y.reshape(*x.shape[:-1], count, block)
    rise, fall, carry, stepped = _powers(pole, block, dtype)
    local *= fall
    np.cumsum(local, axis=-1, out=local)
    local *= rise  # each block from rest
    ends = local[..., -1]
    entering = np.empty((*x.shape[:-1], count), dtype=dtype)
    start = s.real if real else s
    if abs(stepped) < (1e-12 if single else 1e-30):  # a block outlasts the pole's memory: it starts from the last
        entering[..., 0] = start  # one's end
        entering[..., 1:] = ends[..., :-1]
    else:  # a slow pole in capped blocks: a step per block, about ten per second of audio
        step = stepped.real if real else stepped
        for k in range(count):
            entering[..., k] = start
            start = step * start + ends[..., k]
    local += carry * entering[..., None]
    return y[..., :n], y[..., n - 1].astype(np.complex128)


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
    gain: float | np.ndarray
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

    def __init__(self, iir: IIR, single: bool = False) -> None:
        self.iir = iir
        self.single = single
        self.state: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.state = self.iir(x, self.state, self.single)
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
def _polyphase32() -> np.ndarray:
    return _polyphase().astype(np.float32)


@cache
def overshoot() -> float:
    """How far the 4× interpolation can exceed the largest input sample it reads: no more than this times it."""
    return float(np.abs(_polyphase()).sum(axis=0).max())


def oversampled_abs(x: np.ndarray) -> np.ndarray:
    """|x| at 4× the rate along the last axis, as ``resample_poly(x, 4, 1)`` gives it, for all but the first and
    last :data:`CONTEXT` samples of ``x``, which only feed the filter."""
    bank = _polyphase() if x.dtype != np.float32 else _polyphase32()  # float32 audio: its matrix product too
    taps = bank.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, taps, axis=-1)  # (..., n - taps + 1, taps)
    up = np.abs(windows @ bank)  # (..., n - taps + 1, 4)
    return up.reshape(*x.shape[:-1], -1)
