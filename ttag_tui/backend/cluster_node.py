"""What runs on each cluster node: a Serve replica around ttag's own :class:`~ttag_tui.bridge.Bridge`, and the
directory where replicas say what they hold. Imported by :mod:`ttag_tui.backend.cluster` only, once Ray is wanted.

The replica adds no job logic of its own: the bridge runs the job in the runner's worker process (warm models, cancel
then kill, crash recovery), and the replica relays the job's events as :func:`~ttag_tui.backend.cluster.to_wire`
items. Serve's model multiplexing decides which models a replica keeps warm; evicting one unloads it from the bridge.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray import serve

from runners.registry import ModelSpec, Registry
from runners.request import GenerationRequest
from ttag_tui.backend.cluster import to_wire
from ttag_tui.backend.events import ClipReady
from ttag_tui.bridge import Bridge, BridgeSettings
from ttag_tui.config import Config


class Directory:
    """Each replica's latest report (node, GPUs, warm models, loads), for ``/api/health`` and ``ttag cluster status``.

    Owned by the server's process, so it goes when the server goes; a report older than ``stale_s`` is dropped (its
    replica died and Serve replaced it).
    """

    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self.reports: dict[str, dict[str, Any]] = {}

    def report(self, replica: str, status: dict[str, Any]) -> None:
        self.reports[replica] = {**status, "reported": time.time()}

    def replicas(self) -> list[dict[str, Any]]:
        now = time.time()
        self.reports = {k: v for k, v in self.reports.items() if now - v["reported"] <= self.stale_s}
        return list(self.reports.values())


DirectoryActor = ray.remote(Directory)  # started (with no CPU of its own) by ClusterBackend


class WarmModel:
    """Serve's handle on a model a replica keeps warm; Serve calls ``__del__`` when it evicts it (least recently
    used first), which unloads it from the bridge's worker."""

    def __init__(self, bridge: Bridge, model_id: str) -> None:
        self.bridge, self.model_id, self.unloaded = bridge, model_id, False

    def __del__(self) -> None:
        if not self.unloaded:  # Serve calls it on eviction, the garbage collector once more later
            self.unloaded = True
            self.bridge.unload(self.model_id)


def gpu_memory() -> list[dict[str, Any]]:
    """This replica's GPUs with their free and total memory (MiB), from ``nvidia-smi``; [] without one.

    Read from outside the process so the replica never imports torch or holds a CUDA context of its own.
    """
    visible = [str(int(i)) for i in ray.get_gpu_ids()]
    if not visible:
        return []
    query = "--query-gpu=index,name,memory.free,memory.total"
    try:
        out = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits", "-i", ",".join(visible)],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        index, name, free, total = (part.strip() for part in line.split(","))
        gpus.append({"index": int(index), "name": name, "free_mib": int(free), "total_mib": int(total)})
    return gpus


class TtagNode:
    """One Serve replica: one GPU (or one unit of the configured resource) and a bridge that runs jobs on it."""

    def __init__(
        self, specs: list[dict[str, Any]], config: Config, models_per_replica: int, resource: str, directory: Any
    ) -> None:
        self.bridge = Bridge(Registry(ModelSpec.from_dict(s) for s in specs), BridgeSettings.from_config(config))
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id
        self.node_id = ray.get_runtime_context().get_node_id()
        self.resource = resource
        self.loads: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.directory = directory  # the server's own (its handle, not a name lookup that could find another's)

        async def load(model_id: str) -> WarmModel:
            # The bridge's worker loads the weights with the job itself (and reports it as the "loading" phase):
            # here Serve learns that this replica holds the model, so the next job for it is routed here.
            self.loads[model_id] += 1
            return WarmModel(self.bridge, model_id)

        self.warm = serve.multiplexed(max_num_models_per_replica=models_per_replica)(load)
        self.report()

    async def run(self, request: dict[str, Any], stream: bool) -> AsyncIterator[dict[str, Any] | bytes]:
        """A job's events as wire items. Serve cancelling the request (the client cancelled, or went away) cancels
        the bridge's job: cooperative first, then its worker is killed."""
        # Serve's LRU of warm models counts every job, however it was routed; routed by model (the request's
        # multiplexed_model_id), Serve now sends the next job for this model here.
        await self.warm(request["model"])
        job = self.bridge.submit(GenerationRequest.from_dict(request), stream=stream)
        self.running += 1
        try:
            async for event in job.aevents():
                if isinstance(event, ClipReady):
                    event.clip.metadata["cluster_node"] = self.node_id
                for item in to_wire(event):
                    yield item
        finally:
            self.running -= 1
            if not job.finished:
                job.cancel()
            self.report()

    def status(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "node_id": self.node_id,
            "pid": os.getpid(),
            "resource": self.resource,
            "gpus": gpu_memory(),
            "warm": self.bridge.loaded_models(),
            "memory": self.bridge.memory_status(),
            "loads": dict(self.loads),
            "running": self.running,
        }

    def report(self) -> None:
        self.directory.report.remote(self.replica, self.status())

    async def check_health(self) -> None:
        """Serve's periodic health check: report to the directory (a replica that cannot answer is restarted)."""
        await asyncio.to_thread(self.report)

    def __del__(self) -> None:
        self.bridge.close()
