"""MusicGen speed: ttag's runner through a warm worker vs raw transformers ``generate``; or, with ``--decoders``,
the fast decode loop (runners/musicgen/fast_decode.py) vs ``generate``'s loop, in-process.

    .venv/bin/python bench/bench_musicgen.py [--size tiny|small] [--seconds 5] [--repeats 3] [--threads 1] [--takes 1]
        [--stream]
    .venv/bin/python bench/bench_musicgen.py --decoders [--size small] [--seconds 5 10] [--step-at 1503]
    .venv/bin/python bench/bench_musicgen.py --decoders --device cuda [--size small medium large] [--seconds 10 30]

Worker mode builds a random-weight checkpoint with tests/tiny_musicgen.py in a temp folder (offline): ``tiny`` for
quick runs, ``small`` with facebook/musicgen-small's architecture sizes (realistic compute, no download). Warms both
sides up once, then times each side ``--repeats`` times, interleaved, and prints the medians side by side with the
ratio. ttag's time is measured from submit to Done, so it includes the worker round trip, progress messages and the
clip transfer. With ``--stream`` it also reports when the first streamed audio arrived, as a fraction of the run.
With ``--takes N`` each side makes N takes: ttag as one request (its fast decoder makes up to four together),
transformers as N ``generate`` calls seeded as ttag seeds its takes; in decoder mode the fast loop makes all N in one
batch.

Decoder mode builds random-weight models in memory (``--size``: small/medium/large have facebook/musicgen-*'s decoder
shapes) and times the token loop only — from the call to the last token, EnCodec decoding excluded — of both loops
with the same seed, on CPU (and then checks the tokens are equal; float32 unless ``--dtype`` says otherwise) or on
CUDA in ``--dtype`` (float16 by default) with CUDA graphs. ``--step-at N`` adds the time of one decoder step with N
positions already in the cache (1503 = the end of a 30 s window), for when a whole 30 s run is too slow for the
machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tiny_musicgen  # noqa: E402

from runners.contract import RunnerSettings  # noqa: E402
from runners.musicgen import MODELS  # noqa: E402
from runners.registry import Registry  # noqa: E402
from runners.request import validate_request  # noqa: E402
from ttag_tui.backend.events import Chunk, Done  # noqa: E402
from ttag_tui.bridge import Bridge, BridgeSettings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(tiny_musicgen.SIZES), nargs="+", default=None)
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--takes",
        type=int,
        default=1,
        help="takes per request (ttag's fast decoder makes up to four together; transformers one by one); decoder"
        " mode: the fast loop's takes all in one batch",
    )
    parser.add_argument("--stream", action="store_true", help="time ttag's streaming path instead")
    parser.add_argument("--decoders", action="store_true", help="fast decode loop vs generate(), in-process")
    parser.add_argument("--device", default="cpu", help="decoder mode: cpu or cuda")
    parser.add_argument(
        "--dtype",
        choices=("float16", "bfloat16", "float32"),
        default=None,
        help="unset: float16 on CUDA, float32 on CPU",
    )
    parser.add_argument("--step-at", type=int, nargs="*", default=[], help="decoder mode: step time at N cached")
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="decoder mode: runs of both loops, the order alternating (a box whose speed drifts favours neither),"
        " and the median ratio",
    )
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")

    import torch

    torch.set_num_threads(args.threads)
    if args.decoders:
        return decoder_bench(args)
    if args.device != "cpu":
        parser.error("--device is for --decoders; the worker mode runs on the worker's configured device")
    for size in args.size or ["tiny"]:
        for seconds in args.seconds:
            worker_bench(args, size, seconds)
    return 0


def worker_bench(args: argparse.Namespace, size: str, seconds: float) -> None:
    """ttag through a warm worker vs transformers' generate(), both ending in audio."""
    import torch
    import transformers

    folder = tiny_musicgen.build_musicgen(Path(tempfile.mkdtemp(prefix="ttag-bench-")) / size, size=size)
    spec = replace(MODELS[0], id="tiny", hub_repo=str(folder))
    registry = Registry([spec])
    request = validate_request(
        {"prompt": "lofi hip hop with piano", "model": "tiny", "duration": seconds, "seed": 1, "takes": args.takes},
        registry,
    )
    frames = -(-round(seconds * tiny_musicgen.SAMPLE_RATE) // 640)

    model = transformers.MusicgenForConditionalGeneration.from_pretrained(folder).eval()
    inputs = transformers.AutoTokenizer.from_pretrained(folder)([request.prompt], return_tensors="pt")

    def raw() -> None:
        for take in range(request.takes):  # as ttag's takes are seeded: take k is seed + k's one-take request
            torch.manual_seed(request.take_seed(take))
            model.generate(
                **inputs, do_sample=True, temperature=1.0, top_k=250, guidance_scale=3.0, max_new_tokens=frames + 3
            )

    settings = BridgeSettings(RunnerSettings(threads=args.threads), idle_unload_s=0)
    with Bridge(registry, settings) as bridge:
        first_audio: list[float] = []  # seconds from submit to the first streamed chunk, as a fraction of the run

        def ttag() -> None:
            started = time.perf_counter()
            job = bridge.submit(request, stream=args.stream)
            first = None
            for event in job.events(timeout=1800):
                if first is None and isinstance(event, Chunk):
                    first = time.perf_counter() - started
            if job.outcome is not None and not isinstance(job.outcome, Done):
                raise SystemExit(f"ttag failed: {job.outcome}")
            if first is not None:
                first_audio.append(first / (time.perf_counter() - started))

        ttag()  # start the worker and load the model: not part of the measurement
        raw()
        first_audio.clear()
        times: dict[str, list[float]] = {"transformers": [], "ttag": []}
        for _ in range(args.repeats):  # interleaved, so a busy machine slows both alike
            for name, run in (("transformers", raw), ("ttag", ttag)):
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)

    steps = (frames + 3) * request.takes
    raw_s, ttag_s = (statistics.median(times[k]) for k in ("transformers", "ttag"))
    print(
        f"{size} MusicGen, {request.takes} take(s) of {seconds:g} s of audio ({steps} steps in all), "
        f"{args.threads} thread(s), median of {args.repeats}{', streaming' if args.stream else ''}"
    )
    print(f"  transformers generate: {raw_s:7.3f} s  ({raw_s / steps * 1000:5.2f} ms/step)")
    print(f"  ttag via worker:       {ttag_s:7.3f} s  ({ttag_s / steps * 1000:5.2f} ms/step)")
    print(f"  ratio ttag / transformers: {ttag_s / raw_s:.2f}")
    if first_audio:
        print(f"  first streamed audio after {statistics.median(first_audio) * 100:.1f} % of ttag's run")


def decoder_bench(args: argparse.Namespace) -> int:
    """The fast loop vs generate()'s, token loops only, same model, seed and sampling (MusicGen's defaults)."""
    import torch
    import transformers

    from runners.musicgen.fast_decode import FastDecoder, Sampling
    from runners.musicgen.streaming import decoder_apply, delay_pattern

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print(f"--device {args.device}: torch {torch.__version__} sees no CUDA device here; run this on a GPU machine")
        return 2
    if not cuda and args.device != "cpu":
        print(f"--device {args.device}: only cpu and cuda are supported")
        return 2
    dtype = getattr(torch, args.dtype or ("float16" if cuda else "float32"))
    sizes = args.size or (["small", "medium", "large"] if cuda else ["small"])
    params = dict(do_sample=True, temperature=1.0, top_k=250, guidance_scale=3.0)
    text = dict(tiny_musicgen._tokenizer()(["lofi hip hop with piano"], return_tensors="pt"))
    text = {k: v.to(args.device) for k, v in text.items()}
    where = f"{args.device}, {str(dtype).removeprefix('torch.')}, " + (
        "CUDA graphs, wall time" if cuda else f"{args.threads} thread(s), CPU time of this process"
    )
    # On a CPU, time is this process's CPU time: on a shared machine wall time mostly measures the neighbours.
    now = time.perf_counter if cuda else time.process_time

    class Clock(transformers.StoppingCriteria):
        """Per-step timestamps (the StoppingCriteria is generate()'s per-token hook) and the last ids."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.wall = time.perf_counter()  # wall time too: with several threads, CPU time counts each of them
            self.wall_s = 0.0

        def __call__(self, ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
            self.tick(ids)
            return torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)

        def tick(self, ids: torch.Tensor) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.times.append(now())
            self.ids = ids
            self.wall_s = time.perf_counter() - self.wall

    def transformers_loop(model: Any, steps: int, takes: int = 1) -> tuple[float, Clock]:
        """generate() once per take, seeded as ttag seeds its takes; the clock's ids are every take's, stacked."""
        clock = Clock()
        start = model.generation_config.decoder_start_token_id
        started = now()
        ids = []
        for take in range(takes):
            torch.manual_seed(1 + take)
            model.generate(
                **text, **params, max_new_tokens=steps, stopping_criteria=transformers.StoppingCriteriaList([clock])
            )
            prompt = torch.full((clock.ids.shape[0], 1), start, device=clock.ids.device)
            ids.append(decoder_apply(clock.ids, delay_pattern(model.decoder, prompt, start, clock.ids.shape[-1])))
        clock.ids = torch.cat(ids)
        return clock.times[-1] - started, clock

    def fast_loop(decoder: FastDecoder, steps: int, takes: int = 1) -> tuple[float, Clock]:
        """The fast loop's takes made together, each from its own generator seeded as generate()'s."""
        clock = Clock()
        torch.manual_seed(1)
        generators = (
            [torch.Generator(args.device).manual_seed(1 + take) for take in range(takes)] if takes > 1 else None
        )
        started = now()
        decoder.generate(text, Sampling.from_kwargs(params), steps, on_step=clock.tick, generators=generators)
        return clock.times[-1] - started, clock

    def step_ms(clock: Clock, last: int | None = None) -> float:
        """Median milliseconds between consecutive tokens (robust to a busy machine's stalls), or over the last N."""
        times = clock.times[-(last + 1) :] if last else clock.times
        return statistics.median(b - a for a, b in itertools.pairwise(times)) * 1000

    print(f"MusicGen token loop, fast vs transformers generate(), {where}, sampling top-k 250, guidance 3")
    for size in sizes:
        started = time.perf_counter()
        model = tiny_musicgen.musicgen_model(size=size, device=args.device).to(dtype)
        decoder = FastDecoder(model, cuda_graph=cuda)
        print(
            f"{size}: {sum(p.numel() for p in model.decoder.parameters()) / 1e6:.1f} M decoder parameters, "
            f"built in {time.perf_counter() - started:.0f} s"
        )
        transformers_loop(model, 4)  # warm-up: allocator, kernels, first-call costs
        fast_loop(decoder, 4)
        for seconds in args.seconds:
            steps = -(-round(seconds * tiny_musicgen.SAMPLE_RATE) // 640) + 3
            takes = f"{args.takes} takes of " if args.takes > 1 else ""
            rate = "take-steps/s" if args.takes > 1 else "steps/s"
            print(f"  {takes}{seconds:g} s of audio ({steps} steps a take)")
            ratios, wall_ratios = [], []
            for pair in range(args.pairs):
                runs = {}
                for name in ("transformers", "fast") if pair % 2 == 0 else ("fast", "transformers"):
                    runs[name] = (
                        transformers_loop(model, steps, args.takes)
                        if name == "transformers"
                        else fast_loop(decoder, steps, args.takes)
                    )
                (hf_s, hf_clock), (fast_s, fast_clock) = runs["transformers"], runs["fast"]
                same = f"tokens equal: {agreement(fast_clock.ids, hf_clock.ids)}"
                if args.takes > 1:  # the runner batches a request's takes only where this holds
                    same += (
                        f", a take's bits the same in a batch as alone here: {decoder.batch_is_exact(args.takes, 2)}"
                    )
                order = ", transformers first" if pair % 2 == 0 else ", fast first"
                print(f"   {f'pair {pair + 1}{order}, ' if args.pairs > 1 else ''}{same}")
                for name, total, clock in (("transformers", hf_s, hf_clock), ("fast", fast_s, fast_clock)):
                    print(
                        f"    {name:12s} {total:8.2f} s  {steps * args.takes / total:7.1f} {rate}  real-time factor "
                        f"{total / (seconds * args.takes):6.3f}  median {step_ms(clock):6.1f} ms/step, "
                        f"last 50 {step_ms(clock, 50):6.1f}" + ("" if cuda else f"  (wall {clock.wall_s:.2f} s)")
                    )
                ratios.append(fast_s / hf_s)
                wall_ratios.append(fast_clock.wall_s / hf_clock.wall_s)
                wall_ratio = "" if cuda else f" (wall time: {wall_ratios[-1]:.2f})"
                print(f"    ratio fast / transformers: {ratios[-1]:.2f}{wall_ratio}")
            if args.pairs > 1:
                wall = "" if cuda else f" (wall time: {statistics.median(wall_ratios):.2f})"
                listed = ", ".join(f"{r:.2f}" for r in ratios)
                print(f"  median ratio over {args.pairs} pairs: {statistics.median(ratios):.2f}{wall} [{listed}]")
        for cached in args.step_at:
            hf_ms, fast_ms = step_times(model, decoder, text, cached, args.repeats, now)
            print(
                f"  one step with {cached} positions cached (median of {args.repeats}): transformers "
                f"{hf_ms:.1f} ms, fast {fast_ms:.1f} ms, ratio {fast_ms / hf_ms:.2f}"
            )
        del model, decoder
    return 0


def agreement(ours: Any, theirs: Any) -> str:
    """``True``, or where the two token sequences part: on CUDA (float16, the fixed-shape graph step) a sampled token
    may differ once logits differ in their last bits, and everything after it follows from that token."""
    import torch

    if ours.shape == theirs.shape and torch.equal(ours, theirs):
        return "True"
    width = min(ours.shape[-1], theirs.shape[-1])
    differ = (ours[..., :width] != theirs[..., :width]).any(dim=0).nonzero()
    if not differ.numel():
        return f"False (lengths {ours.shape[-1]} and {theirs.shape[-1]})"
    return f"False (from position {int(differ[0])} of {width})"


def step_times(
    model: Any, decoder: Any, text: dict[str, Any], cached: int, repeats: int, now: Callable[[], float]
) -> tuple[float, float]:
    """Milliseconds of one CFG decoder step with ``cached`` positions in the cache, for generate()'s forward (which
    appends to a DynamicCache by concatenation) and the fast loop's step, both on the same random cache contents.

    Reaches into FastDecoder's internals on purpose: a whole 30 s run just to time its last steps takes too long
    on a CPU.
    """
    import torch

    device = model.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        conditioning = decoder._conditioning(text, None, 3.0)
        token = torch.full((2 * decoder.num_codebooks, 1), decoder.start_token, device=device)
        cache = model(decoder_input_ids=token, use_cache=True, **conditioning).cache
        for layer in cache.self_attention_cache.layers:
            shape = (*layer.keys.shape[:2], cached, layer.keys.shape[3])
            layer.keys = torch.randn(shape, dtype=layer.keys.dtype, device=device)
            layer.values = torch.randn(shape, dtype=layer.values.dtype, device=device)
        take = decoder._load_cache([cache], conditioning, cached + repeats)
        times: dict[str, list[float]] = {"hf": [], "fast": []}
        for index in range(repeats):  # interleaved: a busy machine slows both alike
            started = now()
            cache = model(decoder_input_ids=token, cache=cache, use_cache=True, **conditioning).cache
            sync()
            times["hf"].append(now() - started)
            started = now()
            decoder._step(take, token[:, 0], cached + index)
            sync()
            times["fast"].append(now() - started)
    return statistics.median(times["hf"]) * 1000, statistics.median(times["fast"]) * 1000


if __name__ == "__main__":
    sys.exit(main())
