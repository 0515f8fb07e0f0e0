"""``ttag server``: the REST API and web page, served by uvicorn. Imports FastAPI only when the server starts."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


class UnsafeBind(Exception):
    """A non-loopback address with no API key: anyone on the network could use the machine's GPU."""


def is_loopback(host: str) -> bool:
    """A name or address that only this machine reaches: ``localhost`` (and ``*.localhost``), 127/8, ``[::1]``."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_keys: tuple[str, ...], allow_public: bool) -> None:
    """The same parsed key tuple the app authenticates with: a list of only separators is no key at all."""
    if not is_loopback(host) and not api_keys and not allow_public:
        raise UnsafeBind(
            f"refusing to serve on {host} without an API key: set one with `ttag config set api_keys SECRET` "
            "(clients send it as a Bearer token), or pass --insecure-no-key if you really mean it"
        )


def serve(host: str, port: int, *, allow_public: bool = False, cluster: str = "") -> None:
    """Serve until stopped. ``cluster`` (or config ``cluster``): run the jobs on that Ray cluster's nodes (raises
    ``ClusterUnavailable``, a ConnectionError, in one line when it cannot be reached); otherwise on this machine."""
    from ttag_tui import config as config_module
    from ttag_tui.server.app import create_app

    config = config_module.load()
    keys = config.api_key_list
    check_bind(host, keys, allow_public)
    check_host = is_loopback(host) or bool(keys) or not allow_public
    address = cluster or config.cluster
    if not address:
        _run(create_app(config, check_host=check_host), host, port)
        return
    from runners.registry import default_registry
    from ttag_tui.backend.cluster import ClusterSettings
    from ttag_tui.backend.cluster_link import ClusterLink

    registry = default_registry()
    with ClusterLink(registry, config, ClusterSettings(address=address)) as backend:
        _run(create_app(config, registry=registry, bridge=backend, check_host=check_host), host, port)


def _run(app: FastAPI, host: str, port: int) -> None:
    """uvicorn until stopped. ``proxy_headers`` off: uvicorn would otherwise take a loopback client's
    ``X-Forwarded-For`` as its address, and the per-client rate limits and the wrong-key lockout are keyed on it — any
    local process (or anyone through an SSH tunnel) could dodge them, or lock another address out."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5, proxy_headers=False)
