"""ttag's MusicGen runner (through a warm worker) vs raw transformers ``generate``, same model, same params.

    .venv/bin/python bench/bench_musicgen.py [--size tiny|small] [--seconds 5] [--repeats 3] [--threads 1] [--stream]

Builds a random-weight checkpoint with tests/tiny_musicgen.py in a temp folder (offline): ``tiny`` for quick runs,
``small`` with facebook/musicgen-small's architecture sizes (realistic compute, no download). Warms both sides up
once, then times each side ``--repeats`` times, interleaved, and prints the medians side by side with the ratio.
ttag's time is measured from submit to Done, so it includes the worker round trip, progress messages and the clip
transfer. With ``--stream`` it also reports when the first streamed audio arrived, as a fraction of the whole run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

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
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stream", action="store_true", help="time ttag's streaming path instead")
    args = parser.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    folder = tiny_musicgen.build_musicgen(Path(tempfile.mkdtemp(prefix="ttag-bench-")) / args.size, size=args.size)
    spec = replace(MODELS[0], id="tiny", hub_repo=str(folder))
    registry = Registry([spec])
    request = validate_request(
        {"prompt": "lofi hip hop with piano", "model": "tiny", "duration": args.seconds, "seed": 1}, registry
    )
    frames = -(-round(args.seconds * tiny_musicgen.SAMPLE_RATE) // 640)

    model = transformers.MusicgenForConditionalGeneration.from_pretrained(folder).eval()
    inputs = transformers.AutoTokenizer.from_pretrained(folder)([request.prompt], return_tensors="pt")

    def raw() -> None:
        torch.manual_seed(1)
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

    steps = frames + 3
    raw_s, ttag_s = (statistics.median(times[k]) for k in ("transformers", "ttag"))
    print(
        f"{args.size} MusicGen, {args.seconds:g} s of audio ({steps} steps), {args.threads} thread(s), "
        f"median of {args.repeats}{', streaming' if args.stream else ''}"
    )
    print(f"  transformers generate: {raw_s:7.3f} s  ({raw_s / steps * 1000:5.2f} ms/step)")
    print(f"  ttag via worker:       {ttag_s:7.3f} s  ({ttag_s / steps * 1000:5.2f} ms/step)")
    print(f"  ratio ttag / transformers: {ttag_s / raw_s:.2f}")
    if first_audio:
        print(f"  first streamed audio after {statistics.median(first_audio) * 100:.1f} % of ttag's run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
