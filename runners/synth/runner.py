"""``SynthRunner``: the built-in procedural model. Prompt → brief → planned notes → streamed, mastered audio.

No weights and no torch: numpy and scipy only, imported lazily like every runner. ``generate`` is the stream joined
up, so streamed chunks and finished clips are the same samples by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from runners.contract import AudioChunk, BaseRunner, Clip, JobContext

if TYPE_CHECKING:
    from runners.request import GenerationRequest

SAMPLE_RATE = 44100


class SynthRunner(BaseRunner):
    name = "synth"
    version = "6"  # 2: seeds choose progression, groove, bass line, voicings, sounds and arrangement; 3: the same
    # music rendered faster (filters, noise banks and scene beds, reverb, oscillators), not the same samples; 4: breaks
    # (drop-outs, kick-less and half-time bars) and intro length by seed, guitar and arpeggio rhythms by seed, the
    # tonic held on top of chords that contain it; 5: the same music with the bus (reverb, filters, scene beds,
    # limiter) in float32, about 1e-7 from 4's samples, not the same bits — but for vinyl crackle and a fire's crackle
    # and pops, now sparse clicks ringing through the white noise bank: the same sound, other random clicks
    # 6: the reverb takes a mono send, before the pan (a stereo sound's channels summed), as a hardware unit does:
    # the room's two channels still make the width; one forward FFT per second of audio, not two

    def load_model(self, ctx: JobContext) -> None:
        """Nothing to download or precompute: import the renderer. Wavetables and noise banks are built on first use
        and cached (a take builds only the few it plays, in milliseconds), so loading costs only the imports."""
        ctx.progress("loading", 0, 1)
        import runners.synth.render  # noqa: F401  (numpy and scipy's filters: the whole of the synth's load)

        ctx.progress("loading", 1, 1)

    def _length(self, request: GenerationRequest) -> int:
        return round(float(request.duration or self.spec.default_duration) * SAMPLE_RATE)

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        from runners.synth.prompt import parse_prompt
        from runners.synth.render import CHUNK, TakeRenderer

        brief = parse_prompt(request.prompt)
        n = self._length(request)
        temperature = 1.0 if request.temperature is None else float(request.temperature)
        per_take = max(1, -(-n // CHUNK))
        total = per_take * request.takes
        ctx.progress("generating", 0, total)
        for take in range(request.takes):
            renderer = TakeRenderer(brief, request.take_seed(take), temperature, n)  # planned when its turn comes

            def tick(i: int, take: int = take) -> None:
                if take or i:
                    ctx.progress("generating", take * per_take + i, total)

            start = 0
            for audio in renderer.chunks(tick):
                end = start + audio.shape[1]
                yield AudioChunk(take=take, start=start, audio=audio, sample_rate=SAMPLE_RATE, last=end >= n)
                start = end
        ctx.progress("generating", total, total)

    def takes(self, request: GenerationRequest, ctx: JobContext) -> Iterator[Clip]:
        from runners.synth.prompt import parse_prompt

        n = self._length(request)
        brief = parse_prompt(request.prompt).describe()
        audio: dict[int, np.ndarray] = {}  # take → its samples, filled in place (no copies) until its last chunk
        for chunk in self.stream(request, ctx):
            if chunk.take not in audio:
                audio[chunk.take] = np.empty((2, n), dtype=np.float32)
            audio[chunk.take][:, chunk.start : chunk.start + chunk.audio.shape[1]] = chunk.audio
            if chunk.last:
                clip = self.make_clip(request, chunk.take, audio.pop(chunk.take), SAMPLE_RATE)
                clip.metadata["brief"] = brief
                yield clip

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        return list(self.takes(request, ctx))
