"""AudioLDM 2 through diffusers' ``AudioLDM2Pipeline``: text → 16 kHz mono sound and music.

CLAP and Flan-T5 encode the prompt, GPT-2 turns that into the "language of audio" the UNet is conditioned on, the
VAE decodes a mel spectrogram and HiFi-GAN makes the waveform; the pipeline trims it to the duration asked for.
Takes are generated one at a time (``num_waveforms_per_prompt=1``): with more, the pipeline would rank them with
CLAP instead of keeping them in seed order. Only the old ``callback`` hook exists; raising from it cancels.

Some AudioLDM 2 repos save the language model as a bare ``GPT2Model``, which cannot ``generate`` under transformers
5 (``_update_model_kwargs_for_generation`` is missing); the runner then loads the same weights as
``GPT2LMHeadModel``, the class the pipeline is written for.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from runners.contract import Clip, JobContext
from runners.diffusion.base import DiffusersRunner, fit, legacy_step_hook

if TYPE_CHECKING:
    from runners.request import GenerationRequest


class AudioLDM2Runner(DiffusersRunner):
    name = "audioldm2"
    version = "1"
    pipeline_class = "AudioLDM2Pipeline"

    def _load(self, pipeline_class: Any, source: dict[str, Any]) -> Any:
        index = pipeline_class.load_config(self.checkpoint(), **source)
        overrides: dict[str, Any] = {}
        if list(index.get("language_model", ())) == ["transformers", "GPT2Model"]:
            from transformers import GPT2LMHeadModel

            overrides["language_model"] = GPT2LMHeadModel.from_pretrained(
                self.checkpoint(), subfolder="language_model", dtype=self.dtype, **source
            )
        return pipeline_class.from_pretrained(
            self.checkpoint(), torch_dtype=self.dtype, use_safetensors=None, **overrides, **source
        )

    def _loaded(self) -> None:
        self.sample_rate = int(self.pipe.vocoder.config.sampling_rate)

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        pipe = self._require_loaded()
        seconds = self.seconds(request)
        samples = round(seconds * self.sample_rate)
        steps = int(request.steps or 200)
        total = request.takes * steps
        clips = []
        for take in range(request.takes):
            kwargs: dict[str, Any] = dict(
                audio_length_in_s=seconds,
                num_inference_steps=steps,
                guidance_scale=float(request.guidance if request.guidance is not None else 3.5),
                negative_prompt=request.negative_prompt or None,
                num_waveforms_per_prompt=1,
                generator=self.generator(request.take_seed(take)),
                output_type="np",
                **legacy_step_hook(ctx, take * steps, total),
            )
            with self.generating(request), warnings.catch_warnings():
                # diffusers' GPT-2 call uses past_key_values, deprecated in transformers 5
                warnings.filterwarnings("ignore", "`past_key_values` is deprecated", FutureWarning)
                audio = pipe(request.prompt, **kwargs).audios[0]
            ctx.progress("decoding", 1, 1)
            clips.append(self.make_clip(request, take, fit(np.asarray(audio, np.float32), samples), self.sample_rate))
        return clips
