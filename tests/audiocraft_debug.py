"""A tiny random MAGNeT for the audiocraft tests (audiocraft has a 'debug' MusicGen and AudioGen, but no MAGNeT).

Imported inside the audiocraft environment only (by the worker through a spec's ``extra['factory']``, and by the tests'
direct-call script), never by pytest itself. Built like ``audiocraft.models.loaders.load_lm_model_magnet`` builds a
real one — memory-efficient attention and the xformers backend included — so the CPU attention shim is exercised.
"""

from __future__ import annotations

from typing import Any

SEGMENT_S = 1  # the debug MAGNeT's window: 25 frames at the debug codec's 25 Hz


def build_debug_magnet(device: str = "cpu") -> Any:
    import omegaconf
    import torch
    from audiocraft.models import MAGNeT, builders
    from audiocraft.models.lm_magnet import MagnetLMModel
    from audiocraft.modules.codebooks_patterns import ParallelPatternProvider
    from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider, LUTConditioner
    from audiocraft.modules.transformer import set_efficient_attention_backend

    torch.manual_seed(1234)  # the same random weights in the worker and in the direct call
    compression = builders.get_debug_compression_model(device)
    dim = 16
    conditioner = LUTConditioner(n_bins=128, dim=dim, output_dim=dim, tokenizer="whitespace")
    set_efficient_attention_backend("xformers")
    lm = (
        MagnetLMModel(
            pattern_provider=ParallelPatternProvider(n_q=4),
            condition_provider=ConditioningProvider({"description": conditioner}),
            fuser=ConditionFuser({"cross": ["description"], "prepend": [], "sum": [], "input_interpolate": []}),
            n_q=4,
            card=400,
            dim=dim,
            num_heads=4,
            num_layers=2,
            cross_attention=True,
            causal=False,
            memory_efficient=True,
            subcodes_context=5,
            compression_model_framerate=25,
            segment_duration=SEGMENT_S,
            span_len=3,
            device=device,
            dtype=torch.float32,
        )
        .to(device)
        .eval()
    )
    lm.cfg = omegaconf.OmegaConf.create({"dataset": {"segment_duration": SEGMENT_S}})
    return MAGNeT(name="debug-magnet", compression_model=compression, lm=lm)
