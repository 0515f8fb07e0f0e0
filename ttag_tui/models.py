"""``ttag models pull | rm | list``: the model weights in the Hugging Face cache.

Downloading is explicit: runners load with ``local_files_only`` and point here when weights are missing, so a
generate never starts a surprise multi-gigabyte fetch. ``pull`` takes only what transformers needs — safetensors
weights (PyTorch ``.bin`` weights only for a repo that has no safetensors at that revision), configs and tokenizer
files — never audiocraft's pickles, and refuses repos that would need ``trust_remote_code``. huggingface_hub is
imported inside each function: the CLI must start fast and the registry must stay importable without it.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runners.registry import ModelSpec, Registry, hub_cache_dir, human_size, install_hint

CONFIG_PATTERNS = ("*.json", "spiece.model", "tokenizer.model", "*.txt", "*.tiktoken")
SAFETENSORS_PATTERNS = ("*.safetensors",)
TORCH_PATTERNS = ("pytorch_model*.bin",)  # transformers' own weight files; not state_dict.bin and friends

Printer = Callable[[str], None]


class ModelsError(Exception):
    """Something the user can act on; printed as one line by the CLI (exit code 1)."""


class ModelsUsageError(ModelsError):
    """A mistake in what was asked, or in the set-up, rather than a download or disk that failed: exit code 2."""


class HubMissing(ModelsUsageError):
    """huggingface_hub is not installed (the base install has no model runner): a set-up mistake."""


HUB_ANSWER_S = 2.5  # how long the hub may take to answer at all before the machine counts as offline


def _require_hub() -> None:
    try:
        import huggingface_hub  # noqa: F401  (only whether it imports)
    except ImportError:
        raise HubMissing(
            "ttag models needs huggingface_hub, which comes with the model runners' extras: "
            f"run `{install_hint('musicgen')}`"
        ) from None


def _check_hub_answers(repo: str) -> None:
    """One short request before huggingface_hub's own, which retries a dead connection for ~25 s, a warning a try."""
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=HUB_ANSWER_S)  # any answer will do, even an error page
    except httpx.TransportError as exc:
        raise ModelsError(
            f"cannot download {repo}: this machine seems to be offline ({constants.ENDPOINT} does not answer: "
            f"{str(exc) or type(exc).__name__})"
        ) from None


def cache_folder(cache_dir: str | None) -> Path:
    """The hub cache's folder. Something other than a folder there (a cache_dir set by hand or by TTAG_CACHE_DIR,
    HF_HUB_CACHE) is said in one line, before huggingface_hub meets it with a traceback's worth of its own."""
    path = hub_cache_dir(cache_dir)
    if path.exists() and not path.is_dir():
        raise ModelsUsageError(
            f"the model cache {path} is not a folder: point cache_dir at one "
            "(ttag config set cache_dir FOLDER, or TTAG_CACHE_DIR)"
        )
    return path


@dataclass(frozen=True)
class CachedModel:
    spec: ModelSpec
    size_on_disk: int
    revisions: tuple[str, ...]
    path: Path | None


def _hub_spec(registry: Registry, model_id: str, action: str) -> tuple[ModelSpec, str]:
    """The model's spec and its hub repo, or why there is nothing to ``action`` (download, remove) for that id."""
    spec = registry.get(model_id)
    if spec is None:
        known = ", ".join(s.id for s in registry if s.hub_repo)
        raise ModelsUsageError(f"unknown model {model_id!r} (models with weights: {known})")
    if not spec.hub_repo:
        raise ModelsUsageError(f"{model_id} has no weights: nothing to {action}")
    if Path(spec.hub_repo).expanduser().is_dir():
        raise ModelsUsageError(f"{model_id} is loaded from the folder {spec.hub_repo}: nothing to {action}")
    return spec, spec.hub_repo


def choose_patterns(files: list[str]) -> list[str]:
    """What to download from a repo listing: safetensors when there are any, else transformers' .bin weights."""
    weights = SAFETENSORS_PATTERNS if any(fnmatch.fnmatch(f, "*.safetensors") for f in files) else TORCH_PATTERNS
    return [*weights, *CONFIG_PATTERNS]


def download_plan(spec: ModelSpec, listing: Callable[[str], list[str]]) -> list[tuple[str, list[str]]]:
    """(repo, file patterns) to fetch. A runner that loads more than one repo, or only some files, declares them in
    its spec's ``extra["hub_files"]`` ({repo: patterns}, or patterns for the model's own repo); otherwise the choice
    follows transformers' layout: safetensors when the repo has them, configs and tokenizer files."""
    declared = spec.extra.get("hub_files")
    repo = spec.hub_repo
    if repo is None:
        raise ModelsError(f"{spec.id} needs no weights: nothing to download")
    if isinstance(declared, dict):
        return [(repo, list(patterns)) for repo, patterns in declared.items()]
    if declared:
        return [(repo, list(declared))]
    return [(repo, choose_patterns(listing(repo)))]


def refuse_remote_code(repo: str, files: list[str], fetch: Callable[[str], Path]) -> None:
    """ttag never runs code shipped in a repo: a transformers ``auto_map`` or a custom diffusers pipeline."""
    if "config.json" in files and "auto_map" in json.loads(fetch("config.json").read_text()):
        raise ModelsError(f"{repo} needs custom code from the repo (trust_remote_code): ttag will not run it")
    if "model_index.json" in files and isinstance(
        json.loads(fetch("model_index.json").read_text()).get("_class_name"), list
    ):
        raise ModelsError(f"{repo} is a custom diffusers pipeline (code from the repo): ttag will not run it")


def pull(registry: Registry, model_id: str, cache_dir: str | None = None, say: Printer = print) -> Path:
    """Download (or resume downloading) a model's files into the hub cache; the model's snapshot folder."""
    spec, hub_repo = _hub_spec(registry, model_id, "download")
    _require_hub()
    cache = str(cache_folder(cache_dir))
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise ModelsError(f"cannot download {hub_repo}: HF_HUB_OFFLINE is set (unset it to download)")
    _check_hub_answers(hub_repo)
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi()
    try:
        plan = download_plan(spec, lambda repo: api.list_repo_files(repo, revision=spec.revision))
        say(
            f"downloading {spec.id} (about {human_size(spec.size_bytes)}) into {cache}; "
            "an interrupted download resumes where it stopped"
        )
        snapshot = None
        for repo, patterns in plan:
            revision = spec.revision if repo == hub_repo else None
            files = api.list_repo_files(repo, revision=revision)
            refuse_remote_code(repo, files, functools.partial(_fetch_file, repo, revision, cache))
            if any(p in TORCH_PATTERNS for p in patterns):
                say(
                    f"{repo} has no safetensors weights at this revision: fetching its PyTorch weights, which "
                    "transformers loads with torch's safe (weights-only) unpickler"
                )
            say(f"  {repo}: {', '.join(patterns)}")
            path = snapshot_download(repo, revision=revision, cache_dir=cache, allow_patterns=patterns)
            snapshot = snapshot or path
    except ModelsError:
        raise
    except Exception as exc:  # offline, DNS, HTTP errors, a missing repo: all one line for the user
        raise ModelsError(f"cannot download {hub_repo}: {_reason(exc)}") from None
    assert snapshot is not None, "a download plan names at least one repo"
    return Path(snapshot)


def _fetch_file(repo: str, revision: str | None, cache: str, name: str) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, name, revision=revision, cache_dir=cache))


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if "Offline" in name or "LocalEntryNotFound" in name or "Connect" in name or "Timeout" in name:
        return f"no connection to the Hugging Face hub ({text})"
    if "RepositoryNotFound" in name or "RevisionNotFound" in name:
        return f"no such repository or revision ({text})"
    return f"{name}: {text}"


def cached(registry: Registry, cache_dir: str | None = None) -> list[CachedModel]:
    """Every model of the registry with hub weights, with what of it is in the cache (size 0 when nothing)."""
    _require_hub()
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        repos = {r.repo_id: r for r in scan_cache_dir(cache_folder(cache_dir)).repos if r.repo_type == "model"}
    except CacheNotFound:
        repos = {}
    rows = []
    for spec in registry:
        if not spec.hub_repo or Path(spec.hub_repo).expanduser().is_dir():
            continue
        repo = repos.get(spec.hub_repo)
        if repo is None:
            rows.append(CachedModel(spec, 0, (), None))
        else:
            rows.append(
                CachedModel(
                    spec, repo.size_on_disk, tuple(sorted(r.commit_hash for r in repo.revisions)), repo.repo_path
                )
            )
    return rows


def remove(registry: Registry, model_id: str, cache_dir: str | None = None) -> int:
    """Delete every cached revision of a model; the bytes freed."""
    _, hub_repo = _hub_spec(registry, model_id, "remove")
    _require_hub()
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_folder(cache_dir))
    except CacheNotFound:
        raise ModelsError(f"{model_id} is not downloaded: nothing to remove") from None
    repo = next((r for r in info.repos if r.repo_id == hub_repo), None)
    if repo is None:
        raise ModelsError(f"{model_id} is not downloaded: nothing to remove")
    strategy = info.delete_revisions(*(r.commit_hash for r in repo.revisions))
    strategy.execute()
    if repo.repo_path.exists():  # refs or leftovers of an interrupted download
        import shutil

        shutil.rmtree(repo.repo_path, ignore_errors=True)
    return max(strategy.expected_freed_size, repo.size_on_disk)
