"""What one MusicGen decoder step cannot go below on this CPU: the weight read and the attention over the cache, each
timed alone at the step's own shapes, beside the machine's plain read speed — to tell whether the fast decode loop
(runners/musicgen/fast_decode.py) still has room, and where.

    .venv/bin/python bench/bench_step_floor.py [--size small] [--positions 750 1500] [--threads 2] [--repeats 7]

Weights: every matrix a step multiplies (per layer q, k, v, out, cross-attention q and out, fc1, fc2; then the four
codebook heads), two rows (guidance's conditional and null halves), with ``F.linear`` as the loop calls it; the same
with q, k and v in one matrix (and whether that gives the same bits). Attention: one query per head over N cached
positions in every layer, with SDPA (the kernel generate() and the fast loop both use) and written out as matmuls and
softmax (other bits). Each figure is the best of ``--repeats`` runs, as GB/s of what it reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]


def best_of(repeats: int, work: Callable[[], object]) -> float:
    work()  # warm: page the tensors in, let the kernels pick their paths
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="small", choices=("small", "medium", "large"))
    parser.add_argument("--positions", type=int, nargs="+", default=[750, 1500])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from bench_foundation import machine
    from tiny_musicgen import SIZES

    print(machine())
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = SIZES[args.size]["decoder"]
    width, ffn, layers, heads = (
        shape["hidden_size"],
        shape["ffn_dim"],
        shape["num_hidden_layers"],
        shape["num_attention_heads"],
    )
    codebooks, vocab, rows = 4, 2048 + 1, 2

    def report(what: str, seconds: float, nbytes: int) -> None:
        print(f"  {what:<66} {seconds * 1e3:8.2f} ms  {nbytes / seconds / 1e9:6.1f} GB/s")

    print(f"{args.size}: {layers} layers of width {width}, {heads} heads; {args.threads} threads; float32; {rows} rows")
    plain = torch.randn(2048, 64 * 1024)  # 512 MiB: far beyond any cache
    report(
        "one 512 MiB matrix (the machine's read speed)",
        best_of(args.repeats, lambda: F.linear(torch.randn(rows, plain.shape[1]), plain)),
        plain.numel() * 4,
    )

    square = [[torch.randn(width, width) for _ in range(6)] for _ in range(layers)]  # q k v out, cross q and out
    up = [torch.randn(ffn, width) for _ in range(layers)]
    down = [torch.randn(width, ffn) for _ in range(layers)]
    lm_heads = [torch.randn(vocab, width) for _ in range(codebooks)]
    x, h = torch.randn(rows, 1, width), torch.randn(rows, 1, ffn)

    def step_weights() -> None:
        for matrices, fc1, fc2 in zip(square, up, down, strict=True):
            for matrix in matrices:
                F.linear(x, matrix)
            F.linear(x, fc1)
            F.linear(h, fc2)
        for head in lm_heads:
            F.linear(x, head)

    weight_bytes = 4 * (layers * (6 * width * width + 2 * ffn * width) + codebooks * vocab * width)
    weights_s = best_of(args.repeats, step_weights)
    report(f"a step's weights ({weight_bytes / 2**20:.0f} MiB), matrix by matrix", weights_s, weight_bytes)

    fused = [torch.cat(matrices[:3]) for matrices in square]
    qkv_bytes = 4 * layers * 3 * width * width
    separate = best_of(args.repeats, lambda: [F.linear(x, m) for matrices in square for m in matrices[:3]])
    together = best_of(args.repeats, lambda: [F.linear(x, m) for m in fused])
    same = all(
        torch.equal(torch.cat([F.linear(x, m) for m in matrices[:3]], -1), F.linear(x, joined))
        for matrices, joined in zip(square, fused, strict=True)
    )
    report("q, k, v: three matrices a layer", separate, qkv_bytes)
    report(f"q, k, v: one matrix a layer (same bits: {'yes' if same else 'no'})", together, qkv_bytes)

    head_dim = width // heads
    scale = head_dim**-0.5
    query = torch.randn(rows, heads, 1, head_dim)
    for positions in args.positions:
        cache = [
            (torch.randn(rows, heads, positions, head_dim), torch.randn(rows, heads, positions, head_dim))
            for _ in range(layers)
        ]
        cache_bytes = 4 * layers * 2 * rows * heads * positions * head_dim
        flash = best_of(
            args.repeats, lambda cache=cache: [F.scaled_dot_product_attention(query, k, v) for k, v in cache]
        )
        math = best_of(
            args.repeats,
            lambda cache=cache: [torch.softmax(query @ k.transpose(-1, -2) * scale, -1) @ v for k, v in cache],
        )
        report(f"attention over {positions} cached positions, SDPA", flash, cache_bytes)
        report(f"attention over {positions} cached positions, matmul + softmax (other bits)", math, cache_bytes)
        print(f"  floor of a step at {positions} positions (weights + SDPA): {(weights_s + flash) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
