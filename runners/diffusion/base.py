"""What the diffusers runners share: loading a pipeline from the hub cache, device and dtype, typed errors, step hooks.

Loading follows the MusicGen runner's rules: ``local_files_only`` (only ``ttag models pull`` downloads), the spec's
``revision`` and the configured ``cache_dir``, safetensors preferred, never remote code. Every pipeline runs one take
at a time with a CPU ``torch.Generator`` seeded with the take's seed, so take k alone (seed + k) is the same audio
on any device.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runners.contract import BaseRunner, JobContext, MissingDependency, MissingWeights, OutOfMemory, RunnerError
from runners.registry import human_size, install_hint
from runners.torch_support import device_and_dtype, free_memory, is_out_of_memory

if TYPE_CHECKING:
    from runners.request import GenerationRequest


class BadInput(RunnerError):
    """A request this checkpoint cannot do (said in words; the job fails, the worker goes on)."""

    kind = "invalid_request"


class DiffusersRunner(BaseRunner):
    """Base for runners around one diffusers pipeline class; subclasses implement ``generate``."""

    pipeline_class = "DiffusionPipeline"  # the diffusers class ``from_pretrained`` is called on
    pipe: Any = None

    # -- loading -------------------------------------------------------------------------------------------------
    def load_model(self, ctx: JobContext) -> None:
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise MissingDependency(
                f"{self.spec.id} needs torch, transformers and diffusers ({exc}): {install_hint('diffusion')}"
            ) from None
        missing = [m for m in self.spec.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependency(f"{self.spec.id} needs {', '.join(missing)}: {install_hint('diffusion')}")
        if self.settings.threads > 0:
            torch.set_num_threads(self.settings.threads)
        self.device, self.dtype = device_and_dtype(self.settings, torch)
        ctx.progress("loading", 0, 1)
        source = dict(revision=self.spec.revision, cache_dir=self.settings.cache_dir, local_files_only=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.pipe = self._load(getattr(diffusers, self.pipeline_class), source)
            self.pipe.to(self.device)
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValueError) and "valid local path" not in str(exc):
                raise
            self.unload()
            raise MissingWeights(
                f"{self.spec.id} is not downloaded (about {human_size(self.spec.size_bytes)}): "
                f"run `ttag models pull {self.spec.id}` ({str(exc).splitlines()[0]})"
            ) from None
        except Exception as exc:
            if is_out_of_memory(exc):
                self.unload()
                raise OutOfMemory(f"not enough memory to load {self.spec.id}: try a smaller model") from None
            raise
        self.pipe.set_progress_bar_config(disable=True)
        self._loaded()
        ctx.progress("loading", 1, 1)

    def _load(self, pipeline_class: Any, source: dict[str, Any]) -> Any:
        """The pipeline from the spec's repo; subclasses add component overrides."""
        return pipeline_class.from_pretrained(
            self.spec.hub_repo, torch_dtype=self.dtype, use_safetensors=None, **source
        )

    def _loaded(self) -> None:
        """Hook: read what the checkpoint says (sample rate, limits) once it is loaded."""

    def unload(self) -> None:
        self.pipe = None
        free_memory()

    # -- generation helpers --------------------------------------------------------------------------------------
    def _require_loaded(self) -> Any:
        if self.pipe is None:
            raise RunnerError(f"{self.spec.id} is not loaded")
        return self.pipe

    def generator(self, seed: int) -> Any:
        """A CPU generator: diffusers draws on the CPU and moves the noise, so a seed means the same on any device."""
        import torch

        return torch.Generator(device="cpu").manual_seed(seed)

    def guarded(self, request: GenerationRequest, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``run(*args, **kwargs)``; out-of-memory becomes a typed error and leaves the runner usable."""
        try:
            return run(*args, **kwargs)
        except Exception as exc:
            if is_out_of_memory(exc):
                gc.collect()
                torch = sys.modules.get("torch")
                if torch is not None and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                raise OutOfMemory(
                    f"out of memory generating {request.duration:g} s with {self.spec.id}: "
                    "try a shorter duration, fewer takes or fewer steps"
                ) from None
            raise


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
