"""The bridge's memory budget, with real worker processes: models that hold a declared amount of memory (a buffer
written page by page), the least recently used unloaded to make room, a model that can never fit refused before it
loads, an out-of-memory retried once with the other models unloaded, the report in ``/api/health``; a real tiny
MusicGen checkpoint measured as it loads; and the ``memory_budget_gb`` setting's checks."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from runners.contract import RunnerSettings
from runners.registry import Registry
from runners.request import validate_request
from tests.fake_runners import MB, fake_registry
from tests.waiting import wait_until
from ttag_tui import config
from ttag_tui.backend.events import Done, Failed, JobFailed, Progress
from ttag_tui.bridge import Bridge, BridgeSettings
from ttag_tui.server.app import create_app

REGISTRY = fake_registry()
BUDGET_GB = 0.25  # room for two of the 100 MB models, not three
TIMEOUT = 120


def request(model: str, registry: Registry = REGISTRY, **fields):
    return validate_request({"prompt": "a test tone", "model": model, "seed": 7, "duration": 0.2, **fields}, registry)


def run(bridge: Bridge, model: str) -> list:
    """Run one job to its end; its events."""
    return list(bridge.submit(request(model)).events(timeout=TIMEOUT))


def held(bridge: Bridge) -> dict[str, dict]:
    """The bridge's warm models as its memory report lists them, least recently used first (dicts keep order)."""
    return {m["model"]: m for m in bridge.memory_status()["models"]}


def cpu(bridge: Bridge) -> dict:
    return next(d for d in bridge.memory_status()["devices"] if d["device"] == "cpu")


@pytest.fixture
def bridge():
    settings = BridgeSettings(idle_unload_s=0, cancel_grace_s=1.0, memory_budget_gb=BUDGET_GB)
    with Bridge(REGISTRY, settings) as bridge:
        yield bridge


def test_loading_past_the_budget_unloads_the_least_recently_used(bridge):
    run(bridge, "reserve-a")
    run(bridge, "reserve-b")
    assert bridge.loaded_models() == ["reserve-a", "reserve-b"]
    for model in held(bridge).values():  # measured in the worker: the buffer's pages, not the declared size
        assert model["measured"] and 90 * MB <= model["bytes"] <= 150 * MB, model
    assert cpu(bridge)["budget_bytes"] == 250 * MB and cpu(bridge)["used_bytes"] >= 180 * MB

    run(bridge, "reserve-c")  # a third does not fit: reserve-a, used least recently, goes
    assert bridge.loaded_models() == ["reserve-b", "reserve-c"]
    run(bridge, "reserve-b")  # using reserve-b makes reserve-c the least recently used
    assert list(held(bridge)) == ["reserve-c", "reserve-b"]
    run(bridge, "reserve-a")
    assert bridge.loaded_models() == ["reserve-a", "reserve-b"], "reserve-c went, not the recently used reserve-b"
    assert cpu(bridge)["used_bytes"] <= cpu(bridge)["budget_bytes"]
    events = run(bridge, "reserve-a")  # warm: no load, nothing unloaded
    assert not any(isinstance(e, Progress) and e.phase == "loading" for e in events)
    assert bridge.loaded_models() == ["reserve-a", "reserve-b"]


def test_what_a_load_measured_replaces_the_estimate_from_the_weights(bridge):
    run(bridge, "reserve-a")
    run(bridge, "reserve-b")
    run(bridge, "reserve-d")  # its weights say 10 MB: it fits beside the other two, then measures 100 MB
    assert bridge.loaded_models() == ["reserve-a", "reserve-b", "reserve-d"]
    assert held(bridge)["reserve-d"]["measured"] and held(bridge)["reserve-d"]["bytes"] >= 90 * MB
    bridge.unload("reserve-d")
    wait_until(lambda: "reserve-d" not in bridge.loaded_models(), TIMEOUT, "reserve-d unloaded")
    assert "reserve-d" not in held(bridge)
    run(bridge, "reserve-d")  # now known to take 100 MB: the least recently used model makes room
    assert bridge.loaded_models() == ["reserve-b", "reserve-d"]


def test_a_model_bigger_than_the_budget_is_refused_in_one_line_before_it_loads(bridge):
    run(bridge, "reserve-a")
    run(bridge, "reserve-b")
    events = run(bridge, "reserve-huge")
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "out_of_memory"
    assert "\n" not in failed.message
    assert failed.message == (
        "reserve-huge does not fit in memory: it needs about 100.0 GB (estimated from its weights) but the budget on "
        "cpu is 250 MB (memory_budget_gb = 0.25); raise memory_budget_gb (ttag config set memory_budget_gb GB)"
    )
    assert not any(isinstance(e, Progress) for e in events), "no load began"
    assert bridge.loaded_models() == ["reserve-a", "reserve-b"], "nothing was unloaded for it"
    assert not bridge.handle_for(REGISTRY.get("reserve-huge")).loaded_models
    assert run(bridge, "reserve-huge")[-1].kind == "out_of_memory", "asked again, refused again"
    assert run(bridge, "reserve-d")[-1].clips, "the same worker serves the next job"


def test_out_of_memory_unloads_the_other_models_and_retries_once(bridge):
    run(bridge, "reserve-a")
    run(bridge, "reserve-b")
    job = bridge.submit(request("oom-once"))
    clips = job.result(TIMEOUT)
    assert clips and clips[0].metadata["model"] == "oom-once"
    assert bridge.loaded_models() == ["oom-once"], "the other warm models were unloaded to make room"


def test_out_of_memory_twice_fails_the_job_in_one_line_and_the_next_job_runs(bridge):
    run(bridge, "reserve-a")
    with pytest.raises(JobFailed) as info:
        bridge.submit(request("oom-twice")).result(TIMEOUT)
    assert info.value.kind == "out_of_memory" and "\n" not in str(info.value)
    last_words = "(attempt 2) (also after unloading every other idle model)"
    assert str(info.value) == f"out of memory rendering oom-twice {last_words}"
    pid = bridge.handle_for(REGISTRY.get("oom-twice")).pid
    assert bridge.submit(request("oom-twice")).result(TIMEOUT), "its worker serves the next job"
    assert bridge.handle_for(REGISTRY.get("oom-twice")).pid == pid
    assert run(bridge, "reserve-a")[-1].clips


def test_a_load_waits_for_a_busy_model_to_finish_and_a_cancel_ends_the_wait():
    settings = BridgeSettings(idle_unload_s=0, cancel_grace_s=1.0, memory_budget_gb=0.15)  # room for one model
    with Bridge(REGISTRY, settings) as bridge:
        slow = bridge.submit(request("reserve-slow", steps=30))  # 30 steps of 0.1 s
        next(e for e in slow.events(TIMEOUT) if isinstance(e, Progress) and e.phase == "generating")
        cancelled = bridge.submit(request("reserve-b"))
        cancelled.cancel()
        events = list(cancelled.events(TIMEOUT))
        assert events[-1].kind == "cancelled" and not any(isinstance(e, Progress) for e in events)
        assert bridge.submit(request("reserve-b")).result(TIMEOUT)
        assert slow.finished and isinstance(slow.outcome, Done), "reserve-b loaded only once the busy model was free"
        assert bridge.loaded_models() == ["reserve-b"]


def test_health_detail_reports_the_budget_and_each_warm_model(bridge):
    run(bridge, "reserve-a")
    client = TestClient(create_app(config.Config(), registry=REGISTRY, bridge=bridge), base_url="http://localhost")
    memory = client.get("/api/health", params={"detail": "true"}).json()["memory"]
    assert memory["budget_gb"] == BUDGET_GB
    device = next(d for d in memory["devices"] if d["device"] == "cpu")
    assert device["budget_bytes"] == 250 * MB and device["used_bytes"] >= 90 * MB
    assert device["total_bytes"] > 0 and device["free_bytes"] > 0
    [model] = memory["models"]
    assert model["model"] == "reserve-a" and model["measured"] and model["bytes"] >= 90 * MB
    assert model["device"] == "cpu" and not model["busy"]


def test_default_budget_is_a_share_of_the_ram():
    with Bridge(REGISTRY, BridgeSettings(idle_unload_s=0)) as bridge:
        run(bridge, "tone")
        device = cpu(bridge)
        assert device["budget_bytes"] == round(device["total_bytes"] * 0.75)
        assert device["budget_source"].startswith("75% of this machine's")


def test_a_tiny_musicgen_checkpoint_reports_what_its_load_measured(tiny_musicgen_folders):
    from runners.musicgen import MODELS

    folder = tiny_musicgen_folders["mono"]
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    template = next(m for m in MODELS if m.id == "musicgen-small")
    spec = replace(
        template, id="tiny", hub_repo=str(folder), min_duration=0.2, size_bytes=weights, extra={"max_window_s": 3.0}
    )
    registry = Registry([spec])
    settings = BridgeSettings(RunnerSettings(threads=1), idle_unload_s=0, memory_budget_gb=BUDGET_GB)
    with Bridge(registry, settings) as bridge:
        assert bridge.generate(request("tiny", registry), timeout=TIMEOUT)
        [model] = bridge.memory_status()["models"]
        assert model["model"] == "tiny" and model["device"] == "cpu" and model["measured"] and model["bytes"] > 0


# -- the setting -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["nan", "-1", "1e30", "abc", "inf", "0"])
def test_bad_memory_budget_is_refused_in_one_line_from_set_env_and_file(tmp_path, monkeypatch, raw):
    allowed = f"memory_budget_gb: must be empty (automatic) or a number from 0.01 to 100000 (got {raw})"
    path = tmp_path / "c.toml"
    with pytest.raises(config.ConfigError, match=re.escape(allowed)) as info:
        config.set_value("memory_budget_gb", raw, path)
    assert "\n" not in str(info.value) and not path.exists()
    monkeypatch.setenv("TTAG_MEMORY_BUDGET_GB", raw)
    with pytest.raises(config.ConfigError, match=re.escape(f"TTAG_MEMORY_BUDGET_GB: {allowed.split(': ', 1)[1]}")):
        config.load(path)
    monkeypatch.delenv("TTAG_MEMORY_BUDGET_GB")
    toml_value = raw if raw in ("nan", "-1", "1e30", "inf", "0") else f'"{raw}"'
    path.write_text(f"# mine\nmemory_budget_gb = {toml_value}\n")
    with pytest.raises(config.ConfigError, match=rf"{re.escape(str(path))}, line 2: memory_budget_gb: must be "):
        config.load(path)


def test_memory_budget_set_cleared_and_passed_to_the_bridge(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    assert config.Config().memory_budget_gb is None
    assert config.set_value("memory_budget_gb", "2.5", path).memory_budget_gb == 2.5
    assert config.load(path).memory_budget_gb == 2.5
    assert BridgeSettings.from_config(config.load(path)).memory_budget_gb == 2.5
    monkeypatch.setenv("TTAG_MEMORY_BUDGET_GB", "")  # empty: automatic
    assert config.load(path).memory_budget_gb is None
    monkeypatch.delenv("TTAG_MEMORY_BUDGET_GB")
    assert config.set_value("memory_budget_gb", "", path).memory_budget_gb is None
    assert "memory_budget_gb" not in path.read_text()
