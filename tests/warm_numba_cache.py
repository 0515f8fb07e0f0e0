"""Compile librosa's numba kernels into numba's cache in this environment, once, when `make` installs the test tools.

librosa compiles its ``guvectorize`` kernels when its modules are first imported and its ``jit`` ones on first call,
caching both next to its sources. Left to the tests, a fresh environment had every worker that measures audio compile
the same kernels at the same time (25 s of CPU each on this 2-core box); afterwards each import reads the cache.
The calls are the ones the tests make.
"""

from __future__ import annotations

import librosa
import numpy as np


def main() -> None:
    y = np.random.default_rng(0).standard_normal(22050 * 3).astype(np.float32)
    onsets = librosa.onset.onset_strength(y=y, sr=22050, hop_length=512)
    librosa.feature.tempo(onset_envelope=onsets, sr=22050, hop_length=512)
    librosa.feature.chroma_cqt(y=librosa.effects.harmonic(y), sr=22050, fmin=130.81, n_octaves=5)
    librosa.griffinlim(np.abs(librosa.stft(y, n_fft=1024)), n_iter=2, n_fft=1024)
    librosa.resample(y, orig_sr=22050, target_sr=11025)


if __name__ == "__main__":
    main()
