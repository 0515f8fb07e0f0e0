"""Config: round trip, environment overrides, and broken files that are reported and never overwritten."""

from __future__ import annotations

import dataclasses
import re
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
        ("idle_unload_s = -1\n", 1, "idle_unload_s: must be a number from 0 to 604800 (got -1)"),
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


NUMERIC = [f.name for f in dataclasses.fields(config.Config) if f.type in ("int", "float")]


def test_every_numeric_setting_declares_its_range():
    assert NUMERIC, "the config has numbers"
    for name in NUMERIC:
        low, high = config._FIELDS[name].metadata["range"]
        assert low <= getattr(config.Config(), name) <= high


@pytest.mark.parametrize("raw", ["1e10", "-1", "nan", "inf", "-inf", "99999999999999999999"])
@pytest.mark.parametrize("key", NUMERIC)
def test_numeric_setting_out_of_range_is_refused_from_set_env_and_file(tmp_path, monkeypatch, key, raw):
    low, high = config._FIELDS[key].metadata["range"]
    allowed = re.escape(f"from {low:g} to {high:g} (got {raw})")
    assert_refused_everywhere(tmp_path, monkeypatch, key, raw, raw, f"must be .*{allowed}", why_in_file="must be ")


def assert_refused_everywhere(
    tmp_path, monkeypatch, key: str, raw: str, toml: str, why: str, why_in_file: str | None = None
) -> None:
    """``raw`` for ``key`` is refused with ``why`` (a pattern) by `config set` and from TTAG_KEY, and from the file
    (written as ``toml``: TOML's own reading of a number is shown there, so ``why_in_file``), which is never
    rewritten."""
    path = tmp_path / "c.toml"
    with pytest.raises(config.ConfigError, match=rf"{key}: {why}"):
        config.set_value(key, raw, path)
    assert not path.exists(), "nothing written"
    monkeypatch.setenv(f"TTAG_{key.upper()}", raw)
    with pytest.raises(config.ConfigError, match=rf"TTAG_{key.upper()}: {why}"):
        config.load(path)
    monkeypatch.delenv(f"TTAG_{key.upper()}")
    path.write_text(f"# mine\n{key} = {toml}\n")
    with pytest.raises(config.ConfigError, match=rf"{re.escape(str(path))}, line 2: {key}: {why_in_file or why}"):
        config.load(path)
    assert path.read_text() == f"# mine\n{key} = {toml}\n"


def test_numeric_setting_at_its_bounds_is_kept(tmp_path):
    path = tmp_path / "c.toml"
    for name in NUMERIC:
        for bound in config._FIELDS[name].metadata["range"]:
            assert getattr(config.set_value(name, str(bound), path), name) == bound


@pytest.mark.parametrize("raw", [",", " , ", ",,,", "abcdefghij,,klmnopqrst", "abcdefghij, "])
def test_api_keys_with_an_empty_entry_are_refused(tmp_path, monkeypatch, raw):
    path = tmp_path / "c.toml"
    with pytest.raises(config.ConfigError, match=r"api_keys: key \d of \d is empty"):
        config.set_value("api_keys", raw, path)
    monkeypatch.setenv("TTAG_API_KEYS", raw)
    with pytest.raises(config.ConfigError, match=r"TTAG_API_KEYS: key \d of \d is empty"):
        config.load(path)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"short"', "shorter than 8 characters"),
        ('["abcdefghij", ""]', "key 2 of 2 is empty"),
        ('["abcd efghij"]', "has a space, comma or character"),
        ('["abcdefghij,klmnopqrst"]', "has a space, comma or character"),
        ("42", "must be text"),
    ],
)
def test_api_keys_that_cannot_be_used_are_refused_in_the_file_without_echoing_them(tmp_path, value, fragment):
    path = tmp_path / "c.toml"
    path.write_text(f"api_keys = {value}\n")
    with pytest.raises(config.ConfigError, match=fragment) as info:
        config.load(path, environment=False)
    assert "abcdefghij" not in str(info.value) and "short" not in str(info.value).replace("shorter", "")


def test_api_keys_parse_to_one_stripped_tuple(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    saved = config.set_value("api_keys", " first-key-1 ,second-key-2 ", path)
    assert saved.api_keys == "first-key-1,second-key-2"
    assert saved.api_key_list == ("first-key-1", "second-key-2")
    path.write_text('api_keys = ["first-key-1", " second-key-2"]\n')
    assert config.load(path, environment=False).api_key_list == ("first-key-1", "second-key-2")
    monkeypatch.setenv("TTAG_API_KEYS", "")
    assert config.load(path).api_key_list == ()
    assert config.Config().api_key_list == ()


@pytest.mark.parametrize("raw", ["60/min", "banana", "", "0/minute", "60/minute;", "-5/second"])
def test_rate_limit_the_server_could_not_apply_is_refused(tmp_path, monkeypatch, raw):
    path = tmp_path / "c.toml"
    with pytest.raises(config.ConfigError, match=r"rate_limit: .*(cannot read|allows no request)"):
        config.set_value("rate_limit", raw, path)
    monkeypatch.setenv("TTAG_RATE_LIMIT", raw)
    with pytest.raises(config.ConfigError, match=r"TTAG_RATE_LIMIT: .*(cannot read|allows no request)"):
        config.load(path)


@pytest.mark.parametrize("raw", ["60/minute", "10 per second", "100/hour", "5/second;1000/day"])
def test_rate_limit_in_the_limiters_notation_is_kept(tmp_path, raw):
    assert config.set_value("rate_limit", raw, tmp_path / "c.toml").rate_limit == raw
    assert config.parse_rate_limit(raw)


@pytest.mark.parametrize(
    ("key", "raw", "fragment"),
    [
        ("backend", "ftp://x", "is not an http:// or https:// URL"),
        ("backend", "localhost:8000", "is not an http:// or https:// URL"),
        ("backend", "http://", "names no valid host"),
        ("backend", "http://[::1", "cannot be read as an address"),
        ("backend", "http://gpu-box:99999", "has a port that is not a number from 1 to 65535"),
        ("backend", "http://gpu box:8000", "names no valid host"),
        ("cluster", "x:99999", "has a port that is not a number from 1 to 65535"),
        ("cluster", "x:0", "has a port that is not a number from 1 to 65535"),
        ("cluster", "ray://x:70000", "has a port that is not a number from 1 to 65535"),
        ("cluster", "gpu1", "is not HOST:PORT"),
    ],
)
def test_server_and_cluster_addresses_that_cannot_work_are_refused_from_set_env_and_file(
    tmp_path, monkeypatch, key, raw, fragment
):
    assert_refused_everywhere(tmp_path, monkeypatch, key, raw, f"{raw!r}", rf"'{re.escape(raw)}' {re.escape(fragment)}")


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("backend", "http://localhost:8000"),
        ("backend", "https://gpu.example.com/ttag"),
        ("backend", "http://[::1]:8000"),
        ("backend", ""),
        ("cluster", "gpu1:6379"),
        ("cluster", "10.0.0.7:6379"),
        ("cluster", "ray://gpu1:10001"),
        ("cluster", "auto"),
        ("cluster", ""),
    ],
)
def test_server_and_cluster_addresses_that_can_work_are_kept(tmp_path, key, raw):
    assert getattr(config.set_value(key, raw, tmp_path / "c.toml"), key) == raw


def test_a_cache_dir_that_is_a_file_is_refused_when_set_in_one_line(tmp_path):
    from tests.test_cli import ttag

    a_file = tmp_path / "weights.txt"
    a_file.write_text("not a folder")
    path = tmp_path / "c.toml"
    with pytest.raises(config.ConfigError, match=rf"cache_dir: {re.escape(str(a_file))} exists and is not a folder"):
        config.set_value("cache_dir", str(a_file), path)
    assert not path.exists(), "nothing written"
    refused = ttag("config", "set", "cache_dir", str(a_file))
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert str(a_file) in refused.stderr and "Traceback" not in refused.stderr
    for folder in (tmp_path, tmp_path / "made-on-the-first-pull", ""):
        assert config.set_value("cache_dir", str(folder), path).cache_dir == str(folder)


def test_a_cache_dir_that_became_a_file_still_lets_the_config_load(tmp_path, monkeypatch):
    """What is on disk is checked when set, not when read: the config must load so that it can be fixed."""
    a_file = tmp_path / "weights.txt"
    a_file.write_text("not a folder")
    path = tmp_path / "c.toml"
    path.write_text(f"cache_dir = {str(a_file)!r}\n")
    assert config.load(path).cache_dir == str(a_file)
    monkeypatch.setenv("TTAG_CACHE_DIR", str(a_file))
    assert config.load(path).cache_dir == str(a_file)
    assert config.set_value("cache_dir", "", path).cache_dir == ""
