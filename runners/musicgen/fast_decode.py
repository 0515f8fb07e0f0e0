"""MusicGen's token loop without ``generate``: a static KV cache, CFG batched once, sampling and the delay pattern on
the device, and on CUDA the per-step decoder call replayed from a CUDA graph.

Why: transformers' ``generate`` grows a DynamicCache with ``torch.cat`` on every step (for musicgen-small with CFG
that copies the whole cache, ~600 MB per step at the end of a 30 s window), rebuilds masks, re-applies the delay mask
to the whole sequence and runs a stack of Python hooks per token. Here the weights, tokenizer, text encoder and EnCodec
stay transformers' own; only the loop is replaced:

1. The conditioning is prepared by the model's own helpers (text encoder, CFG's null half, melody chroma projection),
   and the prompt (start token + context codes) goes through the model's own ``forward`` once — the same prefill call
   ``generate`` makes. Its cache is copied into preallocated buffers.
2. Each further step runs the decoder layers' own modules (layer norms, projections, FFN, heads) on one token per
   codebook, writing K/V in place at the step's position. The cross-attention K/V of the text never change.
3. Logits are processed exactly as ``generate`` does for MusicGen (CFG, then temperature, top-k, top-p, softmax and
   ``torch.multinomial`` on the same rows), so on CPU in float32 the random stream is consumed identically and the
   tokens equal ``generate``'s for the same seed.
4. Several takes can share the loop (``generators``, one per take): each step then reads the weights once for all of
   them — a step's cost on a CPU or a small batch on a GPU is mostly that read — while every take draws its tokens
   from its own random stream, so take k is what a one-take call after ``torch.manual_seed(seed_k)`` makes.

Exactness: the default step attends over a view of the cache holding the same values generate() concatenates, and
its logits came out bitwise equal to generate()'s on CPU. The fixed-shape step that CUDA graphs need attends over the
whole buffer under a mask, which reorders the softmax's sums: logits then differ in the last bits (~1e-6), so a token
could differ only if a sampling draw fell that close to a cumulative-probability boundary (or greedy logits tied).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Sampling:
    """generate()'s sampling arguments as the runner passes them (``top_k`` 0 and ``top_p`` None switch those off)."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float | None = None
    guidance_scale: float = 1.0

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> Sampling:
        return cls(**{k: v for k, v in kwargs.items() if k in cls.__dataclass_fields__ and v is not None})

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1


def next_tokens(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from float32 logits (2*rows with CFG: conditional half first), in ``generate``'s order,
    drawn from ``generator`` (None: torch's default one, as generate() draws).

    generate() applies ClassifierFreeGuidanceLogitsProcessor, then (sampling only) Temperature, TopK and TopP warpers,
    then softmax + multinomial; each line below is the same arithmetic as that processor.
    """
    if sampling.cfg:
        cond, uncond = logits.split(logits.shape[0] // 2, dim=0)
        logits = uncond + (cond - uncond) * sampling.guidance_scale
    if not sampling.do_sample:
        return logits.argmax(dim=-1)
    if sampling.temperature != 1.0:
        logits = logits / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]))[0][..., -1, None]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if sampling.top_p is not None and sampling.top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - sampling.top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(1, sorted_indices, remove), -float("inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator).squeeze(1)


@dataclass
class _Buffers:
    """One generation's buffers, dropped when it ends: self-attention K/V for every position of its takes (and a
    melody model's conditioning prefix), the text's cross-attention K/V, and the CUDA graph recorded on them; the
    takes' rows one after the other along the batch."""

    prefix: int
    positions: torch.Tensor  # the sinusoidal position embeddings of every position
    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    cross: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cross_mask: torch.Tensor | None = None
    graph: _Graph | None = None


@dataclass
class _Graph:
    """A recorded step: ``replay`` runs it again on whatever ``tokens`` and ``position`` hold, into ``logits``."""

    graph: Any  # torch.cuda.CUDAGraph
    tokens: torch.Tensor
    position: torch.Tensor
    logits: torch.Tensor

    def replay(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.position.fill_(position)
        self.graph.replay()
        return self.logits


class FastDecoder:
    """Generates MusicGen tokens for a loaded ``Musicgen(Melody)ForConditionalGeneration``; reusable across calls.

    ``static_shapes`` makes every step attend over the whole preallocated cache with a mask instead of a growing view,
    so all step shapes are fixed: what a CUDA graph needs (``cuda_graph``, CUDA only). It is slower on CPU.
    """

    def __init__(self, model: Any, *, static_shapes: bool = False, cuda_graph: bool = False) -> None:
        self.model = model
        self.melody = hasattr(model, "_prepare_encoder_hidden_states_kwargs_for_generation")
        causal_lm = model.decoder
        self.decoder = causal_lm.model.decoder
        self.lm_heads = causal_lm.lm_heads
        self.num_codebooks = int(causal_lm.num_codebooks)
        self.start_token = int(model.generation_config.decoder_start_token_id)
        if model.generation_config.eos_token_id is not None:  # no MusicGen checkpoint has one
            raise ValueError(
                "this MusicGen checkpoint has an end-of-sequence token, which the fast decoder does not handle: "
                "set TTAG_MUSICGEN_DECODER=transformers"
            )
        if cuda_graph and model.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.cuda_graph = cuda_graph
        self.static_shapes = static_shapes or cuda_graph
        self._exact_batches: dict[tuple[int, int], bool] = {}

    @torch.inference_mode()
    def batch_is_exact(self, takes: int, rows: int) -> bool:
        """Whether ``takes`` takes of ``rows`` rows each (2 with guidance) come out of one batch with the very bits
        each has alone, on this device and dtype. A matrix product's kernel, and so its order of summation, may change
        with its number of rows (here MKL keeps it from 2 rows to 8 at musicgen-small's shapes, but not from 1 row to
        2, nor at tiny shapes), so every module of a step that mixes a row's numbers is tried on random rows: a
        layer's projections, norms and attention, and a head. Kept per (takes, rows)."""
        key = (takes, rows)
        if key not in self._exact_batches:
            layer = self.decoder.layers[0]
            modules = [m for m in layer.modules() if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm)]
            inputs = torch.Generator().manual_seed(0)  # never the default generator: the takes' seeds are drawn from it

            def random(*shape: int) -> torch.Tensor:
                return torch.randn(shape, generator=inputs).to(self.model.device, self.model.dtype)

            def same_rows(run: Callable[..., torch.Tensor], *batch: torch.Tensor) -> bool:
                whole = run(*batch)
                return all(
                    torch.equal(run(*(x[k * rows : (k + 1) * rows] for x in batch)), whole[k * rows : (k + 1) * rows])
                    for k in range(takes)
                )

            attention = layer.self_attn
            heads, head_dim = attention.num_heads, attention.head_dim
            # the fixed-shape step attends under a mask, which may pick another attention kernel
            mask = (torch.arange(16, device=self.model.device) < 12)[None, None, None] if self.static_shapes else None
            self._exact_batches[key] = all(
                same_rows(module, random(takes * rows, 1, module.weight.shape[-1]))
                for module in [*modules, self.lm_heads[0]]
            ) and same_rows(
                lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attention.scaling),
                random(takes * rows, heads, 1, head_dim),
                random(takes * rows, heads, 16, head_dim),
                random(takes * rows, heads, 16, head_dim),
            )
        return self._exact_batches[key]

    # -- one generation --------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        text: dict[str, torch.Tensor],
        sampling: Sampling,
        max_new_tokens: int,
        *,
        context_codes: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        on_step: Callable[[torch.Tensor], None] | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Token ids (takes*codebooks, 1 + context + max_new_tokens), delay pattern applied, start token first.

        ``text`` is the tokenizer's input_ids/attention_mask for one prompt, ``context_codes`` (takes*codebooks,
        frames) the codes to continue, ``input_features`` a melody's chroma. ``generators``: one per take, to make
        several takes of the prompt at once, each from its own random stream; without them, one take from torch's
        default stream. ``on_step`` sees the ids so far after every token, like a StoppingCriteria in ``generate``
        (raising from it aborts).
        """
        device = self.model.device
        takes = len(generators) if generators else 1
        rows = takes * self.num_codebooks
        start = torch.full((rows, 1), self.start_token, dtype=torch.long, device=device)
        prompt = start if context_codes is None else torch.cat([start, context_codes.to(device)], dim=-1)
        max_length = prompt.shape[-1] + max_new_tokens
        prompt, pattern = self.model.decoder.build_delay_pattern_mask(prompt, self.start_token, max_length)
        ids = torch.where(pattern == -1, self.start_token, pattern)  # positions not generated yet are overwritten
        first = prompt.shape[-1]
        fed = self.model.decoder.apply_delay_pattern_mask(prompt, pattern)

        conditioning = self._conditioning(text, input_features, sampling.guidance_scale)
        caches, logits = [], []
        for take in fed.split(self.num_codebooks):  # each take's prompt alone: the same prefill call generate() makes
            out = self.model(
                decoder_input_ids=take.repeat((2, 1)) if sampling.cfg else take,
                use_cache=True,
                return_dict=True,
                **conditioning,
            )
            logits.append(out.logits[:, -1].float())
            caches.append(out.cache)
            del out
        buffers = self._load_cache(caches, conditioning, max_length)
        del caches
        draw = self._sampler(sampling, generators)
        step_logits = torch.cat(logits)
        for position in range(first, max_length):
            token = draw(step_logits)
            token = torch.where(pattern[:, position] == -1, token, pattern[:, position])
            ids[:, position] = token
            if on_step is not None:
                on_step(ids[:, : position + 1])
            if position + 1 < max_length:
                fed_token = token.view(takes, 1, -1).expand(takes, 2, -1).reshape(-1) if sampling.cfg else token
                step_logits = self._step(buffers, fed_token, buffers.prefix + position)
        return ids

    def _sampler(
        self, sampling: Sampling, generators: Sequence[torch.Generator] | None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Logits of every take's rows (take after take) → their next tokens, each take's from its own generator."""
        if not generators:
            return lambda logits: next_tokens(logits, sampling)
        return lambda logits: torch.cat(
            [next_tokens(part, sampling, g) for part, g in zip(logits.chunk(len(generators)), generators, strict=True)]
        )

    def _conditioning(
        self, text: dict[str, torch.Tensor], input_features: torch.Tensor | None, guidance: float
    ) -> dict[str, Any]:
        """The model's own generate-time conditioning (encoder states with CFG's null half), as forward() kwargs."""
        config = copy.deepcopy(self.model.generation_config)
        config.guidance_scale = guidance
        config.output_attentions = config.output_hidden_states = False
        kwargs: dict[str, Any] = {"attention_mask": text["attention_mask"]}
        if self.melody:
            if input_features is not None:
                kwargs["input_features"] = input_features
            kwargs = self.model._prepare_encoder_hidden_states_kwargs_for_generation(
                text["input_ids"], kwargs, "input_ids", config
            )
            kwargs.pop("input_features", None)
            return kwargs
        return self.model._prepare_text_encoder_kwargs_for_generation(text["input_ids"], kwargs, "input_ids", config)

    # -- the static cache ------------------------------------------------------------------------------------------
    def _load_cache(self, caches: list[Any], conditioning: dict[str, Any], max_length: int) -> _Buffers:
        """Copy the takes' prefill caches, take after take along the batch, into buffers long enough for the whole
        generation."""
        from transformers.masking_utils import create_bidirectional_mask

        self_caches = [getattr(cache, "self_attention_cache", cache) for cache in caches]
        filled = int(self_caches[0].layers[0].keys.shape[2])
        prefix = int(conditioning["encoder_hidden_states"].shape[1]) if self.melody else 0  # melody's conditioning
        length = prefix + max_length
        positions = self.decoder.embed_positions
        if length > positions.weights.shape[0]:
            positions.make_weights(length, positions.embedding_dim)
        buffers = _Buffers(prefix=prefix, positions=positions.weights[:length])
        for layers in zip(*(cache.layers for cache in self_caches), strict=True):
            rows, heads, _, head_dim = layers[0].keys.shape
            shape = (rows * len(layers), heads, length, head_dim)
            keys, values = layers[0].keys.new_zeros(shape), layers[0].values.new_zeros(shape)
            for index, layer in enumerate(layers):
                keys[index * rows : (index + 1) * rows, :, :filled] = layer.keys
                values[index * rows : (index + 1) * rows, :, :filled] = layer.values
            buffers.keys.append(keys)
            buffers.values.append(values)
        crosses = [cache.cross_attention_cache for cache in caches if hasattr(cache, "cross_attention_cache")]
        if crosses and not self.melody:
            buffers.cross = [
                (torch.cat([c.keys for c in layers]), torch.cat([c.values for c in layers]))
                for layers in zip(*(cross.layers for cross in crosses), strict=True)
            ]
            states = conditioning["encoder_outputs"].last_hidden_state
            mask = create_bidirectional_mask(
                config=self.decoder.config,
                inputs_embeds=states.new_zeros(states.shape[0], 1, self.decoder.config.hidden_size),
                attention_mask=conditioning.get("attention_mask"),
                encoder_hidden_states=states,
            )
            buffers.cross_mask = None if mask is None else mask.repeat(len(caches), *(1,) * (mask.dim() - 1))
        return buffers

    # -- one decoder step ------------------------------------------------------------------------------------------
    def _step(self, buffers: _Buffers, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Float32 logits (rows, vocab) for one token per codebook row at cache ``position``."""
        if not self.static_shapes:
            return self._forward(buffers, tokens, torch.tensor([position], device=tokens.device), position + 1)
        if not self.cuda_graph:
            return self._forward(buffers, tokens, torch.tensor([position], device=tokens.device), None)
        if buffers.graph is None:
            try:
                buffers.graph = self._capture(buffers, tokens.clone(), torch.tensor([position], device=tokens.device))
            except RuntimeError as exc:  # an op this torch/driver cannot capture: same maths, launched eagerly
                warnings.warn(f"MusicGen fast decode: CUDA graph capture failed, running without ({exc})", stacklevel=2)
                self.cuda_graph = False
                return self._step(buffers, tokens, position)
        return buffers.graph.replay(tokens, position)

    def _capture(self, buffers: _Buffers, tokens: torch.Tensor, position: torch.Tensor) -> _Graph:
        """Record the fixed-shape step (once per generation: it is recorded on its buffers) for replay on its later
        steps.

        The warm-up run on a side stream (allocator, cuBLAS handles) computes this very step, so the K/V it writes
        are the ones the replay writes again.
        """
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._forward(buffers, tokens, position, None)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._forward(buffers, tokens, position, None)
        return _Graph(graph, tokens, position, logits)

    def _forward(
        self, buffers: _Buffers, tokens: torch.Tensor, position: torch.Tensor, length: int | None
    ) -> torch.Tensor:
        """The decoder's forward for one step, with the decoder's own modules. ``length`` None: attend over the whole
        buffer, masking positions after ``position`` (fixed shapes); otherwise over the first ``length`` only."""
        codes = tokens.view(-1, self.num_codebooks)
        hidden = sum(self.decoder.embed_tokens[k](codes[:, k]) for k in range(self.num_codebooks))
        hidden = (hidden + buffers.positions.index_select(0, position))[:, None]  # (batch, 1, dim)
        mask = None
        if length is None:
            mask = (torch.arange(buffers.positions.shape[0], device=tokens.device) <= position)[None, None, None]
        for index, layer in enumerate(self.decoder.layers):
            keys, values = buffers.keys[index], buffers.values[index]
            write = (keys, values, position)
            if length is not None:
                keys, values = keys[:, :, :length], values[:, :, :length]
            hidden = hidden + self._attend(
                layer.self_attn, layer.self_attn_layer_norm(hidden), keys, values, mask, write
            )
            if buffers.cross:
                cross_keys, cross_values = buffers.cross[index]
                normed = layer.encoder_attn_layer_norm(hidden)
                hidden = hidden + self._attend(layer.encoder_attn, normed, cross_keys, cross_values, buffers.cross_mask)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
        hidden = self.decoder.layer_norm(hidden)
        logits = torch.stack([head(hidden) for head in self.lm_heads], dim=1)  # (batch, codebooks, 1, vocab)
        return logits.reshape(-1, logits.shape[-1]).float()

    @staticmethod
    def _attend(
        attention: Any,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None,
        write: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One attention block for a single query; with ``write`` its own key/value go into the cache first."""
        batch = hidden.shape[0]
        heads, head_dim = attention.num_heads, attention.head_dim
        query = attention.q_proj(hidden).view(batch, 1, heads, head_dim).transpose(1, 2)
        if write is not None:
            cache_keys, cache_values, position = write
            cache_keys.index_copy_(
                2, position, attention.k_proj(hidden).view(batch, 1, heads, head_dim).transpose(1, 2)
            )
            cache_values.index_copy_(
                2, position, attention.v_proj(hidden).view(batch, 1, heads, head_dim).transpose(1, 2)
            )
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=attention.scaling)
        return attention.out_proj(out.transpose(1, 2).reshape(batch, 1, heads * head_dim))
