"""MusicGen through transformers: text (plus an optional melody or audio to continue) → music at 32 kHz.

How a take is made:

1. Its length is planned in EnCodec frames (50 per second). MusicGen attends to at most a 30 s window, so a longer
   take is made of *segments*: each one is prompted with the last ``context_s`` seconds of codes generated so far
   and adds up to ``max_window_s - context_s`` seconds. Segments are joined in code space and decoded as one stream,
   so the seams need no cross-fade. An ``audio_prompt`` file is simply encoded into the first codes.
2. Each segment's tokens come from the text (and chroma) conditioning and the context codes; ``max_new_tokens`` is
   the frames wanted plus the codebook-delay tail. The loop is ``fast_decode.FastDecoder`` (static KV cache, CUDA
   graphs on CUDA) unless the ``transformers`` decoder is chosen (spec extra ``decoder`` or
   ``$TTAG_MUSICGEN_DECODER``): then it is one ``model.generate`` call. Both give the same tokens for a seed.
3. After every token a step hook (in ``generate``: a StoppingCriteria that never stops, because it alone sees every
   token including the last) reports progress, lets ``ctx`` raise :class:`Cancelled`, and — when streaming — hands
   newly completed frames to the incremental EnCodec decoder in ``streaming.py``.

Take k is exactly what a single-take request with seed+k makes: generate()'s takes one after the other, each after
``torch.manual_seed(take_seed)``; the fast decoder's up to :data:`TAKES_PER_BATCH` at once, each drawing from its own
generator seeded so (a batched ``generate`` would draw every take's tokens from one random stream), where the device
gives a take in a batch the bits it has alone (``FastDecoder.batch_is_exact``). A step's cost is mostly reading the
weights, once for the whole batch. Streamed takes still go one after the other: the first is heard soonest that way.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from runners.contract import AudioChunk, Clip, JobContext, OutOfMemory, RunnerError
from runners.musicgen import CONTEXT_S, DECODERS, WINDOW_S
from runners.musicgen.conditioning import BadAudioInput, ChromaSettings, load_audio, melody_chroma, melody_window
from runners.musicgen.streaming import StreamingCodecDecoder, codebook_delays, complete_frames, delay_pattern
from runners.torch_support import Emit, TorchRunner

if TYPE_CHECKING:
    from runners.musicgen.fast_decode import FastDecoder
    from runners.request import GenerationRequest

STREAM_EVERY_FRAMES = 25  # hand audio to the caller every half second of generated music
FIRST_STREAM_FRAMES = 8  # ...but the first piece sooner, so playback can start early
DECODE_CHUNK_FRAMES = 250  # frames per decoder call when decoding a long take in one go (bounded memory)
# Takes the fast decoder makes together: their KV caches add up (musicgen-small at 30 s with guidance: ~0.6 GB a
# take in float32), while the weights are read once a step for all of them. A batch that runs out of memory is made
# again one take at a time.
TAKES_PER_BATCH = 4

Sink = Callable[[np.ndarray, bool], None]  # (a take's next audio, whether the take ends with it)


@dataclass(frozen=True)
class _Conditioning:
    text: dict[str, Any]  # input_ids and attention_mask
    melody: np.ndarray | None  # mono waveform at the chroma sample rate


@dataclass(frozen=True)
class _Plan:
    """One take's shape in frames: how many in all, and the (context, new) frames of each segment."""

    total_samples: int
    total_frames: int
    prompt_frames: int
    segments: tuple[tuple[int, int], ...]  # (frames of context fed in, new frames generated)

    def steps(self, delay_tail: int) -> int:
        return sum(new + delay_tail for _, new in self.segments)


def decoder_choice(extra: dict[str, Any]) -> str:
    """The token loop to use: the spec's ``decoder`` extra, else ``$TTAG_MUSICGEN_DECODER``, else ``fast``."""
    choice = str(extra.get("decoder") or os.environ.get("TTAG_MUSICGEN_DECODER") or "fast").strip().lower()
    if choice not in DECODERS:
        raise RunnerError(f"unknown MusicGen decoder {choice!r}: use one of {', '.join(DECODERS)}")
    return choice


def plan_take(total_samples: int, hop: int, prompt_frames: int, window: int, context: int) -> _Plan:
    """Split a take into segments of at most ``window`` frames, each continuing from ``context`` frames before it."""
    total_frames = math.ceil(total_samples / hop)
    segments: list[tuple[int, int]] = []
    have = prompt_frames
    while have < total_frames:
        ctx = min(have, context)
        new = min(window - ctx, total_frames - have)
        segments.append((ctx, new))
        have += new
    return _Plan(total_samples, total_frames, prompt_frames, tuple(segments))


class _StepHook:
    """Called by ``generate`` after every token: progress, cancellation, and streaming of completed frames.

    It is a StoppingCriteria that always answers "keep going": returning True would make MusicGen's post-processing
    crash, and raising (``ctx.progress`` raises Cancelled) aborts ``generate`` cleanly instead.
    """

    def __init__(self, on_step: Callable[[Any], None]) -> None:
        self.on_step = on_step

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.on_step(input_ids)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class MusicGenRunner(TorchRunner):
    name = "musicgen"
    version = "1"
    needs = "torch and transformers"

    model: Any = None
    tokenizer: Any = None
    fast: FastDecoder | None = None

    # -- loading -------------------------------------------------------------------------------------------------
    def load(self, ctx: JobContext) -> None:
        import transformers

        repo, source = self.checkpoint(), self.local_files()
        config = transformers.AutoConfig.from_pretrained(repo, **source)
        self.melody = config.model_type == "musicgen_melody"
        model_class = (
            transformers.MusicgenMelodyForConditionalGeneration
            if self.melody
            else transformers.MusicgenForConditionalGeneration
        )
        ctx.check_cancelled()
        self.model = model_class.from_pretrained(repo, dtype=self.dtype, use_safetensors=None, **source)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(repo, **source)
        self.chroma = ChromaSettings()
        if self.melody:
            self.chroma = self._chroma_settings(transformers, repo, source)
        self.model.to(self.device).eval()
        codec = self.model.config.audio_encoder
        self.sample_rate = int(codec.sampling_rate)
        self.hop = int(np.prod(codec.upsampling_ratios))
        self.frame_rate = self.sample_rate / self.hop
        decoder = self.model.decoder.config
        self.channels = int(decoder.audio_channels)
        self.num_codebooks = int(decoder.num_codebooks)
        self.delays = codebook_delays(self.num_codebooks, self.channels)
        self.delay_tail = max(self.delays)  # extra steps so the last codebook completes the last frame
        self.start_token = int(self.model.generation_config.decoder_start_token_id)
        if decoder_choice(self.spec.extra) == "fast":
            from runners.musicgen.fast_decode import FastDecoder  # imports torch: only once torch is known to be there

            try:
                self.fast = FastDecoder(self.model, cuda_graph=str(self.device).startswith("cuda"))
            except ValueError as exc:  # a checkpoint it cannot run: say so, and how to use generate() instead
                raise RunnerError(f"{self.spec.id}: {exc}") from None

    def _chroma_settings(self, transformers: Any, repo: str, source: dict[str, Any]) -> ChromaSettings:
        """The melody extractor's settings from the checkpoint's preprocessor_config.json (defaults when absent)."""
        path = transformers.utils.cached_file(
            repo, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False, **source
        )
        return ChromaSettings.from_dict(json.loads(open(path).read())) if path else ChromaSettings()

    def unload(self) -> None:
        self.model = None
        self.tokenizer = None
        self.fast = None
        super().unload()

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        return list(self.takes(request, ctx))

    def takes(self, request: GenerationRequest, ctx: JobContext) -> Iterator[Clip]:
        for take, audio in self._takes(request, ctx, sink_for=None):
            yield self.make_clip(request, take, audio, self.sample_rate)

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        """Chunks while tokens are still being generated (generation on the base's streaming thread)."""

        def produce(thread_ctx: JobContext, emit: Emit) -> None:
            def sink_for(take: int) -> Sink:
                position = 0

                def sink(audio: np.ndarray, last: bool) -> None:
                    nonlocal position
                    emit(AudioChunk(take, position, audio, self.sample_rate, last))
                    position += audio.shape[1]

                return sink

            for _ in self._takes(request, thread_ctx, sink_for=sink_for):
                pass

        return self.stream_from_thread(produce, ctx)

    # -- generation ----------------------------------------------------------------------------------------------
    def _takes(
        self, request: GenerationRequest, ctx: JobContext, sink_for: Callable[[int], Sink] | None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Render the takes in order, several at once where the fast decoder makes them and nothing is streamed; with
        ``sink_for`` each take's audio also goes out in pieces as it is generated."""
        if self.model is None:
            raise RunnerError(f"{self.spec.id} is not loaded")
        conditioning = self._conditioning(request)
        prompt_codes = self._prompt_codes(request)
        total_samples = round(self.seconds(request) * self.sample_rate)
        window = int(float(self.spec.extra.get("max_window_s", WINDOW_S)) * self.frame_rate)
        context = int(float(self.spec.extra.get("context_s", CONTEXT_S)) * self.frame_rate)
        plan = plan_take(total_samples, self.hop, prompt_codes.shape[-1], window, min(context, window - 1))
        if not plan.segments:  # the take includes the audio it continues, which leaves nothing to make
            seconds, longest = plan.prompt_frames / self.frame_rate, self.spec.max_duration
            fix = f"ask for more than {seconds:.1f} s" if seconds < longest else "continue a shorter file"
            raise BadAudioInput(
                f"the audio prompt is already {seconds:.1f} s long, and the take includes it: {fix} "
                f"(takes are at most {longest:g} s for {self.spec.id})"
            )
        steps = plan.steps(self.delay_tail)
        together = TAKES_PER_BATCH if self.fast is not None and sink_for is None else 1
        first = 0
        while first < request.takes:
            takes = range(first, first + self._batch_size(request, min(together, request.takes - first)))
            sink = sink_for(first) if sink_for is not None else None
            try:
                with self.generating(request):
                    audio = self._render(
                        request,
                        takes,
                        plan,
                        conditioning,
                        prompt_codes,
                        ctx,
                        offset=first * steps,
                        total=request.takes * steps,
                        sink=sink,
                    )
            except OutOfMemory:
                if len(takes) == 1:
                    raise
                together = 1  # the batch's caches did not fit where one take's do: the same takes, one at a time
                continue
            yield from zip(takes, audio, strict=True)
            first += len(takes)

    def _batch_size(self, request: GenerationRequest, takes: int) -> int:
        """``takes`` where the fast decoder gives each take of a batch the bits it has alone here (so a take is
        still exactly what its seed makes, as its sidecar's recreate line promises), else 1."""
        from runners.musicgen.fast_decode import Sampling

        if takes == 1 or self.fast is None:
            return 1
        rows = 2 if Sampling.from_kwargs(self._sampling(request)).cfg else 1
        return takes if self.fast.batch_is_exact(takes, rows) else 1

    def _render(
        self,
        request: GenerationRequest,
        takes: range,
        plan: _Plan,
        conditioning: _Conditioning,
        prompt_codes: Any,
        ctx: JobContext,
        *,
        offset: int,
        total: int,
        sink: Sink | None,
    ) -> list[np.ndarray]:
        """Takes made together (one unless it is the fast decoder's batch): generate every segment's codes, then
        (unless streamed: one take) decode them."""
        import torch

        generators = None
        if len(takes) > 1:
            generators = [torch.Generator(self.device).manual_seed(request.take_seed(take)) for take in takes]
        else:
            torch.manual_seed(request.take_seed(takes[0]))
        codes = prompt_codes.repeat(len(takes), 1)  # (takes*codebooks, frames) take after take, grows per segment
        decoder = StreamingCodecDecoder(self.model.audio_encoder) if sink is not None else None
        emitted = [0]

        def emit(audio: np.ndarray) -> None:
            room = plan.total_samples - emitted[0]
            if sink is not None and room > 0 and audio.shape[1]:
                sink(audio[:, :room], audio.shape[1] >= room)
                emitted[0] += min(room, audio.shape[1])

        if decoder is not None and codes.shape[-1]:
            emit(decoder.feed(self._per_channel(codes)))
        done = offset
        single_audio = None
        for context_frames, new_frames in plan.segments:
            start_frame = codes.shape[-1] - context_frames
            segment_codes, audio = self._segment(
                request,
                conditioning,
                codes[..., start_frame:],
                new_frames,
                start_frame,
                ctx,
                done,
                total,
                decoder,
                emit,
                generators,
            )
            codes = torch.cat([codes, segment_codes], dim=-1)
            done += (new_frames + self.delay_tail) * len(takes)
            # generate() decoded exactly this take's codes when there was one segment and it saw all the prompt
            whole = len(plan.segments) == 1 and start_frame == 0
            single_audio = audio if whole else None
        if decoder is not None:
            emit(decoder.finish())
            emit(np.zeros((self.channels, plan.total_samples - emitted[0]), np.float32))  # only if frames fell short
            return [np.zeros((self.channels, 0), np.float32)]
        ctx.progress("decoding", 0, 1)
        if single_audio is None:
            takes_audio = [self._decode_all(take_codes, ctx) for take_codes in codes.split(self.num_codebooks)]
        else:
            takes_audio = [single_audio]
        ctx.progress("decoding", 1, 1)
        return [_fit(take_audio, plan.total_samples) for take_audio in takes_audio]

    def _segment(
        self,
        request: GenerationRequest,
        conditioning: _Conditioning,
        context_codes: Any,
        new_frames: int,
        start_frame: int,
        ctx: JobContext,
        done: int,
        total: int,
        decoder: StreamingCodecDecoder | None,
        emit: Callable[[np.ndarray], None],
        generators: list[Any] | None,
    ) -> tuple[Any, np.ndarray | None]:
        """Generate ``new_frames`` frames after ``context_codes`` (takes*codebooks, frames): their codes
        (takes*codebooks, n), and generate()'s audio of them (None from the fast decoder, which leaves decoding to the
        caller). ``generators``: one per take, for the fast decoder's batch of takes."""
        import torch
        from transformers import StoppingCriteriaList

        from runners.musicgen.fast_decode import Sampling

        n_context = context_codes.shape[-1]
        max_new_tokens = new_frames + self.delay_tail
        start = torch.full((context_codes.shape[0], 1), self.start_token, dtype=torch.long, device=self.device)
        start_ids = torch.cat([start, context_codes.to(self.device)], dim=-1)
        max_length = start_ids.shape[-1] + max_new_tokens
        mask = delay_pattern(self.model.decoder, start_ids, self.start_token, max_length)
        state = {"step": 0, "fed": n_context, "ids": None, "emitted": False}

        def on_step(ids: Any) -> None:
            state["step"] += 1
            state["ids"] = ids
            ctx.progress("generating", done + state["step"] * (len(generators) if generators else 1), total)
            if decoder is None:
                return
            ready = min(ids.shape[-1] - 1 - self.delay_tail, n_context + new_frames)
            every = STREAM_EVERY_FRAMES if state["emitted"] else FIRST_STREAM_FRAMES
            if ready - state["fed"] >= every or ready == n_context + new_frames:
                state["emitted"] = True
                frames = complete_frames(ids, mask, self.num_codebooks, self.delays, state["fed"], ready)
                emit(decoder.feed(self._per_channel(frames[0])))
                state["fed"] = ready

        kwargs = self._segment_conditioning(conditioning, start_frame)
        if self.fast is not None:
            ids = self.fast.generate(
                conditioning.text,
                Sampling.from_kwargs(self._sampling(request)),
                max_new_tokens,
                context_codes=context_codes if n_context else None,
                input_features=kwargs.get("input_features"),
                on_step=on_step,
                generators=generators,
            )
            frames = complete_frames(ids, mask, self.num_codebooks, self.delays, n_context, n_context + new_frames)
            return frames.reshape(-1, frames.shape[-1]).cpu(), None
        if n_context:
            kwargs["decoder_input_ids"] = context_codes.to(self.device)
        audio = self.model.generate(
            **kwargs,
            **self._sampling(request),
            max_new_tokens=max_new_tokens,
            stopping_criteria=StoppingCriteriaList([_StepHook(on_step)]),
        )
        frames = complete_frames(state["ids"], mask, self.num_codebooks, self.delays, n_context, n_context + new_frames)
        return frames[0].cpu(), audio[0].float().cpu().numpy()

    def _sampling(self, request: GenerationRequest) -> dict[str, Any]:
        """MusicGen's knobs as transformers' generate arguments (0 switches top-k / top-p off, as in audiocraft)."""
        temperature = float(request.temperature if request.temperature is not None else 1.0)
        top_k = int(request.top_k if request.top_k is not None else 250)
        top_p = float(request.top_p or 0.0)
        guidance = float(request.guidance if request.guidance is not None else 3.0)
        if temperature <= 0:
            return {"do_sample": False, "guidance_scale": guidance}
        return {
            "do_sample": True,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p if top_p > 0 else None,
            "guidance_scale": guidance,
        }

    def _conditioning(self, request: GenerationRequest) -> _Conditioning:
        """Tokenized text, and for melody models the melody's waveform (its chroma is taken per segment)."""
        inputs = self.tokenizer([request.prompt], return_tensors="pt", padding=True)
        text = {
            "input_ids": inputs["input_ids"].to(self.device),
            "attention_mask": inputs["attention_mask"].to(self.device),
        }
        melody = None
        if request.melody:
            if not self.melody:
                raise BadAudioInput(f"{self.spec.id} cannot follow a melody: use a musicgen-melody model")
            melody = load_audio(request.melody, self.chroma.sampling_rate, 1, what="melody")[0]
        return _Conditioning(text, melody)

    def _segment_conditioning(self, conditioning: _Conditioning, start_frame: int) -> dict[str, Any]:
        """generate() kwargs for a segment starting at ``start_frame``: a melody is followed from the same moment."""
        kwargs = dict(conditioning.text)
        if conditioning.melody is not None:
            window_s = float(self.spec.extra.get("max_window_s", WINDOW_S))
            part = melody_window(
                conditioning.melody, start_frame / self.frame_rate, window_s, self.chroma.sampling_rate
            )
            kwargs["input_features"] = melody_chroma(part, self.chroma).to(self.device, self.dtype)
        return kwargs

    def _prompt_codes(self, request: GenerationRequest) -> Any:
        """The audio prompt as MusicGen codes (codebooks, frames); stereo interleaves left/right like generate()."""
        import torch

        if not request.audio_prompt:
            return torch.zeros((self.num_codebooks, 0), dtype=torch.long)
        audio = load_audio(request.audio_prompt, self.sample_rate, self.channels, what="audio prompt")
        values = torch.from_numpy(audio).to(self.device, self.dtype)
        with torch.inference_mode():
            per_channel = [
                self.model.audio_encoder.encode(values[c][None, None]).audio_codes[0, 0] for c in range(self.channels)
            ]  # each (codebooks per channel, frames)
        codes = torch.stack(per_channel, dim=1).reshape(self.num_codebooks, -1)  # L0 R0 L1 R1 ... for stereo
        return codes.cpu()

    def _per_channel(self, codes: Any) -> Any:
        """(codebooks, frames) → (channels, codebooks per channel, frames) for the mono codec."""
        return codes.reshape(-1, self.channels, codes.shape[-1]).transpose(0, 1).to(self.device)

    def _decode_all(self, codes: Any, ctx: JobContext) -> np.ndarray:
        """Decode a whole take's codes in bounded pieces (a 5-minute take at once would need gigabytes)."""
        decoder = StreamingCodecDecoder(self.model.audio_encoder)
        pieces = []
        n = codes.shape[-1]
        for index, start in enumerate(range(0, n, DECODE_CHUNK_FRAMES)):
            ctx.progress("decoding", index, math.ceil(n / DECODE_CHUNK_FRAMES) + 1)
            pieces.append(decoder.feed(self._per_channel(codes[..., start : start + DECODE_CHUNK_FRAMES])))
        pieces.append(decoder.finish())
        return np.concatenate(pieces, axis=1)


def _fit(audio: np.ndarray, samples: int) -> np.ndarray:
    """Exactly ``samples`` long: trim the frame padding, or pad with silence if the codec came up short."""
    if audio.shape[1] >= samples:
        return audio[:, :samples]
    return np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))
