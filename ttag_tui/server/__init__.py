"""``ttag server``: the REST API and web page, served by uvicorn. Imports FastAPI only when the server starts."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI


class UnsafeBind(Exception):
    """A non-loopback address with no API key: anyone on the network could use the machine's GPU."""


class CannotListen(OSError):
    """The address cannot be served: its port is taken, or its name does not resolve."""


def is_loopback(host: str) -> bool:
    """A name or address that only this machine reaches: ``localhost`` (and ``*.localhost``), 127/8, ``[::1]``."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_keys: tuple[str, ...], allow_public: bool, *, resolved: str | None = None) -> None:
    """The same parsed key tuple the app authenticates with: a list of only separators is no key at all.
    ``resolved``: the address ``host`` resolved to, which must be loopback too."""
    public = not is_loopback(host) or (resolved is not None and not is_loopback(resolved))
    if public and not api_keys and not allow_public:
        shown = host if resolved in (None, host.strip("[]")) else f"{host} ({resolved})"
        raise UnsafeBind(
            f"refusing to serve on {shown} without an API key: set one with `ttag config set api_keys SECRET` "
            "(clients send it as a Bearer token), or pass --insecure-no-key if you really mean it"
        )


def serve(host: str, port: int, *, allow_public: bool = False, cluster: str = "") -> None:
    """Serve until stopped. ``cluster`` (or config ``cluster``): run the jobs on that Ray cluster's nodes (raises
    ``ClusterUnavailable``, a ConnectionError, in one line when it cannot be reached); otherwise on this machine."""
    from ttag_tui import config as config_module
    from ttag_tui.server.app import create_app

    config = config_module.load()
    keys = config.api_key_list
    check_host = is_loopback(host) or bool(keys) or not allow_public
    listeners = listen(host, port, keys, allow_public)
    address = cluster or config.cluster
    if not address:
        _run(create_app(config, check_host=check_host), listeners, host, port)
        return
    from runners.registry import default_registry
    from ttag_tui.backend.cluster import ClusterSettings
    from ttag_tui.backend.cluster_link import ClusterLink

    registry = default_registry()
    with ClusterLink(registry, config, ClusterSettings(address=address)) as backend:
        _run(create_app(config, registry=registry, bridge=backend, check_host=check_host), listeners, host, port)


def listen(host: str, port: int, api_keys: tuple[str, ...], allow_public: bool) -> list[socket.socket]:
    """The server's sockets, bound before anything starts — one per address the name resolves to, as uvicorn binds
    (``localhost``: 127.0.0.1 and ::1) — so a taken port or a name that does not resolve is one line (uvicorn would log
    a traceback-like error and exit 1), and the bind check is made again on each address the name resolved to:
    ``*.localhost`` could be pointed elsewhere in /etc/hosts."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(f"cannot serve on {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys((family, kind, proto, address) for family, kind, proto, _, address in found))
    for *_, address in addresses:
        check_bind(host, api_keys, allow_public, resolved=str(address[0]))
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, address in addresses:
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart right after a stop
            if family == socket.AF_INET6:  # as asyncio: ::1 beside 127.0.0.1, not over it
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
    except OSError as exc:
        for listener in listeners:
            listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                f"port {port} on {host} is in use (another ttag server?): pick one with --port"
            ) from None
        raise CannotListen(f"cannot serve on {host} port {port}: {exc.strerror}") from None
    return listeners


def uvicorn_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """How ttag runs uvicorn (the tests' live servers too).

    ``proxy_headers`` off: uvicorn would otherwise take a loopback client's ``X-Forwarded-For`` as its address, and
    the per-client rate limits and the wrong-key lockout are keyed on it — any local process (or anyone through an SSH
    tunnel) could dodge them, or lock another address out. ``ws_per_message_deflate`` off: the job stream is float
    audio, which barely compresses, and compressing it ran on the event loop — with a few streaming clients (browsers
    ask for it by default) every other request waited seconds."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        proxy_headers=False,
        ws_per_message_deflate=False,
    )


def _run(app: FastAPI, listeners: list[socket.socket], host: str, port: int) -> None:
    """uvicorn on ``listeners`` until stopped."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # uvicorn says where it listens only for sockets it bound itself
                for listener in listeners:
                    bound = listener.getsockname()
                    address = f"[{bound[0]}]" if listener.family == socket.AF_INET6 else bound[0]
                    logging.getLogger("uvicorn.error").info(
                        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", address, bound[1]
                    )

    try:
        Server(uvicorn_config(app, host, port)).run(sockets=listeners)
    finally:
        for listener in listeners:
            listener.close()
