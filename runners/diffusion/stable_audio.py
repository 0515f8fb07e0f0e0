"""Stable Audio Open through diffusers' ``StableAudioPipeline``: text → stereo 44.1 kHz, up to ~47 s.

The model is conditioned on timing (``seconds_start``, ``seconds_total``): ttag asks for the take from 0 to its
duration, and the pipeline trims its fixed ~47 s window to that. Only the old ``callback``/``callback_steps`` hook
exists here; it reports every step and raising from it (``ctx.progress`` on cancel) aborts the pipeline. The
scheduler (``CosineDPMSolverMultistepScheduler``) is an SDE solver: its Brownian noise comes from ``torchsde``,
seeded from the take's generator, so a seed still gives the same audio.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from runners.contract import Clip, JobContext
from runners.diffusion.base import BadInput, DiffusersRunner, fit, legacy_step_hook

if TYPE_CHECKING:
    from runners.request import GenerationRequest


class StableAudioRunner(DiffusersRunner):
    name = "stable_audio"
    version = "1"
    pipeline_class = "StableAudioPipeline"

    def _loaded(self) -> None:
        vae = self.pipe.vae
        self.sample_rate = int(vae.config.sampling_rate)
        self.channels = int(vae.config.audio_channels)
        # the window the transformer denoises, in seconds: the longest take this checkpoint can make
        self.max_seconds = self.pipe.transformer.config.sample_size * vae.hop_length / self.sample_rate

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        pipe = self._require_loaded()
        seconds = self.seconds(request)
        if seconds > self.max_seconds + 1e-9:
            raise BadInput(f"{self.spec.id} makes at most {self.max_seconds:.2f} s (asked for {seconds:g} s)")
        samples = round(seconds * self.sample_rate)
        steps = int(request.steps or 100)
        total = request.takes * steps
        clips = []
        for take in range(request.takes):
            kwargs: dict[str, Any] = dict(
                negative_prompt=request.negative_prompt or None,
                audio_start_in_s=0.0,
                audio_end_in_s=seconds,
                num_inference_steps=steps,
                guidance_scale=float(request.guidance or 7.0),
                generator=self.generator(request.take_seed(take)),
                output_type="np",
                **legacy_step_hook(ctx, take * steps, total),
            )
            with self.generating(request), warnings.catch_warnings():
                warnings.filterwarnings("ignore", module="torchsde")  # float round-off at the interval's ends
                audio = pipe(request.prompt, **kwargs).audios[0]
            ctx.progress("decoding", 1, 1)
            clips.append(self.make_clip(request, take, fit(np.asarray(audio, np.float32), samples), self.sample_rate))
        return clips
