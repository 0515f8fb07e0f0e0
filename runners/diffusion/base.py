"""What the diffusers runners share: loading one pipeline, a seeded CPU generator, step hooks.

Loading follows every torch runner's rules (``runners.torch_support.TorchRunner``): ``local_files_only`` (only
``ttag models pull`` downloads), the spec's ``revision`` and the configured ``cache_dir``, the settings' device and
dtype, safetensors preferred, never remote code. Every pipeline runs one take at a time with a CPU ``torch.Generator``
seeded with the take's seed, so take k alone (seed + k) is the same audio on any device.
"""

from __future__ import annotations

import warnings
from typing import Any

from runners.contract import JobContext, RunnerError
from runners.torch_support import TorchRunner


class BadInput(RunnerError):
    """A request this checkpoint cannot do (said in words; the job fails, the worker goes on)."""

    kind = "invalid_request"


class DiffusersRunner(TorchRunner):
    """Base for runners around one diffusers pipeline class; subclasses implement ``generate``."""

    needs = "torch, transformers and diffusers"
    memory_hint = "a shorter duration, fewer takes or fewer steps"
    pipeline_class = "DiffusionPipeline"  # the diffusers class ``from_pretrained`` is called on
    pipe: Any = None

    # -- loading -------------------------------------------------------------------------------------------------
    def load(self, ctx: JobContext) -> None:
        import diffusers

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.pipe = self._load(getattr(diffusers, self.pipeline_class), self.local_files())
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self._loaded()

    def _load(self, pipeline_class: Any, source: dict[str, Any]) -> Any:
        """The pipeline from the spec's repo; subclasses add component overrides."""
        return pipeline_class.from_pretrained(self.checkpoint(), torch_dtype=self.dtype, use_safetensors=None, **source)

    def _loaded(self) -> None:
        """Hook: read what the checkpoint says (sample rate, limits) once it is loaded."""

    def unload(self) -> None:
        self.pipe = None
        super().unload()

    # -- generation helpers --------------------------------------------------------------------------------------
    def _require_loaded(self) -> Any:
        if self.pipe is None:
            raise RunnerError(f"{self.spec.id} is not loaded")
        return self.pipe

    def generator(self, seed: int) -> Any:
        """A CPU generator: diffusers draws on the CPU and moves the noise, so a seed means the same on any device."""
        return self.torch.Generator(device="cpu").manual_seed(seed)


def legacy_step_hook(ctx: JobContext, done: int, total: int) -> dict[str, Any]:
    """``callback``/``callback_steps`` for pipelines that only have the old hook (StableAudio, AudioLDM 2).

    Called after every step with (step, timestep, latents); ``ctx.progress`` raises ``Cancelled`` when the job is
    cancelled, which aborts the pipeline at once (nothing is decoded).
    """

    def callback(step: int, timestep: Any, latents: Any) -> None:
        ctx.progress("generating", min(done + step + 1, total), total)

    return {"callback": callback, "callback_steps": 1}


def fit(audio: Any, samples: int) -> Any:
    """Exactly ``samples`` long along the last axis: trim, or pad with silence."""
    import numpy as np

    if audio.shape[-1] >= samples:
        return audio[..., :samples]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, samples - audio.shape[-1])])
