"""Riffusion spectrogram → audio: ttag's converter against librosa's route, side by side on the same images.

Input: 5.12 s clips (512 image columns) of the built-in synth's music, turned into Riffusion images (8-bit, the real
convention), then back into mel spectrograms — the exact input a Riffusion image gives the converter.

Routes, each on the same mel spectrogram:
- librosa: mel pseudo-inverse (np.linalg.pinv of the filter bank, computed once and not timed), clip at 0, then
  ``librosa.griffinlim`` at n_fft 17640 for 32 iterations — plain (momentum 0) and fast (momentum 0.99, the default
  of torchaudio's GriffinLim that Riffusion uses). ``librosa.feature.inverse.mel_to_audio`` itself is not run: at
  n_fft 17640 it tries to allocate ~155 GiB.
- ttag: ``runners.diffusion.spectrogram.audio_from_mel`` (pseudo-inverse rows on the unpadded grid, fast Griffin-Lim
  in torch at 24 kHz) for several iteration counts, and at the full 44.1 kHz to show what the reduced rate buys.

Quality: spectral convergence ``‖M − mel(audio)‖ / ‖M‖`` against the input mel spectrogram (lower is better).
Time: median of ``--repeat`` runs for ttag, one run for librosa (it takes seconds). One thread unless told.

Run: ``.venv/bin/python bench/bench_spectrogram.py [--device cuda] [--threads N] [--quick]``
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from runners.contract import JobContext
from runners.diffusion import spectrogram as S
from runners.registry import default_registry
from runners.request import validate_request

PROMPTS = (
    "lofi hip hop with piano and drums, 85 bpm",
    "fast techno with drums and bass, 130 bpm",
    "ambient pad with strings and rain",
)
SECONDS = 512 * S.RIFFUSION.hop_length / S.RIFFUSION.sample_rate  # one Riffusion clip: 5.12 s


def clips() -> list[tuple[str, np.ndarray]]:
    """Each prompt's 5.12 s of synth music as a mel spectrogram read back from its 8-bit Riffusion image."""
    from runners.synth.runner import SynthRunner

    registry = default_registry()
    runner = SynthRunner(registry.get("synth"))
    runner.load_model(JobContext())
    out = []
    for seed, prompt in enumerate(PROMPTS):
        request = validate_request(
            {"prompt": prompt, "model": "synth", "duration": SECONDS, "seed": seed + 1}, registry
        )
        audio = runner.generate(request, JobContext())[0].audio.mean(axis=0)
        out.append((prompt, S.mel_from_image(S.image_from_audio(audio, columns=512))))
    return out


def timed(fn: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    assert result is not None
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one clip, no momentum librosa run")
    args = parser.parse_args()

    import librosa
    import torch

    torch.set_num_threads(args.threads)
    params = S.RIFFUSION
    inputs = clips()[:1] if args.quick else clips()
    bank = S.mel_filterbank(params).astype(np.float64)
    started = time.perf_counter()
    pinv = np.linalg.pinv(bank)
    pinv_s = time.perf_counter() - started

    def librosa_route(mel: np.ndarray, momentum: float) -> np.ndarray:
        linear = np.maximum(pinv @ mel.astype(np.float64), 0)
        return librosa.griffinlim(
            linear,
            n_iter=32,
            hop_length=params.hop_length,
            win_length=params.win_length,
            n_fft=params.n_fft,
            momentum=momentum,
            init="random",
            random_state=0,
        )

    def ttag_route(mel: np.ndarray, n_iter: int, rate: int | None = None) -> np.ndarray:
        out = S.audio_from_mel(mel, params, n_iter=n_iter, rate=rate, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    S.audio_from_mel(inputs[0][1], params, n_iter=1, device=args.device)  # warm-up: filters, FFT plans, CUDA
    routes: list[tuple[str, Callable[[np.ndarray], np.ndarray], int]] = [
        ("librosa: pinv + Griffin-Lim, 32 plain iterations, n_fft 17640", lambda m: librosa_route(m, 0.0), 1),
    ]
    if not args.quick:
        routes.append(
            ("librosa: pinv + Griffin-Lim, 32 iterations, momentum 0.99", lambda m: librosa_route(m, 0.99), 1)
        )
    for n_iter in (16, 24, 32, 48, 64):
        routes.append(
            (
                f"ttag: fast Griffin-Lim, {n_iter} iterations at 24 kHz{' (default)' * (n_iter == S.ITERATIONS)}",
                lambda m, n=n_iter: ttag_route(m, n),
                args.repeat,
            )
        )
    routes.append(
        ("ttag: fast Griffin-Lim, 32 iterations at 44.1 kHz", lambda m: ttag_route(m, 32, 44100), args.repeat)
    )

    print(
        f"device {args.device}, {args.threads} thread(s), {len(inputs)} clip(s) of {SECONDS:.2f} s; "
        f"librosa's pinv of the filter bank (once, not in the times): {pinv_s:.2f} s\n"
    )
    print("| route | time per 5.12 s clip | spectral convergence (per clip) | mean |")
    print("|---|---|---|---|")
    for name, fn, repeat in routes:
        times, scs = [], []
        for _, mel in inputs:
            seconds, audio = timed(lambda fn=fn, mel=mel: fn(mel), repeat)
            times.append(seconds)
            scs.append(S.spectral_convergence(mel, audio, params))
        per_clip = " / ".join(f"{sc:.4f}" for sc in scs)
        print(f"| {name} | {statistics.mean(times):.3f} s | {per_clip} | **{statistics.mean(scs):.4f}** |", flush=True)
    print("\nclips:", "; ".join(prompt for prompt, _ in inputs))


if __name__ == "__main__":
    main()
