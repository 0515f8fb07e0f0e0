"""Turning MusicGen's delayed codebook tokens into audio a piece at a time.

Two jobs:

* :func:`complete_frames` undoes MusicGen's delay pattern on the ids generated *so far*: codebook ``k`` runs ``k`` steps
  behind codebook 0, so a frame is only complete once the last codebook has caught up. It uses the model's own
  ``build_delay_pattern_mask`` / ``apply_delay_pattern_mask`` and drops the pad positions.
* :class:`StreamingCodecDecoder` decodes EnCodec codes incrementally with bounded work per chunk and gives the same
  samples as decoding the whole sequence at once. EnCodec's SEANet decoder is ``conv → LSTM → (upsampling convs)``: the
  convolutions see a few frames either side, the LSTM sees all the past. So the LSTM runs exactly once per frame with
  its state carried over, and only the convolutions run on a window with a little overlap, of which just the samples
  the window's edges cannot affect are kept. Decoding the growing prefix each time would be quadratic; decoding
  independent windows would click at the joins (the LSTM would restart from zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Frames of context either side of a window for the convolutions after the LSTM (their receptive field is < 2 frames
# with EnCodec's kernels: transposed convs of 2*ratio, residual kernels of 3, a last kernel of 7 samples).
TAIL_CONTEXT_FRAMES = 4


def delay_pattern(decoder: Any, prompt_ids: Any, pad_token_id: int, max_length: int) -> Any:
    """The delay mask ``generate`` builds for these start ids (start token + prompt codes) and ``max_length``."""
    _, mask = decoder.build_delay_pattern_mask(prompt_ids, pad_token_id=pad_token_id, max_length=max_length)
    return mask


def complete_frames(ids: Any, mask: Any, num_codebooks: int, delays: list[int], start: int, stop: int) -> Any:
    """Frames ``[start, stop)`` of the codes in ``ids`` (batch*codebooks, seq), undelayed: (batch, codebooks, n).

    Frame ``f`` of codebook ``k`` sits at position ``f + 1 + delays[k]`` (position 0 is the start token).
    """
    import torch

    masked = decoder_apply(ids, mask)
    masked = masked.reshape(-1, num_codebooks, masked.shape[-1])
    rows = [masked[:, k, start + 1 + d : stop + 1 + d] for k, d in enumerate(delays)]
    frames = torch.stack(rows, dim=1)
    if frames.shape[-1] != stop - start:
        raise RuntimeError(f"asked for frames {start}..{stop} but only {frames.shape[-1]} are there")
    return frames


def decoder_apply(ids: Any, mask: Any) -> Any:
    """``apply_delay_pattern_mask``: keep generated tokens where the mask says -1, the mask's value elsewhere."""
    import torch

    mask = mask[..., : ids.shape[-1]]
    return torch.where(mask == -1, ids, mask)


def codebook_delays(num_codebooks: int, audio_channels: int) -> list[int]:
    """Each codebook's delay in steps: 0,1,2,3 for mono; stereo interleaves left/right so pairs share one."""
    if audio_channels == 2:
        return [k // 2 for k in range(num_codebooks)]
    return list(range(num_codebooks))


class StreamingCodecDecoder:
    """Incremental, exact EnCodec decoding for one take. Feed codes as they complete; get the settled samples back.

    ``codes`` are (channels, codebooks, frames): MusicGen's stereo models decode left and right codebooks through the
    same mono codec, which here is simply a batch of two.
    """

    def __init__(self, codec: Any, context: int = TAIL_CONTEXT_FRAMES) -> None:
        layers = list(codec.decoder.layers)
        if type(layers[1]).__name__ != "EncodecLSTM":
            raise RuntimeError("unexpected EnCodec decoder layout: the LSTM is not its second layer")
        self.codec = codec
        self.conv_in = layers[0]
        self.lstm = layers[1].lstm
        self.tail = layers[2:]
        total = int(self.conv_in.padding_total)
        # Frames of input the first conv looks at either side: causal convs look back only; otherwise EncodecConv1d
        # puts the odd padding sample on the left.
        self.in_right = 0 if self.conv_in.causal else total // 2
        self.in_left = total - self.in_right
        self.hop = int(np.prod(codec.config.upsampling_ratios))
        self.context = context
        self.embeddings: Any = None  # (batch, dim, frames) from embeddings_start
        self.embeddings_start = 0
        self.n_frames = 0  # frames fed so far
        self.lstm_state: Any = None
        self.lstm_out: Any = None  # (batch, dim, frames) from lstm_start, LSTM + skip output
        self.lstm_start = 0
        self.n_lstm = 0  # frames through the LSTM so far
        self.n_emitted = 0  # frames whose audio has been handed out

    def feed(self, codes: Any) -> np.ndarray:
        """Add complete frames; return the audio (channels, samples) that can no longer change."""
        import torch

        with torch.inference_mode():
            if codes.shape[-1]:
                embedded = self.codec.quantizer.decode(codes.transpose(0, 1))  # (batch, dim, n)
                self.embeddings = embedded if self.embeddings is None else torch.cat([self.embeddings, embedded], -1)
                self.n_frames += codes.shape[-1]
            return self._advance(final=False)

    def finish(self) -> np.ndarray:
        """No more frames: flush everything left."""
        import torch

        with torch.inference_mode():
            return self._advance(final=True)

    @property
    def samples_emitted(self) -> int:
        return self.n_emitted * self.hop

    def _advance(self, *, final: bool) -> np.ndarray:
        import torch

        # 1. input conv + LSTM for the frames whose input-conv output is settled (needs in_right frames of lookahead).
        lstm_until = self.n_frames if final else max(self.n_frames - self.in_right, self.n_lstm)
        if lstm_until > self.n_lstm:
            lo = max(self.n_lstm - self.in_left, 0)
            window = self.embeddings[
                ..., lo - self.embeddings_start : lstm_until + self.in_right - self.embeddings_start
            ]
            conv = self.conv_in(window)[..., self.n_lstm - lo : lstm_until - lo]
            seq = conv.permute(2, 0, 1)  # (time, batch, dim)
            out, self.lstm_state = self.lstm(seq, self.lstm_state)
            out = (out + seq).permute(1, 2, 0)
            self.lstm_out = out if self.lstm_out is None else torch.cat([self.lstm_out, out], -1)
            self.n_lstm = lstm_until
            keep_from = max(self.n_lstm - self.in_left - self.in_right, 0)  # history the next window needs
            self.embeddings = self.embeddings[..., keep_from - self.embeddings_start :]
            self.embeddings_start = keep_from

        # 2. the upsampling convs on a window of LSTM output, keeping only samples far enough from the window's edges.
        emit_until = self.n_lstm if final else max(self.n_lstm - self.context, self.n_emitted)
        if emit_until <= self.n_emitted:
            return np.zeros((self._channels(), 0), dtype=np.float32)
        lo = max(self.n_emitted - self.context, 0)
        hi = self.n_lstm if final else min(emit_until + self.context, self.n_lstm)
        hidden = self.lstm_out[..., lo - self.lstm_start : hi - self.lstm_start]
        for layer in self.tail:
            hidden = layer(hidden)
        audio = hidden[..., (self.n_emitted - lo) * self.hop : (emit_until - lo) * self.hop]
        self.n_emitted = emit_until
        keep_from = max(self.n_emitted - self.context, 0)
        self.lstm_out = self.lstm_out[..., keep_from - self.lstm_start :]
        self.lstm_start = keep_from
        return audio[:, 0].float().cpu().numpy()  # (batch=channels, samples)

    def _channels(self) -> int:
        return 1 if self.embeddings is None else int(self.embeddings.shape[0])
