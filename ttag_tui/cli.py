"""The ``ttag`` command line: ``generate``, ``list-models``, ``config``; no arguments opens the TUI.

Exit codes: 0 ok, 2 usage or validation error, 1 generation failure, 141 when stdout's reader went away (`| head`).
User mistakes get one line, never a traceback.
Nothing here imports a machine-learning library: generation runs in worker processes (``ttag_tui.bridge``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from runners.registry import Registry, human_size
from runners.request import CORE_FIELD_HELP, FORMATS
from ttag_tui import __version__
from ttag_tui.output import cli_option

if TYPE_CHECKING:
    from runners.contract import Clip

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# stdout's reader went away: the status of a program killed by SIGPIPE (128 + 13), as `cat` and other tools that keep
# SIGPIPE's default end with; `set -o pipefail` then tells a cut-short listing from a whole one, as for those tools.
EXIT_BROKEN_PIPE = 141


METAVARS = {"audio": "AUDIO_FILE", "str": "TEXT", "int": "N", "float": "X"}


class UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with ttag's one-line errors: what is wrong and where the help is, no usage block (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _host(text: str) -> str:
    """``--host``: an IP address or a host name. IPv6 may come in brackets, as in a URL; uvicorn binds it without."""
    from ttag_tui.config import is_host

    if not is_host(text):
        raise argparse.ArgumentTypeError(f"{text!r} is neither an IP address nor a host name")
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _checked_as_setting(checker: str) -> Callable[[str], str]:
    """An option's type that checks it as the config checks the same setting (``checker``: a function of
    ttag_tui.config, imported only when the option is given), so a typo is one line before any work."""

    def check(text: str) -> str:
        from ttag_tui import config

        try:
            return str(getattr(config, checker)(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


_backend_url = _checked_as_setting("check_backend_url")  # --backend
_cluster_address = _checked_as_setting("check_cluster_address")  # --cluster


def _port(text: str) -> int:
    """``--port``: 1-65535. 0 (any free port) is refused: the address printed at start-up would not say which."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return port


def _fail(message: str, code: int) -> int:
    print(f"ttag: error: {message}", file=sys.stderr)
    return code


# -- generate ------------------------------------------------------------------------------------------------------
def _request_fields(args: argparse.Namespace, config: Any, fmt: str) -> dict[str, Any]:
    data: dict[str, Any] = {"prompt": args.prompt, "model": args.model or config.default_model}
    if args.duration is not None:
        data["duration"] = args.duration
    elif config.default_duration:
        data["duration"] = config.default_duration
    for name in ("seed", "takes", *args.model_params):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    data["format"] = fmt
    return data


def _local_folder(model: str, args: argparse.Namespace, config: Any) -> str | None:
    """The checkpoint folder ``-m`` names (a path, or an alias from the config's ``models`` table), if it names one;
    refused with a server backend: a server has its own models, and never takes a client's path."""
    from runners.local_models import looks_like_path

    folder = config.models.get(model) or (model if looks_like_path(model) else None)
    if folder is not None and (args.backend or config.backend):
        raise UsageError(f"-m {model}: a local folder runs on this machine only; a ttag server has its own models")
    return folder


def _refuse_if_changed(what: str, made_from: str, now: str | None) -> None:
    """A take's recreate line pins what the take was made from by sha256 (a local folder's weights, each audio
    input): other bytes under the same name would make another take, with no word of it. ``now`` None: gone."""
    if now != made_from:
        state = f"now {now[:12]}…" if now else "now gone"
        raise UsageError(
            f"{what} changed since this take was made (sha256 {made_from[:12]}…, {state}): "
            "the take cannot be made again exactly"
        )


def _pinned_input(text: str) -> tuple[str, str]:
    """``--input-sha256 NAME=SHA``: an audio parameter and the sha256 its file had when the take was made."""
    name, _, digest = text.partition("=")
    if not name or not digest:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=SHA256")
    return name, digest


def _check_pinned_inputs(args: argparse.Namespace) -> None:
    """Each ``--input-sha256`` (a take's recreate line) must match its audio file now; checked before validation,
    so a file that is gone is named as changed, and before any model loads."""
    from ttag_tui.output import sha256_file

    for name, made_from in args.input_sha256:
        value = getattr(args, name, None) if name in args.model_params else None
        if value is None:
            raise UsageError(f"--input-sha256 {name}=…: no {cli_option(name)} FILE given to check it against")
        path = Path(value).expanduser()
        _refuse_if_changed(f"{cli_option(name)} {path}", made_from, sha256_file(path) if path.is_file() else None)


def _add_local_model(folder: str, args: argparse.Namespace, registry: Any) -> str:
    """The folder joins the registry under its absolute path; ``--weights-sha256`` (a take's recreate line) must
    match the weights there now."""
    from runners.local_models import NotAModel, spec_for_folder

    try:
        spec = spec_for_folder(folder, registry)
    except NotAModel as exc:
        raise UsageError(f"-m {args.model}: {exc}") from None
    if args.weights_sha256:
        _refuse_if_changed(f"the weights in {spec.id}", args.weights_sha256, spec.extra["weights_sha256"])
    registry.add(spec)
    return spec.id


def _output_target(args: argparse.Namespace, config: Any) -> tuple[Path, str]:
    """Where the takes go and their format, checked before any work: an unknown suffix, a suffix that contradicts
    ``--format``, or a place that cannot hold files is a UsageError, not a generation thrown away at the end."""
    target = Path(args.output).expanduser() if args.output else config.resolved_output_dir()
    fmt = args.format or config.format
    suffix = target.suffix.lower().lstrip(".")
    is_file = bool(args.output) and bool(suffix) and not target.is_dir()
    if is_file and suffix not in FORMATS:
        raise UsageError(
            f"-o {args.output}: .{suffix} is not an audio format ({', '.join(FORMATS)}); "
            "for a folder with a dot in its name, create the folder first"
        )
    if is_file and args.format and args.format != suffix:
        raise UsageError(f"-o {args.output} asks for {suffix} but --format says {args.format}: keep one of them")
    if is_file:
        fmt = suffix
    folder = target.parent if is_file else target
    existing = folder
    while not existing.exists() and existing != existing.parent:  # the folder is made when the takes are written
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot write to {target}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {target}: no permission to write in {existing}")
    return target, fmt


class _ProgressView:
    """A rich progress bar on stderr while the job runs; nothing when stderr is not a terminal."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}", markup=False),  # holds the prompt: brackets are text
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.progress.add_task(f"{label}: queued", total=None)
            self.progress.start()

    def update(self, phase: str, step: int, total: int, label: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"{label}: {phase}", completed=step, total=total)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _load_audio_libraries() -> None:
    """Import soundfile and numpy, which write_clip needs, while the worker starts rather than after the take; with
    numpy's BLAS on one thread (this process calls no BLAS routine), unless the user chose a thread count. The variable
    is read as OpenBLAS loads and removed right after, so later worker processes do not inherit it."""
    from ttag_tui.runner_envs import SINGLE_THREAD_BLAS

    added = {name: value for name, value in SINGLE_THREAD_BLAS.items() if name not in os.environ}
    os.environ.update(added)
    try:
        import soundfile  # noqa: F401
    finally:
        for name in added:
            os.environ.pop(name, None)


def cmd_generate(args: argparse.Namespace) -> int:
    from runners.request import RequestInvalid, validate_request
    from ttag_tui import config as config_module
    from ttag_tui.backend import open_backend
    from ttag_tui.backend.events import ClipReady, Failed, Progress
    from ttag_tui.output import write_clip

    config = config_module.load()
    target, fmt = _output_target(args, config)
    fields = _request_fields(args, config, fmt)
    _check_pinned_inputs(args)
    folder = _local_folder(fields["model"], args, config)
    bridge = open_backend(config, args.backend)
    registry = bridge.registry()
    if folder is not None:
        fields["model"] = _add_local_model(folder, args, registry)
    try:
        request = validate_request(fields, registry)
    except RequestInvalid as exc:
        bridge.close()
        raise UsageError("\n  ".join(["invalid request:", *map(str, exc.errors)])) from None
    spec = registry[request.model]
    status = bridge.availability(spec)  # refused here, in milliseconds, before a worker imports torch
    if not status.available:
        bridge.close()
        raise UsageError(status.refusal(spec))

    show_progress = sys.stderr.isatty() and not args.quiet
    view = _ProgressView(show_progress, spec.id)
    written: dict[int, tuple[Path, dict[str, Any]]] = {}  # take → its file and sidecar
    failure: tuple[str, int] | None = None

    def keep(clip: Clip) -> None:
        """On disk as soon as it is made: kept if the job then ends badly."""
        take = int(clip.metadata.get("take", len(written)))
        if take not in written:
            path = write_clip(clip, target, request.format)
            written[take] = path, json.loads(path.with_suffix(".json").read_text())

    with bridge:
        job = bridge.submit(request)
        _load_audio_libraries()

        try:
            for event in job.events():
                if isinstance(event, Progress):
                    view.update(event.phase, event.step, event.total, spec.id)
                elif isinstance(event, ClipReady):
                    keep(event.clip)
                elif isinstance(event, Failed):
                    failure = f"generation failed ({event.kind}): {event.message}", EXIT_FAILED
        except KeyboardInterrupt:
            job.cancel()
            failure = "cancelled", 130
            # The takes made before the cancel took effect are still written: the one whose encoding Ctrl-C cut off,
            # and those that came behind it. A second Ctrl-C leaves at once.
            with contextlib.suppress(KeyboardInterrupt):
                for event in job.events():
                    if isinstance(event, ClipReady):
                        keep(event.clip)
        view.stop()
    kept = [written[take] for take in sorted(written)]
    if args.json:
        print(json.dumps([{"path": str(path), **meta} for path, meta in kept], indent=2))
    else:
        for path, _ in kept:
            print(path)
    if failure is not None:
        message, code = failure
        if written:
            message += f"; takes finished and written before that: {len(written)} of {request.takes} (listed above)"
        return _fail(message, code)
    if args.play and kept:
        from ttag_tui.playback import PlaybackUnavailable, play_file

        try:
            play_file(kept[0][0])
        except PlaybackUnavailable as exc:
            print(f"ttag: cannot play sound here: {exc}; the file is at {kept[0][0]}", file=sys.stderr)
    return EXIT_OK


# -- list-models ---------------------------------------------------------------------------------------------------
def cmd_list_models(args: argparse.Namespace) -> int:
    from runners.registry import default_registry
    from ttag_tui import config as config_module
    from ttag_tui.runner_envs import availability

    config = config_module.load()
    backend = args.backend or config.backend
    if backend:  # what the server can run; locally, the same probe without starting anything
        from ttag_tui.backend import open_backend

        with open_backend(config, backend) as remote:
            rows = [(spec, remote.availability(spec)) for spec in remote.registry()]
    else:
        rows = [
            (
                spec,
                availability(spec, config),
            )
            for spec in default_registry()
        ]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        **spec.to_dict(),
                        "available": a.available,
                        "runnable": a.runnable,
                        "weights_cached": a.weights_cached,
                        "reason": a.reason,
                    }
                    for spec, a in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="ttag models", box=box.SIMPLE_HEAD, pad_edge=False)  # the runner and more: --json
    table.add_column("id", no_wrap=True)  # what -m takes: never cut
    table.add_column("kind", min_width=5)
    table.add_column("ready", min_width=5)
    table.add_column("size", justify="right", min_width=5, no_wrap=True)
    table.add_column("licence", overflow="fold")
    not_ready: dict[str, list[str]] = {}  # what to do → the models it is for
    for spec, avail in rows:
        if avail.available:
            ready = "[green]yes[/]"
        else:
            ready = "[yellow]pull[/]" if avail.runnable else "[red]no[/]"
            advice = avail.reason.replace(spec.id, "ID") if avail.runnable else avail.reason
            not_ready.setdefault(advice, []).append(spec.id)
        kind = {"music and sound": "mix", "sound effects": "sfx"}.get(spec.kind, spec.kind)
        size = human_size(spec.size_bytes) if spec.size_bytes else "-"
        table.add_row(Text(spec.id), kind, ready, size, Text(spec.licence.split(" (")[0]))
    console = Console()
    console.print(table)
    for advice, ids in not_ready.items():
        which = ids[0] if len(ids) == 1 else f"{len(ids)} models"
        console.print(Text.assemble(("not ready", "bold"), f" ({which}): {advice}"))  # advice has [extras]
    for spec, _ in rows:
        if spec.understands:
            console.print(Text.assemble((spec.id, "bold"), f" understands: {spec.understands}"))
    return EXIT_OK


# -- models --------------------------------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    """``ttag models pull|rm|list``: downloads and disk use of model weights (huggingface_hub imported lazily)."""
    from runners.registry import default_registry
    from ttag_tui import config as config_module
    from ttag_tui import models

    if args.action in ("pull", "rm") and not args.ids:
        raise UsageError(f"models {args.action} needs a model id, e.g. ttag models {args.action} musicgen-small")
    config = config_module.load()
    cache_dir = config.cache_dir or None
    registry = default_registry()
    try:
        if args.action == "pull":
            for model_id in args.ids:
                path = models.pull(registry, model_id, cache_dir, say=lambda text: print(text, file=sys.stderr))
                print(f"{model_id}: {path}")
        elif args.action == "rm":
            for model_id in args.ids:
                print(f"{model_id}: removed, {human_size(models.remove(registry, model_id, cache_dir))} freed")
        else:
            rows = models.cached(registry, cache_dir)
            width = max((len(r.spec.id) for r in rows), default=10)
            for row in rows:
                state = f"cached   {human_size(row.size_on_disk):>9}" if row.revisions else "not downloaded"
                download = f"~{human_size(row.spec.size_bytes)}"
                print(f"{row.spec.id:<{width}}  {state:<24}  {row.spec.hub_repo} ({download} download)")
            total = sum(r.size_on_disk for r in rows)
            print(f"{'total':<{width}}  {human_size(total)} in {models.hub_cache_dir(cache_dir)}")
    except models.ModelsError as exc:
        return _fail(str(exc), EXIT_USAGE if isinstance(exc, models.ModelsUsageError) else EXIT_FAILED)
    return EXIT_OK


# -- runners -------------------------------------------------------------------------------------------------------
def cmd_runners(args: argparse.Namespace) -> int:
    """``ttag runners setup NAME | status``: the virtual environments ttag builds for runners (e.g. audiocraft)."""
    from ttag_tui import runner_envs

    if args.name and args.name not in runner_envs.RECIPES:
        raise UsageError(f"no managed environment for {args.name!r} (known: {', '.join(runner_envs.RECIPES)})")
    if args.action == "setup":
        if not args.name:
            raise UsageError(f"runners setup needs a runner name: {', '.join(runner_envs.RECIPES)}")
        try:
            runner_envs.setup(args.name, force=args.force)
        except runner_envs.EnvError as exc:
            return _fail(str(exc), EXIT_FAILED)
        return EXIT_OK
    names = [args.name] if args.name else list(runner_envs.RECIPES)
    statuses = [runner_envs.status(n) for n in names]
    if args.json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
        return EXIT_OK
    for st in statuses:
        state = "healthy" if st.healthy and not st.problem else ("present" if st.present else "absent")
        print(f"{st.runner}: {state}, {human_size(st.size_bytes)} at {st.path}")
        if st.versions:
            print("  " + ", ".join(f"{k} {v}" for k, v in st.versions.items()))
        if st.problem:
            print(f"  {st.problem}")
    return EXIT_OK if all(st.healthy for st in statuses) else EXIT_FAILED


# -- config --------------------------------------------------------------------------------------------------------
def cmd_config(args: argparse.Namespace) -> int:
    import dataclasses

    import tomli_w

    from ttag_tui import config as config_module
    from ttag_tui import paths

    if args.action == "path":
        print(paths.config_file())
    elif args.action == "show":
        settings = dataclasses.asdict(config_module.load())
        print(f"# {paths.config_file()} (with TTAG_* overrides)")
        print(tomli_w.dumps({k: v for k, v in settings.items() if v is not None}), end="")
        for key in (k for k, v in settings.items() if v is None):  # TOML has no "unset": say it in a comment
            print(f"# {key}: not set (automatic)")
    else:
        if args.key is None or args.value is None:
            raise UsageError("config set needs KEY and VALUE, e.g. ttag config set device cpu")
        config_module.set_value(args.key, args.value)
        print(f"{args.key} = {args.value!r} saved to {paths.config_file()}")
    return EXIT_OK


# -- server --------------------------------------------------------------------------------------------------------
def cmd_server(args: argparse.Namespace) -> int:
    from ttag_tui.server import UnsafeBind, serve

    try:
        serve(args.host, args.port, allow_public=args.insecure_no_key, cluster=args.cluster or "")
    except UnsafeBind as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


# -- cluster -------------------------------------------------------------------------------------------------------
def cmd_cluster(args: argparse.Namespace) -> int:
    """``ttag cluster status``: the Ray cluster's nodes, their GPUs and free memory, which models each has warm and
    what they take, and each node's memory budget (Ray is imported here only)."""
    from ttag_tui import config as config_module

    address = args.cluster or config_module.load().cluster
    if not address:
        raise UsageError("no cluster: pass --cluster HEAD:6379 or set one with `ttag config set cluster HEAD:6379`")
    from ttag_tui.backend.cluster import connect, nodes

    connect(address)  # without Ray, or with a head that does not answer: one line (ClusterUnavailable)
    state = nodes()
    if args.json:
        print(json.dumps(state, indent=2))
        return EXIT_OK if state["state"] == "up" else EXIT_FAILED
    if state["state"] != "up":
        return _fail(f"the Ray cluster at {address} is down: {state['reason']}", EXIT_FAILED)
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "node", "address", "resources", "GPUs (free / total)", "memory (used / budget, free)", "warm models", "loads"
    )
    for node in state["nodes"]:
        resources = ", ".join(f"{k} {v:g}" for k, v in sorted(node["resources"].items()) if k != "object_store_memory")
        replicas = node["replicas"]
        gpus = [f"{g['name']} {g['free_mib']}/{g['total_mib']} MiB" for r in replicas for g in r["gpus"]]
        reports = [r["memory"] for r in replicas if r.get("memory")]
        memory = [
            f"{d['device']}: {human_size(d['used_bytes'])} / {human_size(d['budget_bytes'])}"
            + (f", {human_size(d['free_bytes'])} free" if d.get("free_bytes") is not None else "")
            for report in reports
            for d in report["devices"]
        ]
        sizes = {m["model"]: m["bytes"] for report in reports for m in report["models"]}
        warm = [
            f"{m} ({human_size(sizes[m])})" if m in sizes else m
            for m in sorted({m for r in replicas for m in r["warm"]})
        ]
        loads = sum(sum(r["loads"].values()) for r in replicas)
        name = node["node_id"][:12] + (" (head)" if node["head"] else "") + ("" if node["alive"] else " (dead)")
        gpu_text = "\n".join(gpus) or ("-" if replicas else "no ttag replica")
        memory_text = "\n".join(memory) or "-"
        table.add_row(name, node["address"], resources, gpu_text, memory_text, ", ".join(warm) or "-", str(loads))
    Console().print(table)
    return EXIT_OK


# -- the TUI -------------------------------------------------------------------------------------------------------
def cmd_tui(args: argparse.Namespace) -> int:
    from ttag_tui.app import run
    from ttag_tui.sessions import StoreError

    try:
        return run(backend=args.backend)
    except StoreError as exc:  # a session file from a newer ttag, or not a database: say so, touch nothing
        return _fail(str(exc), EXIT_FAILED)


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    """The command line; ``generate`` has an option for every parameter a model in ``registry`` declares."""
    from runners.registry import default_registry

    registry = registry or default_registry()
    parser = _Parser(prog="ttag", description="Turn text prompts into audio.")
    parser.add_argument("--version", action="version", version=f"ttag {__version__}")
    parser.add_argument(
        "--backend",
        metavar="URL",
        type=_backend_url,
        help="send jobs to a ttag server (e.g. http://localhost:8000 through an SSH tunnel)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="generate audio from a prompt",
        description="Generate audio from a text prompt and write it (with a .json sidecar).",
    )
    gen.add_argument("prompt", help='what to make, e.g. "lofi hip hop with piano, 85 bpm"')
    gen.add_argument(
        "-m",
        "--model",
        help="model id (see ttag list-models; default from config: synth), a local checkpoint folder, "
        "or an alias from the config's models table",
    )
    # Written by a take's recreate line (ttag_tui.output.recreate_command): what the take was made from.
    gen.add_argument("--weights-sha256", metavar="SHA", help=argparse.SUPPRESS)
    gen.add_argument(
        "--input-sha256", metavar="NAME=SHA", type=_pinned_input, action="append", default=[], help=argparse.SUPPRESS
    )
    gen.add_argument("-d", "--duration", type=float, help=CORE_FIELD_HELP["duration"])
    gen.add_argument("--seed", type=int, help=CORE_FIELD_HELP["seed"])
    gen.add_argument("-n", "--takes", type=int, help=CORE_FIELD_HELP["takes"])
    gen.add_argument("-o", "--output", help="output folder, or a file name with an audio suffix")
    gen.add_argument("--format", choices=FORMATS, help="audio format (default wav, or -o's suffix)")
    param_names = registry.param_names()
    for name in param_names:  # passed on as typed: the request's validation parses and checks them
        declared = min(registry.params_named(name), key=lambda p: len(p.help))  # the most general wording
        gen.add_argument(
            cli_option(name),
            dest=name,
            metavar=METAVARS[declared.type],
            help=f"{declared.help.split('. ')[0].rstrip('.')} (models that take it: see list-models)",
        )
    gen.set_defaults(model_params=param_names)
    gen.add_argument("--play", action="store_true", help="play the first take when done")
    gen.add_argument("--json", action="store_true", help="print the takes' metadata as JSON")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)

    models = sub.add_parser("list-models", help="list models and whether they can run here")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.set_defaults(func=cmd_list_models)

    server = sub.add_parser(
        "server",
        help="serve the REST API and web UI",
        description="Serve the REST API (and web UI) on HOST:PORT; loopback unless an API key is configured.",
    )
    server.add_argument("--host", type=_host, default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    server.add_argument("--port", type=_port, default=8000, help="port, 1-65535 (default 8000)")
    server.add_argument(
        "--insecure-no-key", action="store_true", help="allow a non-loopback address without an API key"
    )
    server.add_argument(
        "--cluster",
        metavar="HEAD:PORT",
        type=_cluster_address,
        help="run jobs on this Ray cluster's nodes (auto: the Ray started on this machine; config: cluster)",
    )
    server.set_defaults(func=cmd_server)

    clu = sub.add_parser(
        "cluster", help="the Ray cluster `ttag server --cluster` runs jobs on", description="Show the Ray cluster."
    )
    clu.add_argument("action", choices=("status",))
    clu.add_argument(
        "--cluster", metavar="HEAD:PORT", type=_cluster_address, help="the cluster's head (default: config cluster)"
    )
    clu.add_argument("--json", action="store_true", help="machine-readable output")
    clu.set_defaults(func=cmd_cluster)

    mdl = sub.add_parser(
        "models",
        help="download, remove and list model weights",
        description="Manage model weights in the Hugging Face cache.",
    )
    mdl.add_argument("action", choices=("pull", "rm", "list"))
    mdl.add_argument("ids", nargs="*", metavar="ID", help="model ids (see ttag list-models)")
    mdl.set_defaults(func=cmd_models)

    rnr = sub.add_parser(
        "runners",
        help="set up and check the environments of runners that need their own",
        description="Runners whose libraries cannot share ttag's environment (audiocraft) get a "
        "virtual environment that ttag builds and uses for their workers.",
    )
    rnr.add_argument("action", choices=("setup", "status"))
    rnr.add_argument("name", nargs="?", metavar="NAME", help="runner name, e.g. audiocraft")
    rnr.add_argument("--force", action="store_true", help="setup: delete the environment and build it again")
    rnr.add_argument("--json", action="store_true", help="status: print JSON")
    rnr.set_defaults(func=cmd_runners)

    cfg = sub.add_parser("config", help="show or change the configuration")
    cfg.add_argument("action", choices=("path", "show", "set"))
    cfg.add_argument("key", nargs="?")
    cfg.add_argument("value", nargs="?")
    cfg.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; ``argv`` None means this is the program itself (``ttag``, ``python -m ttag_tui``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", cmd_tui)
    code = _run(func, args)
    if argv is None and func is cmd_generate and not args.play:
        try:
            _leave_now(code)
        except KeyboardInterrupt:  # Ctrl-C as it leaves: everything is written; no traceback for that
            _leave_now(code)
    return code


def _leave_now(code: int) -> NoReturn:
    """End ``ttag generate`` without the interpreter's finalisation (~30 ms of tearing down numpy and every module):
    by now each take and sidecar was written, fsynced and renamed into place, the worker has exited and been reaped,
    and the bridge's threads are idle daemons; what is left to do is flush what was printed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away (`| head`) or a closed stream
            stream.flush()
    os._exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what is still buffered does not fail again
    (Python would print "Exception ignored ... BrokenPipeError")."""
    with contextlib.suppress(OSError, ValueError):  # stdout may be no file at all (a test's capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from ttag_tui.config import ConfigError

    try:
        return func(args)
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)

    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # the reader of stdout went away (`ttag config show | head -1`): nothing left to say
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # an output folder that cannot be written; a ttag server away (RemoteError)
        return _fail(str(exc), EXIT_FAILED)
