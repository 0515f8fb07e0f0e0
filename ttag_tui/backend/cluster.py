"""A Ray cluster as a :class:`~ttag_tui.backend.Backend`: ``ttag server --cluster HEAD:6379``.

Jobs run in a Ray Serve deployment with one replica per GPU (or per unit of a custom resource on CPU-only nodes),
each running ttag's own :class:`~ttag_tui.bridge.Bridge` (:mod:`ttag_tui.backend.cluster_node`), so runner
interpreters, warm models, cancel and crash recovery work on every node as they do on one machine. Ray does the rest:

- routing: Serve's model multiplexing sends a job to a replica that has its model warm; a replica keeps at most
  ``models_per_replica`` warm, evicting (and unloading) the least recently used;
- memory: each replica's bridge keeps its own memory budget (its GPU's free memory, or ``memory_budget_gb``), unloading
  its least recently used models to fit a load; every replica reports its budget, use and warm models' bytes;
- streaming: a job's events come back as a Serve streaming response of plain dicts and binary audio frames, with the
  event names and :mod:`~ttag_tui.backend.wire` frames of the server's WebSocket job stream (:func:`to_wire`);
- cancel: Serve's request cancellation, which the replica turns into the bridge's cancel (then kill);
- back-pressure: ``max_ongoing_requests`` per replica, ``max_queued_requests`` queued by this server; over that,
  ``submit`` raises :class:`~ttag_tui.backend.errors.BackendBusy` (the server's 503 with Retry-After);
- faults: Serve health-checks replicas and restarts dead ones. A job whose replica dies before it sent anything is
  sent once more (Serve routes it to a live replica); once it has started it fails as ``crashed``, in words.

Ray is imported only here, and only when a cluster backend is opened: the UI and the CLI never pay for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runners.contract import Clip
from runners.registry import Availability, ModelSpec, Registry
from runners.request import GenerationRequest
from ttag_tui.backend import Backend, wire
from ttag_tui.backend.errors import BackendBusy
from ttag_tui.backend.events import Chunk, ClipReady, Done, Event, Failed, Job, Progress, Started

if TYPE_CHECKING:
    from ttag_tui.config import Config

NAMESPACE = "ttag"
DIRECTORY = "ttag-directory"
CPU_RESOURCE = "ttag"  # what CPU-only nodes offer instead of GPUs: `ray start --resources '{"ttag": 1}'`
NODES_FRESH_S = 1.0  # how long a look at the cluster's nodes serves again
ADMIT_S = 0.5  # how long submit waits for Serve's router to refuse a job (it decides first); then it is queued


class ClusterUnavailable(ConnectionError):
    """The Ray cluster cannot be reached, or cannot run ttag; the message says which, in one line."""


@dataclass(frozen=True)
class ClusterSettings:
    address: str = "auto"  # HEAD:6379, ray://HEAD:10001, or auto (the Ray started on this machine)
    resource: str = ""  # one per replica: GPU, or a custom resource; empty: GPU when the cluster has any, else "ttag"
    max_ongoing_requests: int = 1  # jobs a replica runs at once: one GPU, one job
    max_queued_requests: int = 16  # jobs this server queues for the cluster before answering 503
    models_per_replica: int = 2  # warm models a replica keeps; the least recently used is unloaded first
    health_check_period_s: float = 5.0
    route_by_model: bool = True  # False: Serve's plain routing, blind to where models are warm (the bench's baseline)
    app_name: str = "ttag"


# -- the wire: one event format everywhere ------------------------------------------------------------------------
def to_wire(event: Event) -> list[dict[str, Any] | bytes]:
    """A job event as the job stream's items: JSON-able dicts and binary audio frames. A finished take is a ``take``
    dict with its metadata followed by its whole audio as one frame (the WebSocket stream links a download instead)."""
    if isinstance(event, Started):
        return [{"type": "started"}]
    if isinstance(event, Progress):
        return [{"type": "progress", "phase": event.phase, "step": event.step, "total": event.total}]
    if isinstance(event, Chunk):
        return [wire.encode_audio(event.take, event.start, event.audio, event.sample_rate)]
    if isinstance(event, ClipReady):
        take = int(event.clip.metadata.get("take", 0))
        frame = wire.encode_audio(take, 0, event.clip.audio, event.clip.sample_rate)
        return [{"type": "take", "take": take, "metadata": event.clip.metadata}, frame]
    if isinstance(event, Done):
        return [{"type": "done", "timings": event.timings}]
    assert isinstance(event, Failed)
    return [{"type": "failed", "kind": event.kind, "message": event.message}]


class WireReader:
    """Turns :func:`to_wire` items back into a job's producer calls."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.received = 0
        self._take: dict[str, Any] | None = None  # a take's metadata, waiting for its audio frame

    def feed(self, item: dict[str, Any] | bytes) -> bool:
        """Apply one item; True at the job's end."""
        self.received += 1
        job = self.job
        if isinstance(item, bytes):
            take, start, audio, sample_rate = wire.decode_audio(item)
            if self._take is None:
                job.chunk(take, start, audio, sample_rate)
            else:
                job.add_clip(Clip(audio=audio, sample_rate=sample_rate, metadata=self._take))
                self._take = None
            return False
        kind = item["type"]
        if kind == "started":
            job.start()
        elif kind == "progress":
            job.progress(item["phase"], item["step"], item["total"])
        elif kind == "take":
            self._take = item["metadata"]
        elif kind == "done":
            job.done(item["timings"])
            return True
        elif kind == "failed":
            job.fail(item["kind"], item["message"])
            return True
        return False


def _check_reachable(address: str) -> None:
    """One clear line, at once, when the head's port does not answer (Ray itself would wait, then say much more)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ClusterUnavailable(
            f"cannot reach the Ray head at {address} ({exc}): is `ray start --head --port {port or 6379}` running "
            "there, and is the port open?"
        ) from None


def connect(address: str) -> None:
    """Join the cluster at ``address`` as a driver (nothing to do when this process already has)."""
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable("Ray is not installed here: pip install 'ttag[cluster]'") from None
    if ray.is_initialized():
        return
    _check_reachable(address)
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterUnavailable(f"cannot join the Ray cluster at {address}: {first}") from None


def nodes(directory: Any | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """The cluster as ``/api/health?detail=true`` and ``ttag cluster status`` show it: each node with its resources
    and, where a ttag replica runs, its GPUs (free memory), warm models and loads. ``state`` is ``down`` when Ray's
    head does not answer within ``timeout_s`` (Ray's own calls would wait much longer: they run in a thread)."""
    import ray

    def ask() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        handle = directory
        if handle is None:
            with contextlib.suppress(ValueError):  # no ttag server on this cluster: nodes, no replicas
                handle = ray.get_actor(DIRECTORY, namespace=NAMESPACE)
        replicas = ray.get(handle.replicas.remote(), timeout=timeout_s) if handle is not None else []
        return ray.nodes(), replicas

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ttag-cluster-nodes")
    try:
        listed, replicas = pool.submit(ask).result(timeout=timeout_s)
    except Exception as exc:  # any failure to ask the head is the head being away
        reason = "no answer" if isinstance(exc, TimeoutError) else _first_line(exc)
        return {"state": "down", "reason": f"the Ray head does not answer ({reason})", "nodes": []}
    finally:
        pool.shutdown(wait=False)
    return {
        "state": "up",
        "nodes": [
            {
                "node_id": node["NodeID"],
                "address": node["NodeManagerAddress"],
                "alive": bool(node["Alive"]),
                "head": "node:__internal_head__" in node.get("Resources", {}),
                "resources": {k: v for k, v in node.get("Resources", {}).items() if not k.startswith("node:")},
                "replicas": [r for r in replicas if r["node_id"] == node["NodeID"]],
            }
            for node in listed
        ],
    }


class ClusterBase(Backend):
    """What every way of reaching a Ray cluster shares: the server's registry and availability, warm models read off
    :meth:`nodes`."""

    _registry: Registry
    config: Config

    def registry(self) -> Registry:
        return self._registry

    def availability(self, spec: ModelSpec) -> Availability:
        """What this machine says about the model: every node is expected to be set up like the server's."""
        from ttag_tui.runner_envs import availability

        return availability(spec, self.config)

    def loaded_models(self) -> list[str]:
        return sorted({m for n in self.nodes()["nodes"] for r in n["replicas"] for m in r["warm"]})

    def unload(self, model: str | None = None) -> None:
        """Replicas unload on their own (Serve's LRU, the bridge's idle timer)."""

    def nodes(self) -> dict[str, Any]:
        raise NotImplementedError


class ClusterBackend(ClusterBase):
    """Run jobs on a Ray cluster (see the module's docstring). Opening it deploys ttag's Serve application there."""

    def __init__(self, registry: Registry, config: Config, settings: ClusterSettings | None = None) -> None:
        self._registry = registry
        self.config = config
        self.settings = settings = settings or ClusterSettings(address=config.cluster or "auto")
        connect(settings.address)
        import ray
        from ray import serve

        from ttag_tui.backend.cluster_node import DirectoryActor, TtagNode

        resources = ray.cluster_resources()
        resource = settings.resource or ("GPU" if resources.get("GPU") else CPU_RESOURCE)
        replicas = int(resources.get(resource, 0))
        if replicas < 1:
            raise ClusterUnavailable(
                f"the Ray cluster at {settings.address} has no {resource}: start GPU nodes, or give CPU-only nodes "
                f"`ray start ... --resources '{{\"{CPU_RESOURCE}\": 1}}'`"
            )
        self.resource, self.replicas = resource, replicas
        stale_s = 3 * settings.health_check_period_s + 5
        self._directory = _own_directory(DirectoryActor, stale_s)
        placement = {"num_gpus": 1} if resource == "GPU" else {"resources": {resource: 1}}
        deployment = serve.deployment(
            name="TtagNode",
            num_replicas=replicas,
            ray_actor_options={"num_cpus": 0, **placement},
            max_ongoing_requests=settings.max_ongoing_requests,
            max_queued_requests=settings.max_queued_requests,
            health_check_period_s=settings.health_check_period_s,
            graceful_shutdown_timeout_s=config.cancel_grace_s + 5,
        )(TtagNode)
        specs = [spec.to_dict() for spec in registry]
        serve.start(proxy_location="Disabled")  # jobs come through ttag's own server, not Serve's HTTP proxies
        self._handle = serve.run(
            deployment.bind(specs, config, settings.models_per_replica, resource, self._directory),
            name=settings.app_name,
            route_prefix=None,
        )
        self._nodes: tuple[float, dict[str, Any]] | None = None
        self._nodes_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ttag-cluster", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest, *, stream: bool = False) -> Job:
        """Send the job to the cluster; returns once Serve has queued it, or raises :class:`BackendBusy`."""
        job = self.new_job(request, stream)
        admitted: concurrent.futures.Future[None] = concurrent.futures.Future()
        asyncio.run_coroutine_threadsafe(self._run(job, admitted), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):  # queued behind busy replicas: it waits its turn
            admitted.result(timeout=ADMIT_S)
        return job

    async def _run(self, job: Job, admitted: concurrent.futures.Future[None]) -> None:
        from ray.exceptions import RayActorError, RayError, TaskCancelledError
        from ray.serve.exceptions import BackPressureError, RequestCancelledError
        from ray.serve.handle import DeploymentResponseGenerator

        reader = WireReader(job)
        for attempt in (1, 2):
            model_id = job.spec.id if self.settings.route_by_model else ""
            response = self._handle.options(multiplexed_model_id=model_id, stream=True).run.remote(
                job.request.to_dict(), job.stream
            )
            assert isinstance(response, DeploymentResponseGenerator)  # what stream=True gives

            def cancel(_job: Job, response: DeploymentResponseGenerator[Any] = response) -> None:
                response.cancel()

            job.attach(cancel)
            if job.cancel_requested:
                response.cancel()
            try:
                async for item in response:
                    if not admitted.done():
                        admitted.set_result(None)
                    if reader.feed(item):
                        return
                job.fail("crashed", "the cluster ended the job's stream before the job ended")
                return
            except BackPressureError as exc:
                busy = BackendBusy(f"the cluster is busy: {exc.message}", retry_after=int(exc.retry_after_s or 5))
                job.fail("busy", str(busy))
                if not admitted.done():  # submit raises it (503); later, the job has failed instead
                    admitted.set_exception(busy)
                return
            except (RequestCancelledError, TaskCancelledError, asyncio.CancelledError):
                job.fail("cancelled", "cancelled")
                return
            except RayActorError as exc:
                if reader.received == 0 and attempt == 1 and not job.cancel_requested:
                    continue  # its replica died before the job began: Serve sends it to a live one
                job.fail("crashed", f"the cluster node running the job went away ({_first_line(exc)}); try again")
                return
            except RayError as exc:
                job.fail("cluster", f"the Ray cluster failed the job: {_first_line(exc)}")
                return
            except Exception as exc:  # never a job that waits forever: whatever broke, it is over
                job.fail("internal", f"following the job on the cluster failed: {_first_line(exc)}")
                return
            finally:
                if not admitted.done():
                    admitted.set_result(None)

    def nodes(self) -> dict[str, Any]:
        """The cluster's nodes, their replicas, GPUs and warm models (``/api/health?detail=true``), asked at most once
        a second: one health request asks for them twice (models, nodes), and a silent head costs a timeout each."""
        with self._nodes_lock:
            if self._nodes is None or time.monotonic() - self._nodes[0] > NODES_FRESH_S:
                state = {"address": self.settings.address, "resource": self.resource, **nodes(self._directory)}
                self._nodes = (time.monotonic(), state)
            return self._nodes[1]

    def close(self) -> None:
        """Take ttag's application off the cluster (its replicas stop their workers); the cluster itself stays."""
        import ray
        from ray import serve

        try:
            serve.delete(self.settings.app_name)
            ray.kill(self._directory)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def _own_directory(actor_class: Any, stale_s: float, name: str = DIRECTORY) -> Any:
    """A directory of this server's own under the well-known name (``ttag cluster status`` finds it by name).

    One left by another server is replaced, never adopted: a server still closing kills its directory moments after
    it took its application off (and a killed server's goes with its process), which would take this server's replica
    reports with it.
    """
    import ray

    with contextlib.suppress(ValueError):  # none there
        ray.kill(ray.get_actor(name, namespace=NAMESPACE))
    deadline = time.monotonic() + 30
    while True:
        try:
            return actor_class.options(name=name, namespace=NAMESPACE, num_cpus=0).remote(stale_s)
        except ValueError:  # the name is freed once Ray has seen the old one die
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
