"""``ttag server --cluster`` measured on a Ray cluster of a head and two nodes on this machine (a custom resource
stands in for each node's GPU), side by side in one run:

    /work/ray-venv/bin/python bench/bench_cluster.py [--jobs 8] [--seconds 20] [--rounds 6] [--repeats 3]

1. Throughput: ``--jobs`` concurrent ``synth`` jobs of ``--seconds`` of audio each through the ClusterBackend, on one
   node (one replica) and on two: seconds of audio made per wall-clock second. On a 2-core box both nodes share the
   same two cores, so the ratio is bounded by the cores, not by ttag or Ray.
2. Model loads for a mixed-model workload (three models, ``--rounds`` jobs each of ~1.5 s, shuffled, one and then
   two at a time) on two replicas that keep two models warm each: Serve's model multiplexing against its plain
   routing (power of two choices, blind to which replica holds which model). A load is a job whose worker reported
   ``loading``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _name in ("CONFIG", "DATA", "OUTPUT"):
    os.environ.setdefault(f"TTAG_{_name}_DIR", tempfile.mkdtemp(prefix=f"ttag-bench-{_name.lower()}-"))

import ray  # noqa: E402
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from runners.registry import Registry, default_registry  # noqa: E402
from runners.request import validate_request  # noqa: E402
from tests.fake_runners import fake_registry  # noqa: E402
from ttag_tui.backend.cluster import ClusterBackend, ClusterSettings  # noqa: E402
from ttag_tui.backend.events import Progress  # noqa: E402
from ttag_tui.config import Config  # noqa: E402

# Three test runners whose jobs take ~1.5 s (steps × their pause per step); a replica keeps two models warm.
MIXED = {"slow-tone": 8, "stepped-stream": 15, "clock": 30}


def throughput(address: str, resource: str, jobs: int, seconds: float, repeats: int) -> tuple[int, float]:
    """(replicas, seconds of audio per second) for ``jobs`` concurrent synth jobs: the best of ``repeats`` batches
    (the cores are shared with other work; the best batch is the one it disturbed least)."""
    registry = default_registry()
    with ClusterBackend(registry, Config(), ClusterSettings(address=address, resource=resource)) as backend:
        warm = validate_request({"model": "synth", "prompt": "warm up", "duration": 1.0}, registry)
        for _ in range(backend.replicas):  # every replica's worker started: the figure is generation, not start-up
            backend.submit(warm).result(timeout=300)
        requests = [
            validate_request({"model": "synth", "prompt": f"lofi piano {i}", "duration": seconds}, registry)
            for i in range(jobs)
        ]
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for job in [backend.submit(r) for r in requests]:
                job.result(timeout=600)
            best = min(best, time.perf_counter() - started)
        return backend.replicas, jobs * seconds / best


def loads(address: str, route_by_model: bool, rounds: int, at_once: int) -> tuple[int, int]:
    """(loads, jobs) for the mixed workload, ``at_once`` jobs at a time on two replicas."""
    registry: Registry = fake_registry()
    settings = ClusterSettings(address=address, resource="ttag", models_per_replica=2, route_by_model=route_by_model)
    order = [m for m in MIXED for _ in range(rounds)]
    random.Random(7).shuffle(order)
    with ClusterBackend(registry, Config(), settings) as backend:

        def run(model: str) -> bool:
            fields = {"model": model, "prompt": "x", "duration": 0.5, "steps": MIXED[model]}
            job = backend.submit(validate_request(fields, registry))
            job.result(timeout=300)
            return any(isinstance(e, Progress) and e.phase == "loading" for e in job.events())

        with ThreadPoolExecutor(at_once) as pool:
            loaded = list(pool.map(run, order))
    return sum(loaded), len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={"ttag": 1, "one_node": 1})
    cluster.add_node(num_cpus=1, resources={"ttag": 1})
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    try:
        rows = [throughput(cluster.address, r, args.jobs, args.seconds, args.repeats) for r in ("one_node", "ttag")]
        mixed = {(by_model, n): loads(cluster.address, by_model, args.rounds, n) for n in (1, 2) for by_model in (1, 0)}
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(f"cores: {os.cpu_count()}; {args.jobs} concurrent synth jobs of {args.seconds:g} s, best of {args.repeats}")
    print("| replicas (nodes) | audio s / s |")
    print("|---|---|")
    for replicas, rate in rows:
        print(f"| {replicas} | {rate:.1f} |")
    print(f"scaling 1 → 2 nodes: {rows[1][1] / rows[0][1]:.2f}x")
    print(f"mixed workload: {len(MIXED)} models x {args.rounds} jobs, 2 replicas that keep 2 models warm each")
    print("| routing | loads, 1 job at a time | loads, 2 at a time | jobs |")
    print("|---|---|---|---|")
    for by_model, name in ((1, "multiplexed (by model)"), (0, "plain (power of two choices)")):
        print(f"| {name} | {mixed[by_model, 1][0]} | {mixed[by_model, 2][0]} | {mixed[by_model, 1][1]} |")


if __name__ == "__main__":
    main()
