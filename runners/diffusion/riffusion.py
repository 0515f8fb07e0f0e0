"""Riffusion through diffusers: Stable Diffusion paints a mel spectrogram, ``spectrogram.py`` turns it into audio.

A take is a *piece* of one or more 5.12 s clips (512 image columns of 10 ms; ``clip_columns`` in the spec), each
overlapping the next by ``crossfade_s`` and joined with an equal-power crossfade. Riffusion's riff: every clip sits
at a point ``alpha`` between a *start* (the prompt, the take's seed) and an *end* (``end_prompt`` or the prompt
again, the seed + 1). A clip at alpha uses

- text embeddings ``(1-α)·start + α·end`` (negative prompt shared),
- starting noise ``slerp(α, noise(start seed), noise(end seed))``,
- with an audio prompt (img2img): that audio's spectrogram image under the clip, encoded by the VAE with each seed's
  generator and lerped, noised to ``strength`` with the slerped noise.

The piece walks alpha from the request's ``alpha`` to 1 over its clips, so consecutive clips are close neighbours and
flow into each other; a single clip sits at ``alpha`` itself. At alpha 0 (or 1) every blend returns its start (or
end) exactly, so such a clip *is* the single-prompt result, which is also what diffusers' own
``StableDiffusionPipeline`` / ``StableDiffusionImg2ImgPipeline`` make from the same prompt, image and seed (the
noise is drawn from the seeded CPU generator in the same order as they draw it).

The image is read as floats (no 8-bit rounding), its red channel as Riffusion reads it, and the take is normalised
to -1 dBFS peak at the end (Riffusion normalises too; the image's scale is arbitrary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from runners.contract import Clip, JobContext
from runners.diffusion.base import BadInput, DiffusersRunner, fit
from runners.diffusion.spectrogram import ITERATIONS, RIFFUSION, SpectrogramParams, audio_from_image, image_from_audio

if TYPE_CHECKING:
    from runners.request import GenerationRequest

PEAK = 10 ** (-1 / 20)  # -1 dBFS


@dataclass(frozen=True)
class ClipPlan:
    """One clip of a piece: where it starts (samples) and where it sits between start and end (alpha)."""

    index: int
    start: int
    alpha: float


def plan_piece(total: int, clip: int, overlap: int, alpha: float) -> list[ClipPlan]:
    """Clips of ``clip`` samples overlapping by ``overlap`` that cover ``total``; alpha walks to 1 across them."""
    count = 1 if total <= clip else math.ceil((total - overlap) / (clip - overlap))
    alphas = [alpha] if count == 1 else [alpha + (1.0 - alpha) * i / (count - 1) for i in range(count)]
    return [ClipPlan(i, i * (clip - overlap), a) for i, a in enumerate(alphas)]


def lerp(t: float, a: Any, b: Any) -> Any:
    """``(1-t)·a + t·b``, which is exactly ``a`` at 0 and exactly ``b`` at 1."""
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    return (1.0 - t) * a + t * b


def slerp(t: float, a: Any, b: Any, dot_threshold: float = 0.9995) -> Any:
    """Spherical interpolation of two noise tensors (keeps the noise's norm, as Riffusion does); exact at 0 and 1."""
    import torch

    if t == 0.0:
        return a
    if t == 1.0:
        return b
    a64, b64 = a.double(), b.double()
    dot = float((a64 * b64).sum() / (torch.linalg.norm(a64) * torch.linalg.norm(b64)))
    if abs(dot) > dot_threshold:
        return lerp(t, a, b)
    theta = math.acos(dot)
    mixed = (math.sin((1 - t) * theta) * a64 + math.sin(t * theta) * b64) / math.sin(theta)
    return mixed.to(a.dtype)


def join(pieces: list[np.ndarray], plans: list[ClipPlan], overlap: int, total: int) -> np.ndarray:
    """Overlap-add the clips with equal-power (sine/cosine) fades across each overlap; exactly ``total`` samples."""
    length = max(p.start + len(a) for p, a in zip(plans, pieces, strict=True))
    out = np.zeros(max(length, total), np.float64)
    ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) if overlap else np.zeros(0)
    for plan, audio in zip(plans, pieces, strict=True):
        audio = audio.astype(np.float64)
        if plan.index > 0 and overlap:
            audio[:overlap] *= ramp
        if plan.index < len(plans) - 1 and overlap:
            audio[-overlap:] *= ramp[::-1]
        out[plan.start : plan.start + len(audio)] += audio
    return out[:total]


def normalise(audio: np.ndarray, peak: float = PEAK) -> np.ndarray:
    top = float(np.abs(audio).max()) if audio.size else 0.0
    return (audio * (peak / top) if top > 0 else audio).astype(np.float32)


def load_mono(path: str, sample_rate: int) -> np.ndarray:
    """An audio file as mono float at ``sample_rate`` (channels averaged, polyphase resampling)."""
    import soundfile
    from scipy.signal import resample_poly

    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as exc:
        raise BadInput(f"cannot read the audio prompt {path} ({exc})") from None
    if audio.shape[0] == 0:
        raise BadInput(f"the audio prompt {path} has no audio in it")
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        g = math.gcd(int(rate), sample_rate)
        mono = resample_poly(mono, sample_rate // g, int(rate) // g).astype(np.float32)
    return mono


@lru_cache(maxsize=1)
def _img2img_class() -> type:
    """diffusers' img2img pipeline whose starting noise can be given (the slerp of two seeds' noise)."""
    # from its own module: the package's lazy top-level name is typed as the dummy stand-in class
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import StableDiffusionImg2ImgPipeline

    class RiffusionImg2Img(StableDiffusionImg2ImgPipeline):
        noise: Any = None  # when set: the noise to add to ``image`` (already-encoded latents), instead of drawing it

        def prepare_latents(
            self,
            image: Any,
            timestep: Any,
            batch_size: int,
            num_images_per_prompt: int,
            dtype: Any,
            device: Any,
            generator: Any = None,
        ) -> Any:
            if self.noise is None:
                return super().prepare_latents(
                    image, timestep, batch_size, num_images_per_prompt, dtype, device, generator
                )
            latents = image.to(device=device, dtype=dtype)
            return self.scheduler.add_noise(latents, self.noise.to(device=device, dtype=dtype), timestep)

    return RiffusionImg2Img


@dataclass(frozen=True)
class _Ends:
    """What a riff blends between: each end's text embeddings, and the negative prompt's."""

    start: Any
    end: Any
    negative: Any


class RiffusionRunner(DiffusersRunner):
    name = "riffusion"
    version = "1"
    pipeline_class = "StableDiffusionPipeline"
    img2img: Any = None
    params: SpectrogramParams = RIFFUSION

    def _load(self, pipeline_class: Any, source: dict[str, Any]) -> Any:
        # Spectrograms need no NSFW filter; skipping it also skips downloading and loading its 1.2 GB.
        return pipeline_class.from_pretrained(
            self.checkpoint(),
            torch_dtype=self.dtype,
            use_safetensors=None,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **source,
        )

    def _loaded(self) -> None:
        components = {k: v for k, v in self.pipe.components.items() if k != "requires_safety_checker"}
        self.img2img = _img2img_class()(**components, requires_safety_checker=False)
        self.img2img.set_progress_bar_config(disable=True)
        self.columns = int(self.spec.extra.get("clip_columns", 512))
        self.clip_samples = self.columns * self.params.hop_length
        self.overlap = round(float(self.spec.extra.get("crossfade_s", 0.2)) * self.params.sample_rate)
        self.overlap = min(self.overlap, self.clip_samples // 2)
        self.gl_iters = int(self.spec.extra.get("griffin_lim_iters", ITERATIONS))
        self.sample_rate = self.params.sample_rate

    def unload(self) -> None:
        self.img2img = None
        super().unload()

    # -- the contract --------------------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        self._require_loaded()
        total = round(self.seconds(request) * self.sample_rate)
        plans = plan_piece(total, self.clip_samples, self.overlap, float(request.alpha or 0.0))
        steps = int(request.steps or 50)
        strength = float(request.strength if request.strength is not None else 0.75)
        init = None
        if request.audio_prompt:
            init = load_mono(request.audio_prompt, self.sample_rate)
            init = np.resize(init, plans[-1].start + self.clip_samples)  # loop it under the whole piece
            steps_per_clip = min(int(steps * strength), steps)
            if steps_per_clip < 1:
                raise BadInput(f"{steps} steps at strength {strength:g} leave no denoising step: raise either")
        else:
            steps_per_clip = steps
        with self.generating(request):
            ends = self._embeddings(request)
        total_steps = request.takes * len(plans) * steps_per_clip
        clips = []
        for take in range(request.takes):
            seeds = (request.take_seed(take), (request.take_seed(take) + 1) % 2**32)
            images = []
            for plan in plans:
                done = (take * len(plans) + plan.index) * steps_per_clip
                window = None if init is None else init[plan.start : plan.start + self.clip_samples]
                with self.generating(request):
                    image = self.paint(
                        request,
                        ends,
                        seeds,
                        plan.alpha,
                        window,
                        steps,
                        strength,
                        ctx,
                        done,
                        steps_per_clip,
                        total_steps,
                    )
                images.append(image)
            pieces = [self._decode(image, i, len(images), ctx) for i, image in enumerate(images)]
            audio = normalise(join(pieces, plans, self.overlap, total))
            clips.append(self.make_clip(request, take, audio, self.sample_rate))
        return clips

    # -- one clip ------------------------------------------------------------------------------------------------
    def _embeddings(self, request: GenerationRequest) -> _Ends:
        guidance = float(request.guidance if request.guidance is not None else 7.0)
        cfg = guidance > 1.0
        negative = request.negative_prompt or None
        start, neg = self.pipe.encode_prompt(request.prompt, self.device, 1, cfg, negative)
        end = start
        if request.end_prompt and request.end_prompt != request.prompt:
            end, _ = self.pipe.encode_prompt(request.end_prompt, self.device, 1, cfg, negative)
        return _Ends(start, end, neg)

    def paint(
        self,
        request: GenerationRequest,
        ends: _Ends,
        seeds: tuple[int, int],
        alpha: float,
        window: np.ndarray | None,
        steps: int,
        strength: float,
        ctx: JobContext,
        done: int,
        steps_per_clip: int,
        total: int,
    ) -> np.ndarray:
        """One spectrogram image (H, W, 3) in 0–255 floats, at ``alpha`` between the two ends."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        guidance = float(request.guidance if request.guidance is not None else 7.0)
        generators = [self.generator(seed) for seed in seeds]
        embeds = lerp(alpha, ends.start, ends.end)

        def on_step(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            ctx.progress("generating", done + round((i + 1) * steps_per_clip / max(pipe.num_timesteps, 1)), total)
            return kwargs

        common = dict(
            prompt_embeds=embeds,
            negative_prompt_embeds=ends.negative,
            num_inference_steps=steps,
            guidance_scale=guidance,
            output_type="np",
            callback_on_step_end=on_step,
        )
        # the generator that goes on to the scheduler (stochastic schedulers only): the nearer end's
        generator = generators[0] if alpha < 0.5 else generators[1]
        with torch.inference_mode():
            if window is None:
                height, width = self.params.n_mels, self.columns
                shape = (
                    1,
                    self.pipe.unet.config.in_channels,
                    height // self.pipe.vae_scale_factor,
                    width // self.pipe.vae_scale_factor,
                )
                noises = [
                    randn_tensor(shape, generator=g, device=torch.device(self.device), dtype=embeds.dtype)
                    for g in generators
                ]
                image = self.pipe(
                    **common, latents=slerp(alpha, *noises), height=height, width=width, generator=generator
                ).images[0]
            else:
                image = self._img2img(window, generators, alpha, strength, embeds.dtype, common, generator)
        return np.asarray(image, dtype=np.float32) * 255.0

    def _img2img(
        self,
        window: np.ndarray,
        generators: list[Any],
        alpha: float,
        strength: float,
        dtype: Any,
        common: dict[str, Any],
        generator: Any,
    ) -> Any:
        """Encode the window's spectrogram with each end's generator, then denoise from the blend (img2img)."""
        import torch
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
        from diffusers.utils.torch_utils import randn_tensor
        from PIL import Image

        pipe = self.img2img
        picture = Image.fromarray(image_from_audio(window, self.params, columns=self.columns))
        pixels = pipe.image_processor.preprocess(picture).to(device=self.device, dtype=dtype)
        latents, noises = [], []
        for g in generators:  # the order diffusers' img2img draws in: the VAE sample, then the noise
            encoded = retrieve_latents(pipe.vae.encode(pixels), generator=g) * pipe.vae.config.scaling_factor
            latents.append(encoded)
            noises.append(randn_tensor(encoded.shape, generator=g, device=torch.device(self.device), dtype=dtype))
        pipe.noise = slerp(alpha, *noises)
        try:
            return pipe(**common, image=lerp(alpha, *latents), strength=strength, generator=generator).images[0]
        finally:
            pipe.noise = None

    def _decode(self, image: np.ndarray, index: int, count: int, ctx: JobContext) -> np.ndarray:
        """Image → clip audio with fast Griffin-Lim on the model's device; progress per iteration."""
        n_iter = self.gl_iters

        def on_iteration(i: int, n: int) -> None:
            ctx.progress("decoding", index * n_iter + i, count * n_iter)

        audio = audio_from_image(image, self.params, n_iter=n_iter, device=self.device, on_iteration=on_iteration)
        return fit(audio, self.clip_samples)
