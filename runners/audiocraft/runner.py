"""AudioCraft 1.3.0 (AudioGen, MAGNeT, MusicGen, MultiBand Diffusion) in its own environment's worker.

A take is one call of audiocraft's public API — ``generate``, ``generate_continuation`` (``audio_prompt``) or
``generate_with_chroma`` (``melody``) — after ``torch.manual_seed(take_seed)``, so it equals what a script calling
audiocraft with that seed gets. Around that call:

* **Long clips.** audiocraft's own loop extends a clip past the model's window: each new window is prompted with the
  last ``context_s`` seconds of tokens (``extend_stride = window - context``). MAGNeT has a fixed length and no loop
  of its own, so it gets the same loop by setting ``duration`` and ``extend_stride``, always in whole windows (then
  trimmed): MAGNeT was trained on full windows only.
* **Progress and cancel.** ``set_custom_progress_callback`` (which audiocraft only calls with ``progress=True``)
  reports steps; ``ctx.progress`` raises :class:`Cancelled` from inside it, which unwinds audiocraft's loop.
* **Streaming.** ``model.lm.generate`` is wrapped for the call: each finished window's tokens are final, so the
  tokens so far are decoded and the audio up to ``STREAM_MARGIN_FRAMES`` before their end is handed out (the
  decoder's look-ahead never reaches back that far). MultiBand Diffusion decodes with noise, so it streams whole takes.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from runners.audiocraft import offline
from runners.contract import AudioChunk, Clip, JobContext, RunnerError
from runners.torch_support import Emit, TorchRunner

if TYPE_CHECKING:
    from runners.request import GenerationRequest

offline.set_offline_environment()  # before anything imports huggingface_hub: a worker never downloads

STREAM_MARGIN_FRAMES = 8  # frames held back at the end of a streamed window until the next one exists

Sink = Callable[[np.ndarray, bool], None]  # (audio of the take so far [C, S], final?)


class BadAudioInput(RunnerError):
    kind = "invalid_request"


@dataclass(frozen=True)
class _Inputs:
    prompt: Any  # torch tensor [C, T] or None
    melody: Any
    sample_rates: tuple[int, int]  # of prompt, of melody


@dataclass
class _Windows:
    """A take's progress through its windows: how many are done, their tokens, and the steps they took."""

    window: int = 0
    tokens: Any = None  # torch tensor [1, K, frames] of the windows so far
    before: int = 0  # steps of the finished windows
    last_total: int = 0  # steps of the current window, as audiocraft last reported them


class AudioCraftRunner(TorchRunner):
    name = "audiocraft"
    version = "1"
    needs = "audiocraft"

    model: Any = None
    mbd: Any = None

    # -- loading -------------------------------------------------------------------------------------------------
    def load(self, ctx: JobContext) -> None:
        models = importlib.import_module("audiocraft.models")  # ~5-10 s: torch, xformers, spaCy, librosa
        from audiocraft.modules.transformer import set_efficient_attention_backend

        offline.apply()
        extra = self.spec.extra
        self.family = extra.get("family", "musicgen")
        ctx.check_cancelled()
        self._check_weights()
        set_efficient_attention_backend("torch")  # the MAGNeT loader switches it to xformers for the whole process
        self.model = self._build(models)
        self._set_precision(self.model)
        if extra.get("decoder") == "mbd":
            self.mbd = models.MultiBandDiffusion.get_mbd_musicgen(device=self.device)
        model = self.model
        self.window = min(float(model.max_duration), float(extra.get("window_s") or model.max_duration))
        model.max_duration = self.window
        self.context = min(float(extra.get("context_s") or self.window / 2), self.window * 0.9)
        self.sample_rate = int(model.sample_rate)
        self.frame_rate = float(model.frame_rate)
        self.hop = round(self.sample_rate / self.frame_rate)

    def _build(self, models: Any) -> Any:
        factory = self.spec.extra.get("factory")  # "module:function(device)": a model built in code (tests)
        if factory:
            module, _, function = factory.partition(":")
            return getattr(importlib.import_module(module), function)(self.device)
        self.torch.manual_seed(0)  # models with random parts (audiocraft's debug models) equal in every process
        classes = {"musicgen": models.MusicGen, "audiogen": models.AudioGen, "magnet": models.MAGNeT}
        if self.family not in classes:
            raise RunnerError(f"{self.spec.id}: unknown audiocraft family {self.family!r}")
        return classes[self.family].get_pretrained(self.spec.extra.get("name") or self.checkpoint(), device=self.device)

    def _set_precision(self, model: Any) -> None:
        """The language model in ``self.dtype``. audiocraft chooses by itself: float16 weights under float16 autocast
        on any GPU, float32 on the CPU; when the settings (or ttag's rule, float32 on MPS) differ, the LM's weights
        are cast and its autocast replaced. The codec and MultiBand Diffusion stay float32, as audiocraft keeps them."""
        from audiocraft.utils.autocast import TorchAutocast

        torch = self.torch
        device_type = torch.device(self.device).type
        if self.dtype == (torch.float32 if device_type == "cpu" else torch.float16):
            return  # audiocraft's own choice: leave the model exactly as a script calling audiocraft gets it
        model.lm.to(self.dtype)
        model.autocast = TorchAutocast(enabled=self.dtype != torch.float32, device_type=device_type, dtype=self.dtype)

    # -- weights -------------------------------------------------------------------------------------------------
    def _needed_files(self) -> list[tuple[str, tuple[str, ...]]]:
        """(repo, files) the model loads from the hub cache (from its spec); nothing for models built in code."""
        if self.spec.extra.get("factory"):
            return []
        return list(self.spec.extra.get("hub_files", {}).items())

    def _check_weights(self) -> None:
        from huggingface_hub import try_to_load_from_cache

        cache = self._cache_dir()
        missing = [
            repo
            for repo, files in self._needed_files()
            if not all(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache), str) for f in files)
        ]
        if missing:
            raise self.missing_weights(detail=f"{', '.join(missing)} missing")

    def _cache_dir(self) -> str | None:
        import os

        return self.settings.cache_dir or os.environ.get("AUDIOCRAFT_CACHE_DIR") or None

    def unload(self) -> None:
        self.model = None
        self.mbd = None
        super().unload()

    # -- the contract --------------------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        return list(self.takes(request, ctx))

    def takes(self, request: GenerationRequest, ctx: JobContext) -> Iterator[Clip]:
        inputs = self._inputs(request)
        for take in range(request.takes):
            yield self.make_clip(request, take, self._take(request, take, inputs, ctx), self.sample_rate)

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        """Each window's audio while the next one is being generated (generation on the base's streaming thread)."""
        inputs = self._inputs(request)

        def produce(thread_ctx: JobContext, emit: Emit) -> None:
            for take in range(request.takes):
                self._take(request, take, inputs, thread_ctx, self._chunk_sink(take, emit))

        return self.stream_from_thread(produce, ctx)

    def _chunk_sink(self, take: int, emit: Emit) -> Sink:
        """Hands out a take's new audio as chunks; all but the last window's keep back what the next may change."""
        emitted = 0

        def sink(audio: np.ndarray, final: bool) -> None:
            nonlocal emitted
            end = audio.shape[1] if final else audio.shape[1] - STREAM_MARGIN_FRAMES * self.hop
            if end > emitted:
                chunk = np.ascontiguousarray(audio[:, emitted:end])
                emit(AudioChunk(take, emitted, chunk, self.sample_rate, last=final))
                emitted = end

        return sink

    # -- one take ------------------------------------------------------------------------------------------------
    def _inputs(self, request: GenerationRequest) -> _Inputs:
        prompt, prompt_sr = self._read_audio(request.audio_prompt, "audio_prompt")
        melody, melody_sr = self._read_audio(request.melody, "melody")
        if prompt is not None:
            prompt_s = prompt.shape[-1] / prompt_sr
            duration = self.seconds(request)
            if prompt_s >= duration:
                raise BadAudioInput(
                    f"audio_prompt: it lasts {prompt_s:.1f} s, so there is nothing to add within "
                    f"a duration of {duration:g} s (ask for more)"
                )
            if prompt_s > self.window - 1:
                raise BadAudioInput(
                    f"audio_prompt: {self.spec.id} can continue at most {self.window - 1:g} s of "
                    f"audio (this one lasts {prompt_s:.1f} s)"
                )
        if melody is not None and self.family != "musicgen":
            raise BadAudioInput(f"melody: {self.spec.id} cannot follow a melody")
        return _Inputs(prompt, melody, (prompt_sr, melody_sr))

    def _read_audio(self, path: str | None, field: str) -> tuple[Any, int]:
        if not path:
            return None, 0
        import soundfile

        try:
            data, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
        except Exception as exc:
            raise BadAudioInput(f"{field}: cannot read {path} ({exc})") from None
        if data.shape[0] == 0:
            raise BadAudioInput(f"{field}: {path} has no audio in it")
        return self.torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)

    def _generation_length(self, request: GenerationRequest) -> float:
        """Seconds audiocraft is asked for in one call: the request's; MAGNeT always makes whole windows."""
        duration = self.seconds(request)
        return self.window if self.family == "magnet" else duration

    def _configure(self, request: GenerationRequest) -> float:
        length = self._generation_length(request)
        temperature = float(request.temperature if request.temperature is not None else 1.0)
        sampling = dict(
            use_sampling=temperature > 0,
            temperature=max(temperature, 1e-6),
            top_k=int(request.top_k or 0),
            top_p=float(request.top_p or 0.0),
        )
        if self.family == "magnet":
            steps = int(request.steps or 20)
            self.model.set_generation_params(
                **sampling,
                max_cfg_coef=float(request.guidance or 10.0),
                min_cfg_coef=1.0,
                decoding_steps=[steps, 10, 10, 10],
            )
            self.model.duration = length
        else:
            self.model.set_generation_params(
                **sampling,
                duration=length,
                cfg_coef=float(request.guidance or 3.0),
                extend_stride=self.window - self.context,
            )
        self.model.extend_stride = self.window - self.context
        return length

    def _windows(self, request: GenerationRequest, length: float, prompt_frames: int) -> int:
        """How many windows a take needs: audiocraft's extension loop (its ``_generate_tokens`` arithmetic), or
        for MAGNeT :meth:`_magnet_long`'s (an estimate: MAGNeT makes a frame less than asked)."""
        window_f, stride = int(self.window * self.frame_rate), self.window - self.context
        if self.family == "magnet" and self.seconds(request) > self.window:
            need = math.ceil(self.seconds(request) * self.frame_rate)
            new_per_window = window_f - 1 - int(self.context * self.frame_rate)
            return 1 + max(0, math.ceil((need - (window_f - 1)) / new_per_window))
        if length <= self.window:
            return 1
        total, stride_f = int(length * self.frame_rate), int(self.frame_rate * stride)
        count, offset, have = 0, 0, prompt_frames
        while offset + have < total:
            chunk = int(min(length - offset / self.frame_rate, self.window) * self.frame_rate)
            count, have, offset = count + 1, chunk - stride_f, offset + stride_f
        return max(count, 1)

    def _take(
        self, request: GenerationRequest, take: int, inputs: _Inputs, ctx: JobContext, sink: Sink | None = None
    ) -> np.ndarray:
        torch, model = self.torch, self.model
        length = self._configure(request)
        prompt_frames = 0
        if inputs.prompt is not None:
            prompt_frames = math.ceil(inputs.prompt.shape[-1] / inputs.sample_rates[0] * self.frame_rate)
        windows = self._windows(request, length, prompt_frames)
        # audiocraft's own loop adds window * stride to the steps it reports; MAGNeT's windows each start at 0
        stride_frames = 0 if self.family == "magnet" else int(self.frame_rate * model.extend_stride)
        state = _Windows()

        def on_progress(done: int, total: int) -> None:
            # `total` is the current window's steps (later windows start after their prompt, so they have fewer);
            # audiocraft's own loop adds window * stride to `done`. Takes run one after the other.
            local = done - state.window * stride_frames
            state.last_total = total
            per_take = state.before + total * (windows - state.window)
            step = min(state.before + local, per_take)
            ctx.progress("generating", take * per_take + step, request.takes * per_take)

        def on_window(tokens: Any, prompt_length: int) -> None:
            previous = state.tokens
            state.tokens = tokens if previous is None else torch.cat([previous, tokens[..., prompt_length:]], -1)
            state.window += 1
            state.before += state.last_total
            if sink is not None and self.mbd is None and state.window < windows:
                sink(self._to_numpy(model.generate_audio(state.tokens), request), False)

        torch.manual_seed(request.take_seed(take))
        model.set_custom_progress_callback(on_progress)
        try:
            with self.generating(request), _watch_windows(model, on_window, ctx):
                audio, tokens = self._call(request, inputs)
                if self.family == "magnet" and windows > 1:
                    audio, tokens = self._magnet_long(request, tokens)
        finally:
            model.set_custom_progress_callback(None)
        if self.mbd is not None:
            ctx.progress("decoding", 0, 1)
            audio = self._mbd_decode(tokens)
            ctx.progress("decoding", 1, 1)
        result = self._to_numpy(audio, request)
        if sink is not None:
            sink(result, True)
        return result

    def _call(self, request: GenerationRequest, inputs: _Inputs) -> tuple[Any, Any]:
        """audiocraft's public API, as a script would call it; returns (audio [1, C, S], tokens)."""
        model, text = self.model, [request.prompt]
        prompt_sr, melody_sr = inputs.sample_rates
        if inputs.melody is not None and inputs.prompt is not None:  # no public call takes both: its two halves
            from audiocraft.data.audio_utils import convert_audio

            melody = convert_audio(inputs.melody, melody_sr, model.sample_rate, model.audio_channels)
            prompt = convert_audio(inputs.prompt[None], prompt_sr, model.sample_rate, model.audio_channels)
            attributes, prompt_tokens = model._prepare_tokens_and_attributes(text, prompt, melody_wavs=[melody])
            tokens = model._generate_tokens(attributes, prompt_tokens, progress=True)
            return model.generate_audio(tokens), tokens
        if inputs.melody is not None:
            return model.generate_with_chroma(text, inputs.melody[None], melody_sr, progress=True, return_tokens=True)
        if inputs.prompt is not None:
            return model.generate_continuation(inputs.prompt[None], prompt_sr, text, progress=True, return_tokens=True)
        return model.generate(text, progress=True, return_tokens=True)

    def _magnet_long(self, request: GenerationRequest, tokens: Any) -> tuple[Any, Any]:
        """MAGNeT past its window: each further window is prompted with the last ``context_s`` of tokens.

        audiocraft's extension loop assumes a window returns every frame asked for; MAGNeT returns one less, and the
        loop then ends on a window shorter than its prompt. So the loop is here, on the same two calls the public
        API makes (``_prepare_tokens_and_attributes``, then ``_generate_tokens`` for one window).
        """
        model = self.model
        need = math.ceil(self.seconds(request) * self.frame_rate)
        context = int(self.context * self.frame_rate)
        attributes, _ = model._prepare_tokens_and_attributes([request.prompt], None)
        while tokens.shape[-1] < need:
            window = model._generate_tokens(attributes, tokens[..., -context:], progress=True)
            tokens = self.torch.cat([tokens, window[..., context:]], dim=-1)
        return model.generate_audio(tokens), tokens

    def _mbd_decode(self, tokens: Any) -> Any:
        from audiocraft.models.encodec import InterleaveStereoCompressionModel

        if isinstance(self.model.compression_model, InterleaveStereoCompressionModel):
            left, right = self.model.compression_model.get_left_right_codes(tokens)
            both = self.mbd.tokens_to_wav(self.torch.cat([left, right]))  # [2, 1, S]: left and right
            return both.reshape(1, 2, -1)
        return self.mbd.tokens_to_wav(tokens)

    def _to_numpy(self, audio: Any, request: GenerationRequest) -> np.ndarray:
        """[1, C, S] tensor → float32 [C, S], trimmed to the requested duration."""
        samples = round(self.seconds(request) * self.sample_rate)
        return audio[0, :, :samples].detach().float().cpu().numpy()


@contextmanager
def _watch_windows(model: Any, on_window: Callable[[Any, int], None], ctx: JobContext) -> Iterator[None]:
    """Wrap ``model.lm.generate`` (one call per window) to see each window's tokens and stop between windows."""
    original = model.lm.generate

    def generate(prompt: Any, *args: Any, **kwargs: Any) -> Any:
        ctx.check_cancelled()
        tokens = original(prompt, *args, **kwargs)
        on_window(tokens, 0 if prompt is None else prompt.shape[-1])
        return tokens

    model.lm.generate = generate
    try:
        yield
    finally:
        del model.lm.generate
