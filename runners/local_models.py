"""Local checkpoint folders (a fine-tune, a model copied from another machine) as models: ``ttag generate -m PATH``.

The kind comes from the folder's own files — ``config.json`` with a MusicGen ``model_type`` (transformers),
``model_index.json`` naming a diffusers pipeline ttag runs, or AudioCraft's ``state_dict.bin`` +
``compression_state_dict.bin`` — and the model is the registry's spec of that kind with the folder as its source. A
folder whose config asks for code from its repository (``auto_map``, a custom pipeline, ``.py`` files) is refused: ttag
never runs code that came with weights. So is one whose files are malformed in a way that is cheap to see — a JSON file
that does not parse, a field of the wrong type, a size or sample rate no model has — so that it is named in words here
rather than met as a library's exception halfway through a load. The spec's id is the folder's absolute path, so a
take's ``recreate`` line names it, and ``extra["weights_sha256"]`` says which weights made it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from runners.registry import ModelSpec, Registry

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# diffusers pipeline class → the registry model whose runner loads it
PIPELINES = {
    "StableAudioPipeline": "stable-audio-open-1.0",
    "AudioLDM2Pipeline": "audioldm2",
    "StableDiffusionPipeline": "riffusion-model-v1",
}
# A width, depth, vocabulary or channel count beyond any audio model's (MusicGen large: 2048 wide, 48 layers; T5's
# vocabulary: 32k): a config asking for more is damaged, and loading it would allocate petabytes or overflow.
MAX_SIZE = 1 << 20
SIZE_KEY = re.compile(r"(size|dim|layers|heads|channels|codebooks)s?$|^d_(model|ff|kv)$")
RATE_KEYS = ("sampling_rate", "sample_rate")
MUSICGEN_PARTS = ("text_encoder", "audio_encoder", "decoder")  # sub-configs of a MusicGen config.json


class NotAModel(ValueError):
    """The folder is not a checkpoint ttag can run; the message says why and what was expected."""


def looks_like_path(model: str) -> bool:
    """``-m`` names a folder rather than a registry id: it has a path separator, or starts with ``.`` or ``~``."""
    return "/" in model or "\\" in model or model.startswith((".", "~"))


def _parse_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NotAModel(f"{path} cannot be read as JSON ({exc})") from None


def _json(path: Path) -> dict[str, Any]:
    data = _parse_json(path)
    if not isinstance(data, dict):
        raise NotAModel(f"{path} is not a JSON object")
    return data


def _check_json_files(folder: Path) -> None:
    """Every JSON file the libraries may read (tokenizer, scheduler, generation configs) parses."""
    for path in sorted(folder.rglob("*.json")):
        _parse_json(path)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_values(path: Path, config: dict[str, Any], where: str = "") -> None:
    """Sizes within :data:`MAX_SIZE` and sample rates above 0, at any depth of a config: what a library would divide
    by or allocate with before it noticed anything wrong."""
    for key, value in config.items():
        name = f"{where}{key}"
        if isinstance(value, dict):
            _check_values(path, value, f"{name}.")
        elif key in RATE_KEYS and value is not None and not (_is_number(value) and value > 0):
            raise NotAModel(f"{path}: {name} is {json.dumps(value)}, not a sample rate above 0")
        elif SIZE_KEY.search(key) and any(
            _is_number(v) and v > MAX_SIZE for v in (value if isinstance(value, list) else [value])
        ):
            raise NotAModel(f"{path}: {name} is {json.dumps(value)}, larger than any model's (at most {MAX_SIZE})")


def _refuse_remote_code(folder: Path, configs: list[dict[str, Any]]) -> None:
    """``.py`` files, ``auto_map``, or a custom diffusers pipeline (``custom_pipeline``, or ``_class_name`` given as
    [module, class])."""
    code = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py"))
    if code or any(
        "auto_map" in c or c.get("custom_pipeline") or isinstance(c.get("_class_name"), list) for c in configs
    ):
        shown = f" ({', '.join(code[:3])})" if code else ""
        raise NotAModel(f"{folder} needs code from its repository{shown}; ttag never runs code that comes with weights")


def _base_spec(folder: Path, registry: Registry) -> ModelSpec:
    """The registry's spec whose runner loads this folder, chosen from the folder's own config files."""
    config_file, index_file = folder / "config.json", folder / "model_index.json"
    if index_file.is_file():
        index = _json(index_file)
        components = {p: _json(p) for p in sorted(folder.glob("*/config.json"))}
        _refuse_remote_code(folder, [index, *components.values()])
        for path, component in components.items():
            _check_values(path, component)
        pipeline = index.get("_class_name")
        if not isinstance(pipeline, str) or pipeline not in PIPELINES:
            raise NotAModel(f"{folder} holds a {pipeline} pipeline; ttag runs {', '.join(PIPELINES)}")
        model_id = PIPELINES[pipeline]
    elif config_file.is_file():
        config = _json(config_file)
        _refuse_remote_code(folder, [config])
        wrong = [part for part in MUSICGEN_PARTS if not isinstance(config.get(part, {}), dict)]
        if wrong:
            raise NotAModel(f"{config_file}: {', '.join(wrong)} must be a JSON object (a MusicGen sub-config)")
        _check_values(config_file, config)
        kind = config.get("model_type")
        stereo = config.get("audio_encoder", {}).get("audio_channels") == 2
        ids = (
            {"musicgen": "musicgen-stereo-small", "musicgen_melody": "musicgen-stereo-melody"}
            if stereo
            else {
                "musicgen": "musicgen-small",
                "musicgen_melody": "musicgen-melody",
            }
        )
        if not isinstance(kind, str) or kind not in ids:
            raise NotAModel(f"{folder} holds a {kind!r} model; ttag runs MusicGen ('musicgen', 'musicgen_melody')")
        model_id = ids[kind]
    elif (folder / "state_dict.bin").is_file() and (folder / "compression_state_dict.bin").is_file():
        _refuse_remote_code(folder, [])
        model_id = "audiocraft-musicgen-small"
    else:
        raise NotAModel(
            f"{folder} is not a checkpoint ttag knows: expected config.json (MusicGen, transformers), "
            "model_index.json (a diffusers pipeline) or state_dict.bin + compression_state_dict.bin (AudioCraft)"
        )
    base = registry.get(model_id)
    if base is None:
        raise NotAModel(f"{folder} is a {model_id} checkpoint, but this ttag has no such model")
    return base


def weights_digest(folder: Path) -> str:
    """sha256 over the folder's weight files (names and contents, in name order): what recreate compares."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(functools.partial(handle.read, 1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def spec_for_folder(path: str | Path, registry: Registry) -> ModelSpec:
    """A model for a local checkpoint folder; :class:`NotAModel` in words when it cannot be one."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise NotAModel(f"{path}: no such folder")
    base = _base_spec(folder, registry)
    _check_json_files(folder)
    weights = [p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    extra = {**base.extra, "local_folder": str(folder), "weights_sha256": weights_digest(folder)}
    if base.runner.startswith("runners.audiocraft"):
        extra["name"] = str(folder)  # audiocraft's loaders take a folder where they take a hub name
        extra["hub_files"] = {
            repo: files for repo, files in base.extra.get("hub_files", {}).items() if repo != base.hub_repo
        }
    return replace(
        base,
        id=str(folder),
        description=f"{base.description.split(':')[0]} from the local folder {folder}",
        hub_repo=str(folder),
        revision=None,
        size_bytes=sum(p.stat().st_size for p in weights),
        licence="the licence of the weights in that folder",
        extra=extra,
    )
