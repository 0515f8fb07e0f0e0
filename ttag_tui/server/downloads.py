"""Downloads of a take in a format: encoded once however many clients ask at the same time.

A 10-minute MP3 costs ~20 s of CPU. The web page, a CLI and a script asking for the same take while it is being
encoded (or sent) share that one encode: the first request starts it in the encoder threads, the others wait for it,
and the file goes when the last response using it has been sent (or its client has gone). Nothing is kept beyond that:
the stored take stays the one copy on disk that the retention budget counts.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pathlib
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from ttag_tui.output import transcode

Key = tuple[str, int, str]  # job id, take, format


@dataclass
class _Encode:
    done: asyncio.Future[pathlib.Path]
    users: int = 0


class SharedEncodes:
    """Encoded copies of takes, one per (job, take, format) while any response uses it."""

    def __init__(self, executor: Executor, folder: Callable[[], pathlib.Path]) -> None:
        self._executor = executor
        self._folder = folder  # where encoded copies are written (the take store's root: same disk, removed with it)
        self._encodes: dict[Key, _Encode] = {}

    def __len__(self) -> int:
        """Encodes in use (in flight or being sent)."""
        return len(self._encodes)

    async def open(self, key: Key, source: pathlib.Path) -> pathlib.Path:
        """The take at ``source`` encoded as ``key``'s format: a file to send, then :meth:`close` ``key`` once."""
        encode = self._encodes.get(key)
        if encode is None:
            done = asyncio.ensure_future(self._encode(source, key[2]))
            encode = self._encodes[key] = _Encode(done)
        encode.users += 1
        try:
            return await asyncio.shield(encode.done)  # a client that goes away leaves the encode to the others
        except BaseException:
            self.close(key)
            raise

    def close(self, key: Key) -> None:
        """One response is done with ``key``'s file; the last one removes it (when its encode ends, if it has not)."""
        encode = self._encodes[key]
        encode.users -= 1
        if encode.users:
            return
        del self._encodes[key]
        if encode.done.done():
            _remove(encode.done)
        else:  # every client went away mid-encode: the file goes when the encoder thread is done with it
            encode.done.add_done_callback(_remove)

    async def _encode(self, source: pathlib.Path, fmt: str) -> pathlib.Path:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _encode_file, source, self._folder, fmt)


def _encode_file(source: pathlib.Path, folder: Callable[[], pathlib.Path], fmt: str) -> pathlib.Path:
    """In an encoder thread (the disk work too): a new file in ``folder()`` holding ``source`` as ``fmt``; none if
    encoding fails."""
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=f".{fmt}", dir=folder())
    os.close(fd)
    encoded = pathlib.Path(name)
    try:
        transcode(source, encoded, fmt)
    except BaseException:
        encoded.unlink(missing_ok=True)
        raise
    return encoded


def _remove(done: asyncio.Future[pathlib.Path]) -> None:
    """Delete a finished encode's file off the event loop (a 10-minute WAV is 160 MB)."""
    if not done.cancelled() and done.exception() is None:
        unlink = functools.partial(done.result().unlink, missing_ok=True)
        asyncio.get_running_loop().run_in_executor(None, unlink)


class SharedFileResponse(FileResponse):
    """Sends a shared encode and tells :class:`SharedEncodes` when it is done with it — also when the client went
    away mid-send (a background task would not run then)."""

    def __init__(self, encodes: SharedEncodes, key: Key, path: pathlib.Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._release: Callable[[], None] | None = lambda: encodes.close(key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()

    def release(self) -> None:
        """Done with the file (once; a response that is never sent must call it)."""
        release, self._release = self._release, None
        if release is not None:
            release()
