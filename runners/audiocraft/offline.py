"""Make audiocraft 1.3.0 run offline and on CPU. Imported in the audiocraft worker only; :func:`apply` is idempotent.

What it fixes, and why (measured on a machine with no network, no ffmpeg and no GPU; see shared/notes/audiocraft.md):

* **Downloads.** audiocraft's loaders call ``hf_hub_download`` without ``local_files_only``: a missing checkpoint would
  start a multi-GB fetch inside a generate. ``HF_HUB_OFFLINE=1`` is set before huggingface_hub is imported (the runner
  module does it), so a missing file fails at once and the runner names the command that downloads it.
* **spaCy.** The word tokenizer of LUT conditioners (audiocraft's debug models) calls ``spacy.load('en_core_web_sm')``
  and, when that package is missing, ``spacy.cli.download`` — a ConnectionError offline. :func:`_patch_spacy` makes a
  missing pipeline package load as ``spacy.blank(lang)`` plus a component that lemmatises to the lower-cased word
  (a blank pipeline has no lemmatizer, and audiocraft would turn every word into an empty lemma).
* **MAGNeT on CPU.** The MAGNeT loader switches audiocraft to xformers' ``memory_efficient_attention``, which has no
  CPU kernel. :func:`_patch_attention` routes CPU calls to ``torch.nn.functional.scaled_dot_product_attention``
  (xformers' layout is [B, T, H, D], SDPA's [B, H, T, D]); CUDA calls still go to xformers.
* **ffmpeg.** ``audiocraft.data.audio.audio_write`` shells out to the ffmpeg program. The runner never calls it: the
  worker returns float arrays and ttag writes files with soundfile; audio inputs are read with soundfile too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_applied = False
LEMMA_COMPONENT = "ttag_lowercase_lemma"


def set_offline_environment() -> None:
    """Before huggingface_hub is imported: never download from inside a worker."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def apply() -> None:
    """Install every shim (after ``import audiocraft.models``)."""
    global _applied
    if _applied:
        return
    _patch_spacy()
    _patch_attention()
    _applied = True


def _patch_spacy() -> None:
    import spacy
    from spacy.language import Language

    if LEMMA_COMPONENT not in Language.factories:

        @Language.component(LEMMA_COMPONENT)
        def _lowercase_lemma(doc: Any) -> Any:
            for token in doc:
                token.lemma_ = token.lower_
            return doc

    original = spacy.load

    def load(name: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(name, *args, **kwargs)
        except OSError:
            # Only a pipeline *package* name (en_core_web_sm) falls back; a bad path stays an error.
            if not isinstance(name, str) or os.sep in name or "_" not in name:
                raise
            print(
                f"ttag: spaCy pipeline {name!r} is not installed; using a blank {name.split('_')[0]!r} pipeline",
                file=sys.stderr,
            )
            nlp = spacy.blank(name.split("_")[0])
            nlp.add_pipe(LEMMA_COMPONENT)
            return nlp

    load.__wrapped__ = original  # type: ignore[attr-defined]
    spacy.load = load


class _CpuAttentionOps:
    """Stands in for ``xformers.ops`` inside audiocraft's transformer: SDPA on CPU, xformers elsewhere."""

    def __init__(self, ops: Any) -> None:
        self._ops = ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    def memory_efficient_attention(
        self, q: Any, k: Any, v: Any, attn_bias: Any = None, p: float = 0.0, **kwargs: Any
    ) -> Any:
        if q.device.type == "cuda":
            return self._ops.memory_efficient_attention(q, k, v, attn_bias, p=p, **kwargs)
        return sdpa_from_xformers_layout(q, k, v, attn_bias, p)


def sdpa_from_xformers_layout(q: Any, k: Any, v: Any, attn_bias: Any = None, p: float = 0.0) -> Any:
    """xformers' memory_efficient_attention ([B, T, H, D], bias None / LowerTriangularMask / tensor) through SDPA."""
    import torch.nn.functional as F
    from xformers.ops import LowerTriangularMask

    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    causal = isinstance(attn_bias, LowerTriangularMask)
    mask = None if causal or attn_bias is None else attn_bias.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
    return out.transpose(1, 2)


def _patch_attention() -> None:
    from audiocraft.modules import transformer

    if not isinstance(transformer.ops, _CpuAttentionOps):
        transformer.ops = _CpuAttentionOps(transformer.ops)
