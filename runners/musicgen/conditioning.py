"""Audio that conditions MusicGen: files to continue (``audio_prompt``) and melodies to follow (``melody``).

Files are read with soundfile and resampled with scipy's polyphase filter, so no torchaudio or librosa is needed.
The melody chroma is computed here, not by transformers' ``MusicgenMelodyFeatureExtractor``, because that class
requires torchaudio, which has no build for the torch ttag pins. It follows the extractor step for step (periodic
Hann STFT, "window"-normalised power spectrogram, chroma filter bank, one-hot argmax per frame) with plain torch ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runners.contract import RunnerError


class BadAudioInput(RunnerError):
    """An audio file given as a prompt or melody that cannot be used; the message says which and why."""

    kind = "invalid_request"


def load_audio(path: str, sample_rate: int, channels: int, *, what: str) -> np.ndarray:
    """Read ``path`` as float32 (channels, samples) at ``sample_rate``: resampled, mixed down or duplicated to fit."""
    import soundfile
    from scipy.signal import resample_poly

    name = Path(path).name
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError, RuntimeError or OSError
        raise BadAudioInput(f"cannot read the {what} file {name}: {exc}") from None
    if data.shape[0] == 0:
        raise BadAudioInput(f"the {what} file {name} has no audio in it")
    if not np.all(np.isfinite(data)):
        raise BadAudioInput(f"the {what} file {name} contains invalid samples (NaN or infinity)")
    audio = data.T  # (channels, samples)
    if rate != sample_rate:
        divisor = math.gcd(int(rate), int(sample_rate))
        audio = resample_poly(audio, sample_rate // divisor, int(rate) // divisor, axis=-1).astype(np.float32)
    if audio.shape[0] != channels:
        mono = audio.mean(axis=0, keepdims=True)
        audio = mono if channels == 1 else (audio[:2] if audio.shape[0] >= 2 else np.repeat(mono, 2, axis=0))
    return np.ascontiguousarray(audio, dtype=np.float32)


@dataclass(frozen=True)
class ChromaSettings:
    """The melody feature extractor's settings (``preprocessor_config.json``), facebook/musicgen-melody's defaults."""

    sampling_rate: int = 32000
    n_fft: int = 16384
    hop_length: int = 4096
    chunk_length: int = 30
    num_chroma: int = 12

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChromaSettings:
        return cls(**{k: int(data[k]) for k in cls.__dataclass_fields__ if k in data})


def melody_chroma(wave: np.ndarray, settings: ChromaSettings) -> Any:
    """One-hot chroma (1, frames, num_chroma) of a mono waveform at ``settings.sampling_rate``, as a torch tensor.

    Mirrors ``MusicgenMelodyFeatureExtractor``: the audio is cut to ``chunk_length`` seconds, padded to one FFT when
    shorter, and each frame keeps only its loudest pitch class.
    """
    import torch
    from transformers.audio_utils import chroma_filter_bank

    wave = wave.mean(axis=0) if wave.ndim == 2 else wave
    waveform = torch.from_numpy(np.ascontiguousarray(wave[: settings.chunk_length * settings.sampling_rate]))[None]
    if waveform.shape[-1] < settings.n_fft:
        pad = settings.n_fft - waveform.shape[-1]
        waveform = torch.nn.functional.pad(waveform, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(settings.n_fft)
    stft = torch.stft(
        waveform,
        settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = (stft / window.pow(2).sum().sqrt()).abs().pow(2)  # (1, freq, time)
    filters = torch.from_numpy(
        chroma_filter_bank(
            sampling_rate=settings.sampling_rate,
            num_frequency_bins=settings.n_fft,
            tuning=0,
            num_chroma=settings.num_chroma,
        )
    ).float()
    chroma = torch.einsum("cf,...ft->...ct", filters, spec)
    chroma = torch.nn.functional.normalize(chroma, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
    one_hot = torch.zeros_like(chroma)
    one_hot.scatter_(-1, chroma.argmax(-1, keepdim=True), 1.0)
    return one_hot


def melody_window(wave: np.ndarray, start_s: float, length_s: float, sample_rate: int) -> np.ndarray:
    """The part of a melody that a window starting at ``start_s`` follows; the melody loops when it is shorter."""
    n = wave.shape[-1]
    first = round(start_s * sample_rate)
    if first == 0 and n <= length_s * sample_rate:
        return wave
    index = np.arange(first, first + round(length_s * sample_rate))
    return np.take(wave, index, axis=-1, mode="wrap")
