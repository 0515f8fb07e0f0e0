"""Play a take's plan chunk by chunk: notes into a running buffer, scene beds, reverb, bus filters, master.

Notes are rendered whole when their start falls in the current chunk and their ringing is kept in a buffer for the
chunks to come; every filter keeps its state. So the chunks of a take, concatenated, are exactly the take, and
``generate`` is simply this stream joined up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache

import numpy as np

from runners.synth import dsp
from runners.synth.instruments import SR, Note, ramp32, render
from runners.synth.mix import Master, Reverb, pan
from runners.synth.patterns import DUCKED, Plan, arrange
from runners.synth.prompt import Brief
from runners.synth.scenes import SceneBed, scene_events

CHUNK = SR  # one second per streamed chunk
WET = 0.35  # reverb return level
STEREO_SEND = np.float32(np.sqrt(0.5))  # a stereo sound's two channels summed for the mono send keep their power
MUSIC_RMS_DB = -15.0  # mix RMS before the limiter (it takes off a few tenths on peaky mixes)
SCENE_RMS_DB = -17.0


@lru_cache(maxsize=256)  # scene events' pans are random: bounded
def _pan_gains(position: float, stereo: bool) -> tuple[float, float]:
    """Left and right gains of a pan position: a take's parts sit at a few, and numpy's calls cost more per note
    than the note's own samples do for a short hit."""
    left, right = pan(position, stereo)
    return float(left), float(right)


def _weights(note: Note, stereo: bool, gain: float) -> np.ndarray:
    """``(3, 1)`` float32 weights of a note's dry L/R and its reverb send, in Python floats (the same products). The
    send is taken before the pan (the panner keeps power constant, so every position sends alike): the reverb is
    mono in, stereo out."""
    left, right = _pan_gains(note.pan, stereo)
    send = gain * note.send * (float(STEREO_SEND) if stereo else 1.0)
    return np.array([[left * gain], [right * gain], [send]], dtype=np.float32)


class TakeRenderer:
    """One take: plan on construction, then :meth:`chunks` yields mastered float32 ``(2, n)`` chunks."""

    def __init__(self, brief: Brief, seed: int, temperature: float, n_samples: int) -> None:
        self.brief = brief
        self.n = n_samples
        self.plan: Plan = arrange(brief, seed, temperature, n_samples)
        events = scene_events(brief.scenes, brief.intensity, seed, n_samples)
        for note in events:
            note.vel *= self.plan.scene_level
        self.notes: list[Note] = sorted([*self.plan.notes, *events], key=lambda note: note.start)
        self.bed = SceneBed(brief.scenes, brief.intensity, seed, self.plan.scene_level)
        # The bus runs in float32 from here on, as the take is stored: half the memory traffic of float64.
        self.reverb = Reverb(self.plan.room, CHUNK, single=True)
        self.highpass = dsp.Filter(dsp.butter(2, 28.0, "highpass"), single=True)
        lowpass = self.plan.lowpass if brief.musical else None
        self.lowpass = dsp.Filter(dsp.butter(2, lowpass), single=True) if lowpass else None
        scene_only = not brief.musical
        self.master = Master(
            n_samples,
            SCENE_RMS_DB if scene_only else MUSIC_RMS_DB,
            fade_in=min(1.0 if scene_only else 0.01, n_samples / SR / 10),
            fade_out=min(1.5, n_samples / SR / 10),
            measure_from=self.plan.intro,
        )

    def chunks(self, on_chunk: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
        """Mastered chunks; ``on_chunk(i)`` is called before chunk ``i`` is rendered (progress, cancellation)."""
        return self.master.run(self._raw(on_chunk))

    def _duck(self, start: int, n: int) -> np.ndarray:
        """Side-chain pumping: dip right after each beat and recover, as a function of absolute time."""
        beat = self.plan.bar / 4
        phase = ramp32(n) + np.float32(start % beat)  # samples since the last beat, in float32: a gain curve
        phase -= np.float32(beat) * np.floor(phase * np.float32(1 / beat))
        phase *= np.float32(1.0 / SR)
        curve = np.exp(phase * np.float32(-1.0 / 0.11))
        curve *= np.minimum(phase * np.float32(1.0 / 0.004), np.float32(1.0))
        curve *= np.float32(-self.plan.duck)
        curve += np.float32(1.0)
        return curve

    def _raw(self, on_chunk: Callable[[int], None] | None) -> Iterator[np.ndarray]:
        # Rows: dry L/R and the reverb send, then (when the kick pumps the mix) the same for the ducked bus (pads,
        # bass... that pump with the kick). Column ``base`` is the current chunk's start; ringing notes reach into
        # later chunks. What has been played is dropped only now and then (when it is over half the buffer): moving
        # every chunk's ringing pad tails to the front cost a copy of seconds of audio per second.
        rows = 6 if self.plan.duck else 3
        # 16 s to start: np.zeros maps untouched pages for free, and a take's longest ringing notes (pads, 5-7 s)
        # then fit without growing the buffer (a copy of everything so far) a few times per take.
        buffer = np.zeros((rows, 16 * CHUNK), dtype=np.float32)  # grows (doubling); columns from ``used`` on are 0
        base = used = 0
        index = 0
        for i, start in enumerate(range(0, self.n, CHUNK)):
            if on_chunk is not None:
                on_chunk(i)
            n = min(CHUNK, self.n - start)
            end = start + n
            if base + n > buffer.shape[1] // 2:  # the played part is over half the buffer: drop it
                buffer[:, : used - base] = buffer[:, base:used]
                buffer[:, max(used - base, 0) : used] = 0.0
                used -= base
                base = 0
            while index < len(self.notes) and self.notes[index].start < end:
                note = self.notes[index]
                index += 1
                audio, gain = render(note)
                audio = audio[..., : self.n - note.start]
                weights = _weights(note, audio.ndim == 2, gain)
                offset = base + note.start - start
                need = offset + audio.shape[-1]
                if need > buffer.shape[1]:
                    grown = np.zeros((rows, max(need, 2 * buffer.shape[1])), dtype=np.float32)
                    grown[:, :used] = buffer[:, :used]
                    buffer = grown
                used = max(used, need)
                row = 3 if self.plan.duck and note.voice in DUCKED else 0
                if audio.ndim == 1:
                    buffer[row : row + 3, offset:need] += weights * audio
                else:  # a stereo note: its dry channels, then their sum to the send
                    buffer[row : row + 2, offset:need] += weights[:2] * audio
                    send = audio[0] + audio[1]
                    send *= weights[2]
                    buffer[row + 2, offset:need] += send
            bus = buffer[0:3, base : base + n]  # in place from here: these columns are played and dropped
            if self.plan.duck:
                ducked = buffer[3:6, base : base + n]
                ducked *= self._duck(start, n)
                bus += ducked
            base += n
            used = max(used, base)
            if self.bed.scenes:
                bed = self.bed.render(start, n)
                mix = bus[0:2] + bed + WET * self.reverb(bus[2] + np.float32(0.25) * STEREO_SEND * (bed[0] + bed[1]))
            else:  # no scene: no bed of zeros
                mix = self.reverb(bus[2])
                mix *= WET
                mix += bus[0:2]
            mix = self.highpass(mix)
            if self.lowpass is not None:
                mix = self.lowpass(mix)
            yield mix
