"""``ttag server``: the REST API and web page, served by uvicorn. Imports FastAPI only when the server starts."""

from __future__ import annotations

import ipaddress


class UnsafeBind(Exception):
    """A non-loopback address with no API key: anyone on the network could use the machine's GPU."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_keys: str, allow_public: bool) -> None:
    if not is_loopback(host) and not api_keys.strip() and not allow_public:
        raise UnsafeBind(
            f"refusing to serve on {host} without an API key: set one with `ttag config set api_keys SECRET` "
            "(clients send it as a Bearer token), or pass --insecure-no-key if you really mean it"
        )


def serve(host: str, port: int, *, allow_public: bool = False) -> None:
    import uvicorn

    from ttag_tui import config as config_module
    from ttag_tui.server.app import create_app

    config = config_module.load()
    check_bind(host, config.api_keys, allow_public)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
