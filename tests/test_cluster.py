"""``ttag server --cluster``: a real Ray cluster of a head and two nodes on this machine (a custom resource stands in
for each node's GPU), the server app on it under uvicorn, driven through the REST API and ``RemoteBridge``.

One cluster for the whole module (starting Ray costs tens of seconds). Skipped when Ray is not installed, unless
``TTAG_REQUIRE_CLUSTER=1`` (CI), which makes a missing Ray a failure.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from runners.request import validate_request
from tests.fake_runners import fake_registry
from tests.live_server import free_port, serve_in_thread
from tests.waiting import wait_until
from ttag_tui.backend.events import Chunk, Done, Failed, JobFailed, Progress
from ttag_tui.config import Config
from ttag_tui.remote import RemoteBridge
from ttag_tui.server.app import create_app

try:
    import ray
except ImportError:
    if os.environ.get("TTAG_REQUIRE_CLUSTER") == "1":
        raise
    pytest.skip(
        "Ray is not installed (pip install -e '.[cluster]'); TTAG_REQUIRE_CLUSTER=1 makes this a failure",
        allow_module_level=True,
    )

from ray import serve
from ray.cluster_utils import Cluster

from ttag_tui.backend.cluster import NAMESPACE, ClusterBackend, ClusterSettings, _own_directory
from ttag_tui.backend.cluster_node import DirectoryActor

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
MAX_QUEUED = 3
REGISTRY = fake_registry()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (no ttag resource) and two nodes with one "ttag" unit each: two replicas, one per node."""
    home = tmp_path_factory.mktemp("cluster-home")
    with pytest.MonkeyPatch.context() as patch:  # the raylets, replicas and workers inherit these
        for name in ("CONFIG", "DATA", "OUTPUT"):
            patch.setenv(f"TTAG_{name}_DIR", str(home / name.lower()))
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        nodes = [cluster.add_node(num_cpus=1, resources={"ttag": 1}) for _ in range(2)]
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        try:
            yield cluster, nodes
        finally:
            serve.shutdown()
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="module")
def backend(cluster):
    settings = ClusterSettings(
        address=cluster[0].address, resource="ttag", max_queued_requests=MAX_QUEUED, health_check_period_s=1
    )
    backend = ClusterBackend(REGISTRY, Config(cancel_grace_s=1), settings)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def server(backend):
    config = Config(rate_limit="10000/minute", cancel_grace_s=1)
    with serve_in_thread(create_app(config, registry=REGISTRY, bridge=backend)) as base:
        yield base


def request(model: str, **fields):
    return validate_request({"model": model, "prompt": "a test tone", **fields}, REGISTRY)


def replicas(backend) -> list[dict]:
    return [r for n in backend.nodes()["nodes"] for r in n["replicas"]]


def test_ttag_server_cluster_runs_synth_on_the_nodes(cluster, tmp_path):
    """As a user runs it: ``ttag server --cluster HEAD:PORT`` deploys, serves a real synth job, and takes its
    application off the cluster when stopped (first in the module: the other tests deploy their own)."""
    port = free_port()
    env = {**os.environ, "TTAG_CONFIG_DIR": str(tmp_path / "config"), "TTAG_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "ttag_tui", "server", "--port", str(port), "--cluster", cluster[0].address],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _answers(base), timeout=180, longest=0.5)
        assert process.poll() is None, log.read_text()
        response = httpx.post(
            f"{base}/api/generate", json={"prompt": "lofi piano", "duration": 2.0, "seed": 5}, timeout=120
        )
        assert response.status_code == 200, response.text
        audio, sample_rate = soundfile.read(io.BytesIO(response.content), always_2d=True)
        assert abs(len(audio) / sample_rate - 2.0) < 0.01 and np.abs(audio).max() > 0.01
        assert "cluster_node" in json.loads(response.headers["x-ttag-metadata"])
        detail = {"detail": "true"}
        assert httpx.get(f"{base}/api/health", params=detail, timeout=30).json()["cluster"]["state"] == "up"
        wait_until(
            lambda: "synth" in httpx.get(f"{base}/api/health", params=detail, timeout=30).json()["loaded_models"]
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    wait_until(lambda: "ttag" not in serve.status().applications, timeout=60)


def test_a_server_replaces_a_directory_another_left_instead_of_adopting_it(cluster):
    """A server restarted while the last one is still closing must not take over that one's directory of replica
    reports: the closing server kills it moments later (this test's module did exactly that, now and then)."""
    name = "ttag-directory-left"
    left = DirectoryActor.options(name=name, namespace=NAMESPACE, num_cpus=0).remote(60)
    ray.get(left.report.remote("old-replica", {"node_id": "gone"}))
    mine = _own_directory(DirectoryActor, 60, name)
    try:
        assert ray.get(mine.replicas.remote()) == []  # its own, empty: not the other server's reports
        assert ray.get_actor(name, namespace=NAMESPACE)._actor_id == mine._actor_id
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(left.replicas.remote(), timeout=30)
    finally:
        ray.kill(mine)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_health_lists_the_nodes_and_their_replicas(server, backend):
    health = httpx.get(f"{server}/api/health", params={"detail": "true"}).json()
    cluster = health["cluster"]
    assert cluster["state"] == "up"
    assert len(cluster["nodes"]) == 3
    wait_until(lambda: len(replicas(backend)) == 2)
    held = [n for n in backend.nodes()["nodes"] if n["replicas"]]
    assert len(held) == 2 and all(n["resources"].get("ttag") == 1 for n in held)


def test_concurrent_jobs_run_on_both_nodes(server):
    with RemoteBridge(server) as remote:
        jobs = [remote.submit(request("slow-tone", steps=5, seed=i)) for i in range(4)]
        clips = [job.result(timeout=120)[0] for job in jobs]
    assert len({clip.metadata["cluster_node"] for clip in clips}) == 2  # both nodes worked
    for i, clip in enumerate(clips):
        n = np.arange(clip.audio.shape[1])
        expected = 0.5 * np.sin(2 * np.pi * (200 + request("tone", seed=i).take_seed(0) % 800) * n / clip.sample_rate)
        assert np.allclose(clip.audio[0], expected, atol=1e-3)


def test_repeat_requests_land_where_the_model_is_warm(backend):
    """Multiplexing: a model is loaded once; every later job for it goes to the replica that holds it."""
    loads = []
    for seed in range(4):
        job = backend.submit(request("noisy", seed=seed))
        job.result(timeout=60)
        loads.append(any(isinstance(e, Progress) and e.phase == "loading" for e in job.events()))
        time.sleep(1.5)  # replicas tell Serve what they hold every 0.1 s, and Serve tells the router: not instant
    assert loads == [True, False, False, False]
    wait_until(lambda: sum(r["loads"].get("noisy", 0) for r in replicas(backend)) == 1)
    assert sum("noisy" in r["warm"] for r in replicas(backend)) == 1


def test_streamed_audio_equals_the_finished_take(backend, server):
    job = backend.submit(request("stepped-stream", steps=6, duration=1.5, seed=7), stream=True)
    clip = job.result(timeout=60)[0]
    events = list(job.events())
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) == 6 and events.index(chunks[-1]) < events.index(next(e for e in events if isinstance(e, Done)))
    assert np.array_equal(np.concatenate([c.audio for c in chunks], axis=1), clip.audio)
    with RemoteBridge(server) as remote:  # the same through the server's job stream
        job = remote.submit(request("stepped-stream", steps=6, duration=1.5, seed=7), stream=True)
        remote_clip = job.result(timeout=60)[0]
        streamed = np.concatenate([e.audio for e in job.events() if isinstance(e, Chunk)], axis=1)
    assert np.array_equal(streamed, clip.audio) and np.allclose(remote_clip.audio, clip.audio, atol=1e-4)


def test_cancel_stops_a_running_job(server):
    with RemoteBridge(server) as remote:
        job = remote.submit(request("slow-tone", steps=200, seed=1))
        for event in job.events(timeout=60):
            if isinstance(event, Progress) and event.phase == "generating":
                break
        started = time.monotonic()
        job.cancel()
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=30)
        assert failed.value.kind == "cancelled" and time.monotonic() - started < 10
        assert remote.submit(request("slow-tone", steps=2, seed=2)).result(timeout=60)


def test_a_full_cluster_answers_503_with_retry_after(server):
    """Two replicas run one job each and Serve queues MAX_QUEUED more; beyond that the server answers 503."""
    body = {"model": "slow-tone", "prompt": "a test tone", "steps": 100}
    created, refused = [], None
    with httpx.Client(base_url=server, timeout=30) as client:
        for seed in range(2 + MAX_QUEUED + 3):
            response = client.post("/api/jobs", json={**body, "seed": seed})
            if response.status_code == 503:
                refused = response
                break
            assert response.status_code == 202, response.text
            created.append(response.json()["id"])
        for job_id in created:
            client.post(f"/api/jobs/{job_id}/cancel")
        for job_id in created:
            wait_until(lambda j=job_id: client.get(f"/api/jobs/{j}").json()["state"] == "cancelled")
    assert refused is not None, f"{len(created)} jobs accepted, none refused"
    assert int(refused.headers["retry-after"]) >= 1 and "busy" in refused.json()["detail"]
    assert len(created) <= 2 + MAX_QUEUED


def test_a_replica_killed_mid_job_fails_the_job_and_the_next_one_runs(server, backend):
    with RemoteBridge(server) as remote:
        job = remote.submit(request("slow-tone", steps=100, seed=3))
        for event in job.events(timeout=60):
            if isinstance(event, Progress) and event.phase == "generating":
                break
        wait_until(lambda: any(r["running"] for r in replicas(backend)))
        pid = next(r["pid"] for r in replicas(backend) if r["running"])
        os.kill(pid, signal.SIGKILL)  # the replica's process dies as on a crashed node (no state API: no dashboard)
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=60)
        assert failed.value.kind == "crashed" and "went away" in str(failed.value)
        assert remote.submit(request("slow-tone", steps=2, seed=4)).result(timeout=120)
    # Serve replaces the dead replica: two replicas again, one per node.
    wait_until(lambda: len({r["node_id"] for r in replicas(backend) if r["pid"] != pid}) == 2, timeout=120)
    assert httpx.get(f"{server}/api/health").json()["status"] == "ok"


def test_a_runner_error_comes_back_typed(backend):
    job = backend.submit(request("fake-missing", seed=1))
    outcome = list(job.events(timeout=60))[-1]
    assert isinstance(outcome, Failed) and outcome.kind == "missing_weights"


def test_an_unreachable_head_is_one_line(tmp_path):
    env = {**os.environ, "TTAG_CONFIG_DIR": str(tmp_path), "TTAG_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ttag_tui", "server", "--cluster", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert result.stderr.strip().count("\n") == 0 and "cannot reach the Ray head at 127.0.0.1:9" in result.stderr


def test_cluster_status_lists_nodes_and_warm_models(cluster, backend):
    backend.submit(request("tone", seed=1)).result(timeout=60)
    wait_until(lambda: any("tone" in r["warm"] for r in replicas(backend)))
    result = subprocess.run(  # a second driver, as a user runs it
        [sys.executable, "-m", "ttag_tui", "cluster", "status", "--json", "--cluster", cluster[0].address],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["state"] == "up" and len(state["nodes"]) == 3
    assert any("tone" in r["warm"] for n in state["nodes"] for r in n["replicas"])
    memory = next(r["memory"] for n in state["nodes"] for r in n["replicas"] if "tone" in r["warm"])
    assert any(m["model"] == "tone" and m["measured"] for m in memory["models"]), memory
    assert all(d["budget_bytes"] > 0 for d in memory["devices"])
    table = subprocess.run(
        [sys.executable, "-m", "ttag_tui", "cluster", "status", "--cluster", cluster[0].address],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert table.returncode == 0, table.stderr
    assert all(n["node_id"][:12] in table.stdout for n in state["nodes"]) and "tone" in table.stdout
    assert "memory (used / budget, free)" in table.stdout and "cpu: " in table.stdout
