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
    from runners.synth.render import TakeRenderer

SAMPLE_RATE = 44100


class SynthRunner(BaseRunner):
    name = "synth"
    version = "1"

    def load_model(self, ctx: JobContext) -> None:
        """Nothing to download; build the wavetables and noise banks once so the first take starts fast."""
        from runners.synth import instruments

        ctx.progress("loading", 0, 1)
        for wave in ("sine", "saw", "square", "triangle", "soft", "piano", "organ", "sub"):
            for band in range(10):
                instruments.wavetable(wave, band)
        for kind in ("white", "hat", "snare", "clap", "low", "mid"):
            instruments.noise_bank(kind)
        ctx.progress("loading", 1, 1)

    def _takes(self, request: GenerationRequest) -> list[tuple[int, TakeRenderer]]:
        from runners.synth.prompt import parse_prompt
        from runners.synth.render import TakeRenderer

        brief = parse_prompt(request.prompt)
        n = round(float(request.duration or self.spec.default_duration) * SAMPLE_RATE)
        temperature = 1.0 if request.temperature is None else float(request.temperature)
        return [(k, TakeRenderer(brief, request.take_seed(k), temperature, n)) for k in range(request.takes)]

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        takes = self._takes(request)
        per_take = max(1, takes[0][1].chunk_count) if takes else 1
        total = per_take * len(takes)
        ctx.progress("generating", 0, total)
        for take, renderer in takes:
            start = 0

            def tick(i: int, take: int = take) -> None:
                if take or i:
                    ctx.progress("generating", take * per_take + i, total)

            for audio in renderer.chunks(tick):
                yield AudioChunk(take=take, start=start, audio=audio, sample_rate=SAMPLE_RATE)
                start += audio.shape[1]
        ctx.progress("generating", total, total)

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        parts: dict[int, list[np.ndarray]] = {}
        for chunk in self.stream(request, ctx):
            parts.setdefault(chunk.take, []).append(chunk.audio)
        clips = []
        from runners.synth.prompt import parse_prompt

        brief = parse_prompt(request.prompt).describe()
        for take in range(request.takes):
            audio = np.concatenate(parts[take], axis=1)
            clip = self.make_clip(request, take, audio, SAMPLE_RATE)
            clip.metadata["brief"] = brief
            clips.append(clip)
        return clips
