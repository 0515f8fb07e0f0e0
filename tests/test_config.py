"""Config: round trip, environment overrides, and broken files that are reported and never overwritten."""

from __future__ import annotations

import tomllib

import pytest

from ttag_tui import config, paths


def test_defaults_without_a_file():
    loaded = config.load(environment=False)
    assert loaded == config.Config()
    assert not paths.config_file().exists()


def test_round_trip_writes_only_changes(tmp_path):
    path = tmp_path / "c.toml"
    original = config.Config(
        device="cpu",
        threads=1,
        idle_unload_s=30.0,
        interpreters={"audiocraft": "/x/python"},
        keys={"generate": "ctrl+g"},
    )
    config.save(original, path)
    assert config.load(path, environment=False) == original
    data = tomllib.loads(path.read_text())
    assert data == {
        "device": "cpu",
        "threads": 1,
        "idle_unload_s": 30.0,
        "interpreters": {"audiocraft": "/x/python"},
        "keys": {"generate": "ctrl+g"},
    }
    assert [p.name for p in path.parent.iterdir()] == ["c.toml"], "no temp files left behind"


def test_set_value_converts_and_validates(tmp_path):
    path = tmp_path / "c.toml"
    assert config.set_value("threads", "2", path).threads == 2
    assert config.set_value("interpreters.audiocraft", "/venv/bin/python", path).interpreters == {
        "audiocraft": "/venv/bin/python"
    }
    with pytest.raises(config.ConfigError, match="device: must be one of auto, cpu, cuda, mps"):
        config.set_value("device", "tpu", path)
    with pytest.raises(config.ConfigError, match="colour: unknown setting"):
        config.set_value("colour", "red", path)
    assert config.load(path, environment=False).threads == 2


def test_environment_overrides(monkeypatch, tmp_path):
    path = tmp_path / "c.toml"
    config.save(config.Config(device="cpu"), path)
    monkeypatch.setenv("TTAG_DEVICE", "cuda")
    monkeypatch.setenv("TTAG_IDLE_UNLOAD_S", "5")
    loaded = config.load(path)
    assert loaded.device == "cuda" and loaded.idle_unload_s == 5.0
    monkeypatch.setenv("TTAG_THREADS", "many")
    with pytest.raises(config.ConfigError, match="TTAG_THREADS: must be a whole number"):
        config.load(path)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('device = "cpu"\nthreads = = 2\n', 2, "not valid TOML"),
        ('device = "cpu"\n\ncolour = "red"\n', 3, "colour: unknown setting"),
        ('device = "cpu"\nthreads = "two"\n', 2, "threads: must be a whole number"),
        ("idle_unload_s = -1\n", 1, "idle_unload_s: must be a number of at least 0"),
        ("[interpreters]\naudiocraft = 3\n", 1, "interpreters: must be a table of text values"),
    ],
)
def test_broken_file_names_file_line_and_key_and_is_never_overwritten(tmp_path, text, line, fragment):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}, line {line}: ")
    assert fragment in str(info.value)
    with pytest.raises(config.ConfigError):
        config.set_value("device", "cpu", path)
    assert path.read_text() == text, "a broken config is left as the user wrote it"


def test_failed_save_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    config.save(config.Config(device="cpu"), path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(config.os, "replace", boom)
    with pytest.raises(OSError):
        config.save(config.Config(device="cuda"), path)
    assert config.load(path, environment=False).device == "cpu"
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]
