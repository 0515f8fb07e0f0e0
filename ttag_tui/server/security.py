"""Who may use the server, and how often: Bearer keys, the rate limit keyed on the client, the Host rule.

- Keys: ``Config.api_key_list`` (the same parsed tuple the bind check uses). The ``Authorization`` header is read as
  RFC 7235 says: the scheme ``Bearer`` in any case, then one or more spaces, then the key.
- The rate limit counts per authenticated key (every spelling of the header shares one budget) or, with no keys, per
  client address. Failed authentications are counted per client address with their own limit, so guessing is slow.
- With no key set, only loopback host names (and ``allowed_hosts``) are accepted in ``Host``: a page on another site
  cannot reach a loopback server through a DNS name that it re-points at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from ttag_tui.server import is_loopback

# Wrong keys a client address may send per minute before it gets 429 for every request with a key.
AUTH_FAILURES_PER_MINUTE = 10


BEARER_SUBPROTOCOL = "bearer."  # browsers cannot set headers on a WebSocket: they offer "bearer.KEY" as a subprotocol


def bearer_token(connection: HTTPConnection) -> str | None:
    """The key in ``Authorization: Bearer <key>`` (the scheme in any case, then any spaces), or for a WebSocket in a
    ``bearer.<key>`` subprotocol. Never the query string: URLs end up in logs."""
    header = connection.headers.get("authorization")
    if header is not None:
        scheme, _, rest = header.strip().partition(" ")
        return (rest.strip() or None) if scheme.lower() == "bearer" else None
    if connection.scope["type"] == "websocket":
        for offered in connection.headers.get("sec-websocket-protocol", "").split(","):
            if offered.strip().startswith(BEARER_SUBPROTOCOL):
                return offered.strip()[len(BEARER_SUBPROTOCOL) :] or None
    return None


def client_address(request: HTTPConnection) -> str:
    return request.client.host if request.client else "unknown"


def host_name(host_header: str) -> str:
    """``Host`` without its port: ``[::1]:8000`` → ``::1``, ``Example.COM:80`` → ``example.com``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class Guard:
    """Authentication and rate limiting for one app: ``authenticate`` then ``throttle`` on each guarded request."""

    def __init__(self, keys: Iterable[str], limits: list[RateLimitItem], allowed_hosts: Iterable[str] = ()) -> None:
        self.keys = tuple(keys)
        self.limits = limits
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._auth_failures = RateLimitItemPerMinute(AUTH_FAILURES_PER_MINUTE)

    def host_allowed(self, host_header: str | None) -> bool:
        """With keys, any Host (the key is the guard); without, loopback names and the configured ones only."""
        if self.keys:
            return True
        name = host_name(host_header or "")
        return is_loopback(name) or name in self.allowed_hosts

    def _key_id(self, token: str | None) -> str | None:
        """A stable id for a valid key (its hash: the limiter's storage never holds a key), or None."""
        if token is None:
            return None
        given = token.encode()
        for key in self.keys:
            if hmac.compare_digest(given, key.encode()):
                return hashlib.sha256(key.encode()).hexdigest()[:16]
        return None

    def origin_allowed(self, origin: str | None) -> bool:
        """A browser's ``Origin`` (absent for other clients) must pass the Host rule: no cross-site WebSocket."""
        if origin is None or self.keys:
            return True
        return self.host_allowed(urlsplit(origin).netloc)

    def authenticate(self, request: HTTPConnection) -> str:
        """The rate-limit identity of the caller: its key's id, or its address when the server has no keys."""
        address = client_address(request)
        if not self.keys:
            return f"address:{address}"
        if not self._limiter.test(self._auth_failures, "auth-failures", address):
            raise self._too_many(self._auth_failures, "auth-failures", address, "too many wrong API keys")
        key_id = self._key_id(bearer_token(request))
        if key_id is None:
            self._limiter.hit(self._auth_failures, "auth-failures", address)
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
        return f"key:{key_id}"

    def throttle(self, identity: str, scope: str) -> None:
        """Count one request of ``identity`` against every configured limit; 429 with Retry-After when over."""
        for item in self.limits:
            if not self._limiter.hit(item, scope, identity):
                raise self._too_many(item, scope, identity, f"rate limit exceeded: {item}")

    def _too_many(self, item: RateLimitItem, scope: str, identity: str, message: str) -> HTTPException:
        reset = self._limiter.get_window_stats(item, scope, identity).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        headers: dict[str, Any] = {"Retry-After": str(retry_after)}
        return HTTPException(429, message, headers=headers)
