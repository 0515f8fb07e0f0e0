"""The CLI end to end through real subprocesses, as a script or a person would run it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ttag_tui.sessions import SessionStore

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "diffusers", "accelerate", "audiocraft")


def ttag(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ttag_tui", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def test_generate_writes_clip_and_sidecar(tmp_path):
    result = ttag("generate", "lofi hip hop with piano, 85 bpm", "-d", "2", "--seed", "5", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == tmp_path and path.name.startswith("lofi-hip-hop-with-piano-85-bpm_s5_")
    info = soundfile.info(path)
    assert info.samplerate == 44100 and info.channels == 2 and info.frames == 2 * 44100
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["seed"] == 5 and sidecar["model"] == "synth" and sidecar["parameters"]["duration"] == 2
    assert "Traceback" not in result.stderr


def test_same_seed_same_audio_and_recreate_command(tmp_path):
    first = ttag("generate", "techno 128 bpm", "-d", "1", "--seed", "9", "-o", str(tmp_path / "a"), "--json")
    meta = json.loads(first.stdout)[0]
    again = ttag(*shlex.split(meta["recreate"])[1:], "-o", str(tmp_path / "b"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["sha256"] == meta["sha256"]
    other = ttag("generate", "techno 128 bpm", "-d", "1", "--seed", "10", "-o", str(tmp_path / "c"), "--json")
    assert json.loads(other.stdout)[0]["sha256"] != meta["sha256"]


def test_takes_and_json(tmp_path):
    result = ttag(
        "generate",
        "ambient pad in D minor",
        "-d",
        "0.5",
        "-n",
        "3",
        "--seed",
        "100",
        "-o",
        str(tmp_path),
        "--format",
        "flac",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    takes = json.loads(result.stdout)
    assert [t["seed"] for t in takes] == [100, 101, 102]
    assert all(Path(t["path"]).suffix == ".flac" and Path(t["path"]).exists() for t in takes)


def test_default_output_dir_from_config(tmp_path):
    result = ttag("generate", "rain", "-d", "0.5", env={"TTAG_OUTPUT_DIR": str(tmp_path / "music")})
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == tmp_path / "music"


def test_validation_errors_exit_2_without_traceback():
    for args, fragment in [
        (["generate", "   "], "prompt: is empty"),
        (["generate", "x", "-d", "9999"], "duration: must be between 0.5 and 600 seconds for synth"),
        (["generate", "x", "-d", "600.0000001"], "and 600 seconds for synth (got 600.0000001)"),
        (["generate", "x", "-m", "nope"], "model: unknown model 'nope'"),
        (["generate", "x", "-n", "9"], "takes: must be between 1 and 8"),
        (["generate", "x", "--guidance", "3"], "guidance: synth does not take this parameter"),
        (["generate", "x", "--seed", "-4"], "seed: must be between 0 and"),
        (["generate", "x", "-d", "nan"], "duration: must be a finite number"),
        (["generate", "x", "-d", "ten"], "invalid float value"),
    ]:
        result = ttag(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_broken_config_exit_2_names_line(tmp_path):
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    (config_dir / "config.toml").write_text('device = "cpu"\ndevise = "gpu"\n')
    result = ttag("generate", "x", env={"TTAG_CONFIG_DIR": str(config_dir)})
    assert result.returncode == 2
    assert f"{config_dir / 'config.toml'}, line 2: devise: unknown setting" in result.stderr


def test_unwritable_output_is_a_clear_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = ttag("generate", "x", "-d", "0.5", "-o", str(blocker / "sub"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot write to {blocker / 'sub'}: {blocker} is not a folder" in result.stderr


def test_list_models_table_and_json():
    table = ttag("list-models", env={"COLUMNS": "80"})
    assert table.returncode == 0 and "understands" in table.stdout
    models = {m["id"]: m for m in json.loads(ttag("list-models", "--json").stdout)}
    rows: dict[str, list[str]] = {}
    for line in table.stdout.splitlines():
        if line.strip():
            rows.setdefault(line.split()[0], line.split())  # the table comes before the "understands" lines
    assert set(models) <= set(rows)  # every id whole at 80 columns: it is what -m takes
    assert rows["synth"][2] == "yes"
    words = " ".join(table.stdout.split())  # advice lines may wrap at 80 columns
    for model in models.values():  # the rest say what to do, once per kind of problem
        if not model["available"]:
            assert rows[model["id"]][2] in ("pull", "no")
            advice = model["reason"].replace(model["id"], "ID") if model["runnable"] else model["reason"]
            assert f"): {' '.join(advice.split())}" in words
    assert models["synth"]["available"] is True and models["synth"]["weights_cached"] is None
    assert "bpm" in models["synth"]["understands"]


def test_config_commands(tmp_path):
    assert ttag("config", "path").stdout.strip().endswith("config.toml")
    assert ttag("config", "set", "threads", "1").returncode == 0
    assert "threads = 1" in ttag("config", "show").stdout
    bad = ttag("config", "set", "device", "tpu")
    assert bad.returncode == 2 and "device: must be one of" in bad.stderr


def test_play_without_audio_device_still_succeeds(tmp_path):
    env = {"AUDIODEV": "null", "PULSE_SERVER": "unix:/nonexistent"}
    result = ttag("generate", "bells", "-d", "0.5", "-o", str(tmp_path), "--play", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_ui_path_never_imports_heavy_libraries(tmp_path):
    """ttag --version, list-models and generate -m synth keep torch & co. out of the CLI process."""
    code = f"""
import sys
from ttag_tui.cli import main
for args in (["--version"], ["list-models"], ["generate", "calm piano", "-d", "0.5", "-o", {str(tmp_path)!r}, "-q"]):
    try:
        main(args)
    except SystemExit:
        pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print("HEAVY:", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY: []" in result.stdout


def test_the_tui_refuses_a_broken_session_file_in_words_and_leaves_it_alone(tmp_path):
    broken = tmp_path / "sessions.sqlite3"
    broken.write_bytes(b"not a database at all")
    result = ttag(env={"TTAG_DATA_DIR": str(tmp_path)})  # no command: the TUI, which opens the session file first
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"ttag: error: {broken}: cannot open the session file")
    assert "TTAG_DATA_DIR" in result.stderr and broken.read_bytes() == b"not a database at all"


def _session_file(folder: Path) -> Path:
    """A real session file with a few pages of takes, as ttag leaves it after a run."""
    store = SessionStore(folder / "sessions.sqlite3")
    session = store.latest_session()
    for number in range(40):
        store.add_take(
            session.id,
            path=f"/music/{number}.wav",
            prompt="rain on a tin roof " * 8,
            model="synth",
            seed=number,
            duration=1.0,
            parameters={"prompt": "rain"},
            waveform=[0.25] * 200,
        )
    store.close()
    return store.path


def _change(path: Path, statement: str) -> None:
    db = sqlite3.connect(path)
    db.execute(statement)
    db.commit()
    db.close()


def _overwrite_pages(path: Path) -> None:
    page = 4096
    with path.open("r+b") as handle:
        handle.seek(3 * page)
        handle.write(bytes(range(256)) * (4 * page // 256))


BROKEN_SESSION_FILES = {
    "garbage pages": (_overwrite_pages, "damaged"),
    "state not JSON": (lambda p: _change(p, "UPDATE sessions SET state = '{\"prompt\": '"), "row 1 of sessions"),
    "dropped table": (lambda p: _change(p, "DROP TABLE prompts"), "no prompts table"),
    "garbage take row": (
        lambda p: _change(p, "UPDATE takes SET seed = 'lots', waveform = x'00ff' WHERE number = 7"),
        "of takes holds values ttag never writes",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_SESSION_FILES))
def test_the_tui_refuses_a_session_file_that_opens_but_is_broken_in_one_line_untouched(tmp_path, case):
    damage, fragment = BROKEN_SESSION_FILES[case]
    path = _session_file(tmp_path)
    damage(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = ttag(env={"TTAG_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"ttag: error: {path}: cannot open the session file ("), result.stderr
    assert fragment in result.stderr and "move it aside" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_the_tui_refuses_a_session_file_another_program_holds_locked_in_one_line(tmp_path):
    path = _session_file(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = ttag(env={"TTAG_DATA_DIR": str(tmp_path)})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"ttag: error: {path}: the session file is locked by another program (another ttag?); close it and start "
        "ttag again, or set TTAG_DATA_DIR to another folder"
    )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single ``ttag: error:`` line a mistake gets (no usage block, no traceback); its text."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], result.stderr
    return lines[0]


def test_numeric_config_out_of_range_is_one_line_before_any_work(tmp_path):
    line = one_line_error(ttag("config", "set", "idle_unload_s", "1e10"))
    assert "idle_unload_s: must be a number from 0 to 604800 (got 1e10)" in line
    assert not (tmp_path / "config" / "config.toml").exists()
    line = one_line_error(ttag("generate", "x", "-d", "0.5", "-o", str(tmp_path), env={"TTAG_IDLE_UNLOAD_S": "1e10"}))
    assert "TTAG_IDLE_UNLOAD_S: must be a number from 0 to 604800 (got 1e10)" in line
    assert list(tmp_path.glob("*.wav")) == []


def test_server_address_mistakes_are_one_line(tmp_path):
    for args, fragment in [
        (["--port", "99999"], "'99999' is not a port number from 1 to 65535"),
        (["--port", "-1"], "'-1' is not a port number from 1 to 65535"),
        (["--port", "0"], "'0' is not a port number from 1 to 65535"),
        (["--port", "http"], "'http' is not a port number from 1 to 65535"),
        (["--host", "[::1"], "'[::1' is neither an IP address nor a host name"),
        (["--host", "my host"], "'my host' is neither an IP address nor a host name"),
    ]:
        line = one_line_error(ttag("server", *args))
        assert line.startswith("ttag server: error: argument --") and fragment in line, line


def test_server_host_in_url_brackets_binds_the_bare_ipv6_address_and_counts_as_loopback():
    from ttag_tui.cli import build_parser
    from ttag_tui.server import check_bind, is_loopback

    for written in ("[::1]", "::1"):
        host = build_parser().parse_args(["server", "--host", written]).host
        assert host == "::1" and is_loopback(host)
        check_bind(host, "", allow_public=False)  # loopback: no key needed


WITHOUT_HUB = """
import sys
sys.modules["huggingface_hub"] = None  # the base install: no model runner extras
from ttag_tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_models_commands_without_huggingface_hub_say_what_to_install():
    for args in (["list"], ["pull", "musicgen-small"], ["rm", "musicgen-small"]):
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_HUB, "models", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        line = one_line_error(result)
        assert "needs huggingface_hub" in line
        assert f"-m pip install -e '{ROOT}[musicgen]'" in line, line  # ttag is installed from its clone


def test_models_pull_with_the_hub_unreachable_fails_at_once_in_one_line_without_retries(tmp_path):
    import socket
    import time

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ttag_tui", "models", "pull", "musicgen-small"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    line = one_line_error(result, code=1)
    assert "this machine seems to be offline" in line and f"127.0.0.1:{port}" in line
    assert "Retrying" not in result.stderr
    assert elapsed < 15, f"{elapsed:.0f} s: huggingface_hub's retries took ~25 s"


def test_output_path_mistakes_are_refused_before_generating(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for output, extra, fragment in [
        ("out.xyz", [], ".xyz is not an audio format (wav, flac, ogg, mp3)"),
        ("clip.mp3", ["--format", "wav"], "asks for mp3 but --format says wav"),
        ("a-file/x.wav", [], f"cannot write to {blocker / 'x.wav'}: {blocker} is not a folder"),
        ("a-file/deeper/x.wav", [], f"{blocker} is not a folder"),
    ]:
        result = ttag("generate", "rain", "-d", "0.5", "-o", str(tmp_path / output), *extra)
        assert fragment in one_line_error(result), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], "nothing made, no folder named out.xyz"


def test_output_file_suffix_sets_the_format(tmp_path):
    result = ttag("generate", "rain", "-d", "0.5", "-o", str(tmp_path / "clip.flac"), "--json")
    assert result.returncode == 0, result.stderr
    take = json.loads(result.stdout)[0]
    assert take["path"] == str(tmp_path / "clip.flac") and take["parameters"]["format"] == "flac"
    assert soundfile.info(take["path"]).format == "FLAC"


# A CLI run in a script that counts the processes it starts (`started`).
SPY_ON_PROCESSES = """
import subprocess, sys
started = []
class Spy(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        started.append(args)
        super().__init__(*args, **kwargs)
subprocess.Popen = Spy
"""

COUNT_WORKERS = (
    SPY_ON_PROCESSES
    + """
from ttag_tui.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print("WORKERS", len(started), "HEAVY", heavy, file=sys.stderr if code else sys.stdout)
sys.exit(code)
"""
)


def test_a_model_that_cannot_run_is_refused_before_a_worker_starts(tmp_path):
    from runners.registry import default_registry, human_size

    spec = default_registry().get("musicgen-small")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    result = subprocess.run(
        [sys.executable, "-c", COUNT_WORKERS.format(heavy=HEAVY), "generate", "rain", "-m", "musicgen-small"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    line, counts = result.stderr.strip().splitlines()
    assert counts == "WORKERS 0 HEAVY []"
    assert line.startswith("ttag: error: musicgen-small cannot run here: ")
    if "weights not downloaded" in line:  # the extra is installed: the download is what is missing
        assert line.endswith(f"ttag models pull musicgen-small (a {human_size(spec.size_bytes)} download)")
    table = ttag("list-models", env={**env, "COLUMNS": "200"}).stdout
    row = next(r for r in table.splitlines() if r.split() and r.split()[0] == "musicgen-small")
    assert human_size(spec.size_bytes) in row, "list-models and generate say the same size"


def test_output_folder_without_write_permission_is_refused_before_generating(tmp_path, monkeypatch):
    import argparse

    from ttag_tui import cli
    from ttag_tui.config import Config

    denied = tmp_path / "theirs"
    denied.mkdir()
    monkeypatch.setattr(cli.os, "access", lambda path, mode: Path(path) != denied)  # as a non-root user would see it
    args = argparse.Namespace(output=str(denied / "new" / "x.wav"), format=None)
    with pytest.raises(cli.UsageError, match=rf"^cannot write to {re.escape(args.output)}: no permission to write in "):
        cli._output_target(args, Config())
    assert cli._output_target(argparse.Namespace(output=str(tmp_path / "a.ogg"), format=None), Config())[1] == "ogg"


def limit_file_size(max_bytes: int) -> Callable[[], None]:
    """A child's files cannot grow past ``max_bytes``: its writes fail as on a full disk (EFBIG: Python ignores
    SIGXFSZ), a real failure from the OS without root or a small filesystem."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


@pytest.mark.parametrize("output", ["x.wav", "x.flac", "folder"])
def test_a_write_the_disk_refuses_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, output):
    target = tmp_path / "out" / output
    result = subprocess.run(
        [sys.executable, "-m", "ttag_tui", "generate", "piano", "-d", "10", "--seed", "1", "-q", "-o", str(target)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        preexec_fn=limit_file_size(64 * 1024),
    )
    line = one_line_error(result, code=1)
    named = target if target.suffix else target / "piano_s1_"
    assert line.startswith(f"ttag: error: cannot write {named}") and line.endswith(": file too large"), line
    assert os.listdir(named.parent) == []  # no take, no sidecar, no temp


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_an_output_where_no_file_can_be_made_is_named_as_given_not_as_its_temp_file():
    line = one_line_error(ttag("generate", "x", "-d", "0.5", "-o", "/proc/x.wav"), code=1)
    assert line == "ttag: error: cannot write /proc/x.wav: no such file or directory"


def test_unknown_model_and_runner_ids_are_usage_errors():
    for args, fragment in [
        (["models", "pull", "nope"], "unknown model 'nope'"),
        (["models", "rm", "nope"], "unknown model 'nope'"),
        (["models", "rm", "synth"], "synth has no weights: nothing to remove"),
        (["models", "pull", "synth"], "synth has no weights: nothing to download"),
        (["runners", "setup", "bogus"], "no managed environment for 'bogus' (known: audiocraft)"),
    ]:
        assert fragment in one_line_error(ttag(*args)), args


def test_a_reader_that_stops_reading_ends_ttag_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` after its line: every write to stdout now fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ttag_tui", "config", "show"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


def test_backend_and_cluster_addresses_are_checked_on_the_command_line():
    for args, fragment in [
        (["--backend", "http://[::1", "generate", "x"], "'http://[::1' cannot be read as an address"),
        (["--backend", "localhost:8000", "list-models"], "'localhost:8000' is not an http:// or https:// URL"),
        (["server", "--cluster", "x:99999"], "'x:99999' has a port that is not a number from 1 to 65535"),
        (["cluster", "status", "--cluster", "gpu1"], "'gpu1' is not HOST:PORT"),
    ]:
        line = one_line_error(ttag(*args))
        assert "error: argument --" in line and fragment in line, line


# The CLI with test models that read an audio file (tests.fake_runners.AudioInputRunner) in place of the real ones: a
# take made from a file in a second, without torch. A run that fails prints how many processes it started.
AUDIO_INPUT_CLI = (
    SPY_ON_PROCESSES
    + """
import runners.registry
from runners.registry import Registry
from tests.fake_runners import audio_input_specs
runners.registry.default_registry = lambda: Registry(audio_input_specs())
from ttag_tui.cli import main
code = main(sys.argv[1:])
if code:
    print("WORKERS", len(started))
sys.exit(code)
"""
)


def ttag_with_audio_inputs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", AUDIO_INPUT_CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def write_tune(path: Path, hz: float) -> str:
    """Half a second of a sine at ``hz`` as ``path``; the file's sha256."""
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * hz * np.arange(4000) / 8000), 8000)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def take_from_a_tune(tmp_path: Path) -> tuple[Path, str, dict]:
    """A take of the fake model that continues audio, made from a tune: the tune, its sha256 and the take's sidecar."""
    tune = (tmp_path / "tune.wav").resolve()
    digest = write_tune(tune, 440)
    made = ttag_with_audio_inputs(
        *("generate", "more of it", "-m", "fake-continue", "--continue", str(tune), "-d", "0.5", "--seed", "4"),
        *("-o", str(tmp_path / "made"), "--json"),
    )
    assert made.returncode == 0, made.stderr
    return tune, digest, json.loads(Path(json.loads(made.stdout)[0]["path"]).with_suffix(".json").read_text())


def test_a_take_made_from_an_audio_file_records_its_sha256_and_is_made_again_while_the_file_is_unchanged(tmp_path):
    tune, digest, sidecar = take_from_a_tune(tmp_path)
    assert sidecar["inputs_sha256"] == {"audio_prompt": digest}
    recreate = shlex.split(sidecar["recreate"])
    assert recreate[recreate.index("--continue") + 1] == str(tune)
    assert recreate[recreate.index("--input-sha256") + 1] == f"audio_prompt={digest}"
    again = ttag_with_audio_inputs(*recreate[1:], "-o", str(tmp_path / "again"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["sha256"] == sidecar["sha256"]


@pytest.mark.parametrize("change", ["overwritten", "deleted"])
def test_the_recreate_line_of_a_take_refuses_once_its_audio_file_changed_or_is_gone(tmp_path, change):
    tune, digest, sidecar = take_from_a_tune(tmp_path)
    now = f"now {write_tune(tune, 330)[:12]}…" if change == "overwritten" else "now gone"
    if change == "deleted":
        tune.unlink()
    refused = ttag_with_audio_inputs(*shlex.split(sidecar["recreate"])[1:], "-o", str(tmp_path / "again"))
    assert one_line_error(refused) == (
        f"ttag: error: --continue {tune} changed since this take was made (sha256 {digest[:12]}…, {now}): "
        "the take cannot be made again exactly"
    )
    assert refused.stdout == "WORKERS 0\n" and not (tmp_path / "again").exists()  # refused before any model loads
