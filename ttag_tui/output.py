"""Writing takes to disk: safe names, atomic no-clobber writes, and a sidecar ``.json`` that re-creates the take."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import tempfile
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from runners.request import AUDIO_FORMATS, CORE_FIELDS

if TYPE_CHECKING:  # numpy stays off the CLI's start-up path
    import numpy as np

    from runners.contract import Clip

SLUG_CHARS = 40


def slugify(prompt: str, limit: int = SLUG_CHARS) -> str:
    """ASCII words joined by dashes: no separators, dots or control characters can reach the file name."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:limit].rstrip("-")
    return slug or "clip"


def clip_stem(prompt: str, seed: int, when: datetime | None = None) -> str:
    when = when or datetime.now()
    return f"{slugify(prompt)}_s{seed}_{when:%Y%m%d-%H%M%S}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> bool:
    """Move a finished temp file to ``final`` unless something is already there. True when it was placed."""
    try:
        os.link(tmp, final)  # atomic, and fails if ``final`` exists: no clobbering, even in a race
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links
        if final.exists():
            return False
        os.replace(tmp, final)
        return True
    tmp.unlink()
    return True


TEMP_PREFIX = ".ttag-"
STALE_TEMP_S = 600  # a temp file this old is not being written any more: its writer was killed


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (``os.umask`` sets it, racing other threads)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_temp(folder: Path, suffix: str, write: Callable[[Path], object]) -> Path:
    """Write through a hidden temp file in ``folder`` (fsynced), with the mode a normal ``open`` would give it:
    mkstemp creates files 0600 whatever the umask, and a take is an ordinary file of the user's."""
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix + ".tmp", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomically(final: Path, write: Callable[[Path], object]) -> Path:
    """Write ``final`` whole or not at all (replacing what was there): ``write`` fills a temp file beside it."""
    os.replace(_write_temp(final.parent, final.suffix, write), final)
    return final


def remove_stale_temp_files(folder: Path, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete half-written takes left by a writer that was killed (its job was lost with it); how many went.
    Fresh ones are left alone: another ttag may be writing them right now."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path in folder.glob(f"{TEMP_PREFIX}*.tmp") if folder.is_dir() else ():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:  # gone already, or another user's (a shared folder): theirs to remove
            pass
    return removed


# Frames per write call. One soundfile.write of ~50 s of stereo Vorbis overflows libsndfile's stack and kills the
# process; every format is written in blocks of this size, whatever the length.
BLOCK_FRAMES = 32768


def write_audio(
    destination: str | Path | BinaryIO, audio: np.ndarray, sample_rate: int, fmt: str, *, subtype: str | None = None
) -> None:
    """Encode ``audio`` (channels, frames) as ``fmt`` into a file or a writable binary stream, block by block."""
    import soundfile

    container, default_subtype = AUDIO_FORMATS[fmt].container, AUDIO_FORMATS[fmt].subtype
    channels, frames = audio.shape
    with soundfile.SoundFile(
        destination, "w", sample_rate, channels, subtype or default_subtype, format=container
    ) as sink:
        for start in range(0, frames, BLOCK_FRAMES):
            sink.write(audio[:, start : start + BLOCK_FRAMES].T)


def transcode(source: Path, destination: str | Path | BinaryIO, fmt: str) -> None:
    """Re-encode an audio file as ``fmt``, block by block: memory stays flat however long the audio is."""
    import soundfile

    container, subtype = AUDIO_FORMATS[fmt].container, AUDIO_FORMATS[fmt].subtype
    with (
        soundfile.SoundFile(source) as origin,
        soundfile.SoundFile(destination, "w", origin.samplerate, origin.channels, subtype, format=container) as sink,
    ):
        for block in origin.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
            sink.write(block)


def sha256_file(path: Path) -> str:
    """The file's sha256, read 1 MiB at a time: an audio input may be 10 minutes long."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audio_input_digests(params: Mapping[str, Any]) -> dict[str, str | None]:
    """The sha256 of each audio file a take was made from (parameter name → digest; None for one that is gone by
    the time the take is written): a recreate line pins them, as the same path may hold other audio later. Nothing is
    read for a request without audio inputs."""
    from runners.registry import default_registry

    registry = default_registry()
    digests: dict[str, str | None] = {}
    for name, value in params.items():
        if value and any(p.type == "audio" for p in registry.params_named(name)):
            try:
                digests[name] = sha256_file(Path(value))
            except OSError:  # moved or deleted while the take was made: the take itself is still kept
                digests[name] = None
    return digests


def cli_option(param: str) -> str:
    """The ``ttag generate`` option for a parameter: ``top_k`` → ``--top-k``, ``audio_prompt`` → ``--continue``."""
    return "--continue" if param == "audio_prompt" else "--" + param.replace("_", "-")


def recreate_command(metadata: dict[str, Any]) -> str:
    """The CLI line that makes this exact take again."""
    params = metadata.get("parameters", {})
    words = [
        "ttag",
        "generate",
        params.get("prompt", ""),
        "-m",
        metadata.get("model", "synth"),
        "-d",
        f"{metadata.get('duration', params.get('duration', 0)):g}",
        "--seed",
        str(metadata.get("seed")),
    ]
    for name, value in params.items():  # the model's own parameters
        if name not in CORE_FIELDS and value is not None:
            words += [cli_option(name), str(value)]
    # What the take was made from, pinned: recreate refuses if a local folder's weights or an audio input changed since.
    if metadata.get("weights_sha256"):
        words += ["--weights-sha256", metadata["weights_sha256"]]
    for name, digest in metadata.get("inputs_sha256", {}).items():
        if digest:
            words += ["--input-sha256", f"{name}={digest}"]
    return shlex.join(words)


def sidecar_data(clip: Clip, audio_path: Path, sha256: str, inputs_sha256: Mapping[str, str | None]) -> dict[str, Any]:
    """The sidecar of ``clip`` written as ``audio_path``, whose bytes hash to ``sha256``, made from the audio files
    whose digests are ``inputs_sha256`` (:func:`audio_input_digests`)."""
    meta = clip.metadata
    params = dict(meta.get("parameters", {}))
    params["seed"] = meta.get("seed", params.get("seed"))
    params["takes"] = 1
    return {
        "file": audio_path.name,
        "prompt": params.get("prompt"),
        "model": meta.get("model"),
        "revision": meta.get("revision"),
        "seed": meta.get("seed"),
        "take": meta.get("take", 0),
        "parameters": params,
        "runner": meta.get("runner"),
        "runner_version": meta.get("runner_version"),
        "weights_sha256": meta.get("weights_sha256"),
        "inputs_sha256": dict(inputs_sha256),
        "ttag_version": meta.get("ttag_version"),
        "sample_rate": clip.sample_rate,
        "channels": clip.channels,
        "duration": clip.duration,
        "sha256": sha256,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "timings": meta.get("timings", {}),
        "recreate": recreate_command({**meta, "parameters": params, "inputs_sha256": inputs_sha256}),
    }


def _c_errno(reset: bool = False) -> int:
    """The C library's errno as cffi keeps it for soundfile (0 where this soundfile has no cffi handle); ``reset``
    sets it to 0 first. libsndfile reports a failed write as "System error."; this errno says which."""
    import soundfile

    ffi = getattr(soundfile, "_ffi", None)
    if ffi is None:
        return 0
    if reset:
        ffi.errno = 0
    return int(ffi.errno)


def _write_error(path: Path, exc: Exception) -> OSError:
    """A failed write, naming the file the user asked for (not a hidden temp file) and the system's reason."""
    code = exc.errno if isinstance(exc, OSError) else _c_errno()
    reason = os.strerror(code) if code else str(exc)
    return OSError(f"cannot write {path}: {reason[:1].lower()}{reason[1:]}")


def write_clip(clip: Clip, target: Path, fmt: str = "wav", *, stem: str | None = None) -> Path:
    """Write ``clip`` into folder ``target`` (or as file ``target`` when it has an audio suffix), plus its sidecar.

    Never overwrites: an existing name gets ``-2``, ``-3``… Both files are written whole to hidden temp files first,
    so a write that fails (a full disk) leaves neither file and no temp behind (OSError naming the file); then the
    audio is renamed into place and the sidecar right after it. Only a crash between those two renames can leave the
    audio without its sidecar. Temps that killed writers left in the folder are removed on the way
    (:func:`remove_stale_temp_files`).
    """
    import soundfile

    target = Path(target).expanduser()
    if target.suffix.lower().lstrip(".") in AUDIO_FORMATS and not target.is_dir():
        folder, fmt = target.parent, target.suffix.lower().lstrip(".")
        base = target.stem if clip.metadata.get("take", 0) == 0 else f"{target.stem}-take{clip.metadata['take'] + 1}"
    else:
        folder = target
        base = stem or clip_stem(clip.metadata.get("parameters", {}).get("prompt", ""), clip.metadata.get("seed", 0))
    encoded = clip.encoded[1] if clip.encoded is not None and clip.encoded[0] == fmt else None

    def write_audio_file(path: Path) -> None:
        if encoded is not None:  # a server's take: its file as the server encoded it, byte for byte
            path.write_bytes(encoded)
        else:
            write_audio(path, clip.audio, clip.sample_rate, fmt)

    audio_tmp: Path | None = None
    sidecar_tmp: Path | None = None
    _c_errno(reset=True)  # so that the errno a failed write leaves is this write's (see _write_error)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder)
        audio_tmp = _write_temp(folder, f".{fmt}", write_audio_file)
        sha256 = sha256_file(audio_tmp)
        inputs_sha256 = audio_input_digests(clip.metadata.get("parameters", {}))
        for attempt in range(1, 1000):
            name = base if attempt == 1 else f"{base}-{attempt}"
            final, sidecar = folder / f"{name}.{fmt}", folder / f"{name}.json"
            if sidecar.exists() or final.exists():
                continue
            text = json.dumps(sidecar_data(clip, final, sha256, inputs_sha256), indent=2) + "\n"
            sidecar_tmp = _write_temp(folder, ".json", lambda p: p.write_text(text))  # noqa: B023 (called at once)
            if _publish(audio_tmp, final):
                os.replace(sidecar_tmp, sidecar)
                break
            sidecar_tmp.unlink()  # the name was taken meanwhile: the next one gets a sidecar that names it
        else:
            raise FileExistsError(f"no free file name for {base} in {folder}")
    except (OSError, soundfile.LibsndfileError) as exc:
        if isinstance(exc, OSError) and exc.errno is None:  # already in words (no free file name)
            raise
        raise _write_error(folder / f"{base}.{fmt}", exc) from exc
    finally:
        for tmp in (audio_tmp, sidecar_tmp):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    _fsync_dir(folder)
    return final
