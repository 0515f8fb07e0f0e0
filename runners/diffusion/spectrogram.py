"""Riffusion's spectrogram images ⇄ audio, fast enough to run after every clip.

The convention (riffusion-hobby's ``SpectrogramParams``): 44.1 kHz mono, 10 ms hop (441 samples), 100 ms Hann window
(4410 samples) zero-padded to n_fft 17640, STFT *magnitudes* (not power) through 512 HTK mel filters from 0 to 10 kHz
without normalisation; an image pixel is ``255 - 255 * (mel / max) ** 0.25`` with low frequencies at the bottom. One
image column is 10 ms, so a 512-pixel-wide image is 5.12 s of audio.

Audio from a mel spectrogram needs two guesses: the linear magnitudes behind each mel band and the phase. The slow
route (mel pseudo-inverse at n_fft 17640, then Griffin-Lim at n_fft 17640) spends almost all its time on 17640-point
FFTs of frames that hold only 4410 samples, and on a band above 10 kHz that the image leaves empty. Here:

1. Linear magnitudes: the mel filters' pseudo-inverse (``Fᵀ(FFᵀ)⁻¹``), clipped at 0. Zero-padding a 4410-sample
   frame to 17640 points samples the same spectrum 4× more finely, so bin ``4k`` of the padded FFT has exactly the
   magnitude of bin ``k`` of the unpadded one: only every 4th row of the inverse is ever computed.
2. Phase: fast Griffin-Lim (Perraudin et al. 2013, momentum 0.99 as torchaudio's) with the unpadded window at the
   lowest rate that keeps 10 ms / 100 ms whole and 10 kHz well inside Nyquist (24 kHz: hop 240, window 2400) — the
   same 10 Hz frequency grid, so the magnitudes carry over with a scale factor — then polyphase resampling to
   44.1 kHz. Each iteration is about 6× cheaper than at n_fft 17640 / 44.1 kHz, for the same result.
3. Everything runs in torch on the worker's device (CPU, CUDA or MPS); the random initial phase has a fixed seed so
   the same image always makes the same audio.

``spectral_convergence`` measures the result in the image's own terms: the mel spectrogram of the audio against the
mel spectrogram it was made from. ``bench/bench_spectrogram.py`` compares it with librosa's Griffin-Lim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SpectrogramParams:
    """Riffusion's spectrogram convention; ``max_value`` is riffusion's 30e6 for int16 audio, rescaled to ±1 floats."""

    sample_rate: int = 44100
    hop_length: int = 441
    win_length: int = 4410
    n_fft: int = 17640
    n_mels: int = 512
    f_min: float = 0.0
    f_max: float = 10000.0
    power_for_image: float = 0.25
    max_value: float = 30e6 / 32768

    @property
    def seconds_per_column(self) -> float:
        return self.hop_length / self.sample_rate


RIFFUSION = SpectrogramParams()
# Fast Griffin-Lim iterations: the fewest of those measured (16–64) that beat Riffusion's own converter (torchaudio's
# momentum Griffin-Lim, 32 iterations at n_fft 17640) on spectral convergence for every benchmark clip, at about half
# a second per 5.12 s clip on one CPU thread (bench/bench_spectrogram.py, BENCHMARKS.md).
ITERATIONS = 48


# -- the mel filter bank ---------------------------------------------------------------------------------------------
def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def mel_filterbank(params: SpectrogramParams = RIFFUSION) -> np.ndarray:
    """HTK triangles without normalisation, (n_mels, n_fft // 2 + 1): torchaudio's ``melscale_fbanks`` transposed."""
    freqs = np.linspace(0.0, params.sample_rate / 2, params.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(params.f_min), _hz_to_mel(params.f_max), params.n_mels + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - freqs[:, None]  # (freqs, n_mels + 2)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up)).T.astype(np.float32)


@dataclass(frozen=True)
class _Filters:
    """The mel filters over the bins they touch, and the rows of their pseudo-inverse on the unpadded grid."""

    filters: Any  # (n_mels, bins) torch tensor: mel = filters @ |STFT|[:bins]
    inverse: Any  # (bins // pad, n_mels): |STFT|[::pad][:bins // pad] ≈ inverse @ mel
    bins: int


_FILTERS: dict[tuple[SpectrogramParams, str], _Filters] = {}


def _filters(params: SpectrogramParams, device: Any) -> _Filters:
    """Cached per device. The pseudo-inverse is ``Fᵀ (F Fᵀ)⁻¹`` (F has full row rank): one 512² solve, not an SVD."""
    import torch

    key = (params, str(device))
    if key not in _FILTERS:
        pad = _pad_factor(params)
        fb = mel_filterbank(params).astype(np.float64)
        bins = math.ceil((int(np.nonzero(fb.any(axis=0))[0].max()) + 1) / pad) * pad
        fb = fb[:, :bins]
        inverse = np.linalg.solve(fb @ fb.T, fb[:, ::pad]).T
        _FILTERS[key] = _Filters(
            torch.from_numpy(fb).float().to(device), torch.from_numpy(inverse).float().to(device), bins
        )
    return _FILTERS[key]


def _pad_factor(params: SpectrogramParams) -> int:
    if params.n_fft % params.win_length:
        raise ValueError(f"n_fft {params.n_fft} must be a multiple of the window length {params.win_length}")
    return params.n_fft // params.win_length


# -- audio → mel → image ---------------------------------------------------------------------------------------------
def _device(device: Any) -> Any:
    import torch

    return torch.device(device if device not in (None, "auto") else "cpu")


def mel_from_audio(audio: np.ndarray | Any, params: SpectrogramParams = RIFFUSION, *, device: Any = None) -> Any:
    """Mel magnitudes (n_mels, frames) of mono audio at ``params.sample_rate``: one frame per hop, centred.

    Returns a float32 torch tensor on ``device`` (numpy in → CPU unless told otherwise).
    """
    import torch

    wave = torch.as_tensor(np.asarray(audio, dtype=np.float32) if isinstance(audio, np.ndarray) else audio)
    wave = wave.to(_device(device) if device is not None else wave.device, torch.float32)
    window = torch.hann_window(params.win_length, device=wave.device)
    spec = torch.stft(
        wave,
        params.n_fft,
        params.hop_length,
        params.win_length,
        window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    bank = _filters(params, wave.device)
    return bank.filters @ spec[..., : bank.bins, :]


def image_from_mel(mel: np.ndarray | Any, params: SpectrogramParams = RIFFUSION) -> np.ndarray:
    """Riffusion's image: (n_mels, frames, 3) uint8, inverted power-curve values, low frequencies at the bottom.

    Scaled by the spectrogram's own maximum, as riffusion does (the level is not kept: audio is normalised anyway).
    """
    data = np.asarray(mel.detach().cpu() if hasattr(mel, "detach") else mel, dtype=np.float64)
    data = data / max(float(data.max()), 1e-12)
    data = 255.0 - 255.0 * np.power(data, params.power_for_image)
    pixels = data.astype(np.uint8)[::-1]  # truncation, like riffusion's astype(np.uint8)
    return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))


def image_from_audio(
    audio: np.ndarray, params: SpectrogramParams = RIFFUSION, *, columns: int | None = None, device: Any = None
) -> np.ndarray:
    """The image of mono audio, ``columns`` wide (default: one column per whole hop, ``len // hop``)."""
    mel = mel_from_audio(audio, params, device=device)
    columns = columns if columns is not None else len(audio) // params.hop_length
    return image_from_mel(mel[:, :columns], params)


def mel_from_image(
    image: np.ndarray | Any, params: SpectrogramParams = RIFFUSION, *, max_value: float | None = None
) -> np.ndarray:
    """Mel magnitudes (n_mels, columns) from an image (PIL, uint8 or float array in 0–255; riffusion reads red).

    Floats are taken as they are, so a pipeline's un-quantised output loses nothing to 8 bits.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 3:
        data = data[:, :, 0]
    if data.shape[0] != params.n_mels:
        raise ValueError(f"a spectrogram image is {params.n_mels} pixels high, not {data.shape[0]}")
    data = np.clip((255.0 - data[::-1]) / 255.0, 0.0, 1.0)
    return np.power(data, 1.0 / params.power_for_image) * (params.max_value if max_value is None else max_value)


# -- mel → audio -----------------------------------------------------------------------------------------------------
def linear_from_mel(mel: Any, params: SpectrogramParams = RIFFUSION) -> Any:
    """Linear magnitudes (bins, frames) on the *unpadded* grid (every ``n_fft / win``-th bin) behind ``mel``.

    The minimum-norm least-squares solution, clipped at 0: it reproduces the mel bands to ~0.1 % (so a slower
    non-negative fit would gain nothing measurable), and only the rows Griffin-Lim uses are computed.
    """
    return (_filters(params, mel.device).inverse @ mel).clamp_(min=0)


def work_rate(params: SpectrogramParams = RIFFUSION, *, headroom: float = 1.2) -> int:
    """The lowest sample rate at which hop and window stay whole numbers of samples and Nyquist ≥ headroom·f_max.

    Phase retrieval runs there: nothing above f_max is in the image, so the rest of the band is wasted work.
    (Riffusion: 24000 Hz — hop 240, window 2400 — against 44100.)
    """
    unit = math.gcd(params.hop_length, params.win_length)  # rate · p / unit keeps both whole
    best = params.sample_rate
    for p in range(1, unit + 1):
        rate = params.sample_rate * p / unit
        if rate.is_integer() and rate / 2 >= headroom * params.f_max:
            best = min(best, int(rate))
    return best


def griffin_lim(
    magnitude: Any,
    params: SpectrogramParams = RIFFUSION,
    *,
    n_iter: int = ITERATIONS,
    momentum: float = 0.99,
    length: int | None = None,
    seed: int = 0,
    rate: int | None = None,
    on_iteration: Any = None,
) -> Any:
    """Fast Griffin-Lim at the unpadded window size and a reduced rate; returns (samples,) at ``rate``.

    ``magnitude`` (bins, frames) is on the unpadded grid at ``params.sample_rate`` (10 Hz apart for riffusion), which
    stays the same grid at any rate with the same window duration: only the scale changes, by ``rate / sample_rate``.
    ``momentum`` 0 is plain Griffin-Lim; 0.99 is torchaudio's default (and riffusion's). ``length`` is in samples at
    ``params.sample_rate``.
    """
    import torch

    rate = rate or params.sample_rate
    scale = rate / params.sample_rate
    hop, n_fft = round(params.hop_length * scale), round(params.win_length * scale)
    device = magnitude.device
    frames = magnitude.shape[-1]
    length = length if length is not None else params.hop_length * frames
    length = math.ceil(length * scale)
    columns = length // hop + 1  # what a centred STFT of ``length`` samples has
    coarse = magnitude[: n_fft // 2 + 1] * scale
    if columns > frames:  # e.g. the frame centred on the last sample: hold the last column
        coarse = torch.cat([coarse, coarse[:, -1:].expand(-1, columns - frames)], dim=1)
    target = torch.zeros(n_fft // 2 + 1, columns, device=device)
    target[: coarse.shape[0]] = coarse[:, :columns]
    window = torch.hann_window(n_fft, device=device)
    generator = torch.Generator().manual_seed(seed)
    angles = torch.polar(torch.ones(target.shape), 2 * math.pi * torch.rand(target.shape, generator=generator))
    angles = angles.to(device)

    def istft(spec: Any) -> Any:
        return torch.istft(spec, n_fft, hop, n_fft, window, center=True, length=length)

    previous = None
    for i in range(n_iter):
        rebuilt = torch.stft(
            istft(target * angles), n_fft, hop, n_fft, window, center=True, pad_mode="reflect", return_complex=True
        )
        angles = rebuilt if previous is None or not momentum else rebuilt.sub(previous, alpha=momentum / (1 + momentum))
        angles = torch.sgn(angles)
        previous = rebuilt
        if on_iteration is not None:
            on_iteration(i + 1, n_iter)
    return istft(target * angles)


def _resample(audio: np.ndarray, rate: int, to_rate: int, length: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if rate != to_rate:
        g = math.gcd(rate, to_rate)
        audio = resample_poly(audio, to_rate // g, rate // g)
    if audio.shape[-1] < length:
        audio = np.pad(audio, (0, length - audio.shape[-1]))
    return audio[:length]


def audio_from_mel(
    mel: np.ndarray | Any,
    params: SpectrogramParams = RIFFUSION,
    *,
    n_iter: int = ITERATIONS,
    momentum: float = 0.99,
    length: int | None = None,
    device: Any = None,
    seed: int = 0,
    rate: int | None = None,
    on_iteration: Any = None,
) -> np.ndarray:
    """Mono float32 audio (``hop * columns`` samples unless ``length``) whose mel spectrogram is close to ``mel``."""
    import torch

    mel_t = torch.as_tensor(np.asarray(mel, dtype=np.float32) if isinstance(mel, np.ndarray) else mel)
    mel_t = mel_t.to(_device(device) if device is not None else mel_t.device, torch.float32)
    length = length if length is not None else params.hop_length * mel_t.shape[-1]
    rate = work_rate(params) if rate is None else rate
    with torch.inference_mode():
        linear = linear_from_mel(mel_t, params)
        audio = griffin_lim(
            linear,
            params,
            n_iter=n_iter,
            momentum=momentum,
            length=length,
            seed=seed,
            rate=rate,
            on_iteration=on_iteration,
        )
    return _resample(audio.cpu().numpy(), rate, params.sample_rate, length).astype(np.float32)


def audio_from_image(image: np.ndarray | Any, params: SpectrogramParams = RIFFUSION, **kwargs: Any) -> np.ndarray:
    """Audio from a riffusion image (see :func:`audio_from_mel` for the options)."""
    return audio_from_mel(mel_from_image(image, params), params, **kwargs)


def spectral_convergence(mel: np.ndarray | Any, audio: np.ndarray, params: SpectrogramParams = RIFFUSION) -> float:
    """``‖M − mel(audio)‖ / ‖M‖`` over the frames both cover: 0 is perfect, lower is better."""
    import torch

    target = torch.as_tensor(np.asarray(mel, dtype=np.float32) if isinstance(mel, np.ndarray) else mel).cpu()
    with torch.inference_mode():
        rebuilt = mel_from_audio(np.asarray(audio, dtype=np.float32), params)
    frames = min(target.shape[-1], rebuilt.shape[-1])
    target, rebuilt = target[:, :frames].double(), rebuilt[:, :frames].double()
    return float(torch.linalg.norm(target - rebuilt) / torch.linalg.norm(target))


def main(argv: list[str] | None = None) -> None:
    """``python -m runners.diffusion.spectrogram IN OUT``: a Riffusion image (.png/.jpg) → audio, or audio → image.

    Turns a Riffusion seed spectrogram into an audio file that ``audio_prompt`` accepts (img2img), and lets any
    audio be seen as the model sees it.
    """
    import argparse

    import soundfile
    from PIL import Image

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0] if main.__doc__ else None)
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    if args.source.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
        audio = audio_from_image(np.asarray(Image.open(args.source).convert("RGB")))
        peak = float(np.abs(audio).max()) or 1.0
        soundfile.write(args.target, audio * (10 ** (-1 / 20) / peak), RIFFUSION.sample_rate)
    else:
        audio, rate = soundfile.read(args.source, dtype="float32", always_2d=True)
        mono = _resample(
            audio.mean(axis=1), rate, RIFFUSION.sample_rate, round(len(audio) * RIFFUSION.sample_rate / rate)
        )
        Image.fromarray(image_from_audio(mono.astype(np.float32))).save(args.target)


if __name__ == "__main__":
    main()
