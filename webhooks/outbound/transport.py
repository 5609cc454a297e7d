"""Delivery transport: connects only to an address the policy checked; names failures in fixed words."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from idp_bridge.destinations import Destinations, Refused
from idp_bridge.services.webhooks import CONNECTION_ERROR, CONNECTION_REFUSED, PROXY_ERROR, TIMEOUT, TLS_ERROR


class NotAllowed(requests.ConnectionError):
    """The policy refused the destination before anything was sent; `reason` is a fixed reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PinnedAdapter(HTTPAdapter):
    """Resolves the host, checks every address and connects to a checked one (never to a second lookup's answer).

    The pool is keyed by that address; TLS still verifies (and sends SNI for) the URL's host name, and the
    Host header keeps it. With a proxy from the environment the proxy connection is the operator's choice; a
    CONNECT tunnel still goes to the checked address.
    """

    def __init__(self, destinations: Destinations, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.destinations = destinations

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: bool | str,
                                             cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        scheme, host = host_params["scheme"], host_params["host"] or ""
        port = host_params["port"] or (443 if scheme == "https" else 80)
        try:
            found = self.destinations.addresses(scheme, host, port)
        except Refused as exc:
            raise NotAllowed(exc.reason) from None
        # IPv4 first: one address is pinned (no fallback between families), and IPv4 routes nearly everywhere.
        address = min(found, key=lambda a: a.version)
        request.headers["Host"] = urlsplit(request.url).netloc
        if scheme == "https":
            pool_kwargs["server_hostname"] = host
            pool_kwargs["assert_hostname"] = host
        host_params["host"] = str(address)
        return host_params, pool_kwargs


def _causes(exc: BaseException) -> list[BaseException]:
    """exc and what it wraps (urllib3 keeps the socket error under `reason`, requests under args)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        inner = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        todo.extend(e for e in inner if isinstance(e, BaseException))
    return seen


def failure_reason(exc: BaseException) -> str:
    """The fixed reason for a failed attempt: no receiver text and no socket or resolver message."""
    if isinstance(exc, NotAllowed):
        return exc.reason
    if isinstance(exc, requests.exceptions.ProxyError):
        return PROXY_ERROR
    causes = _causes(exc)
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(c, ssl.SSLError) for c in causes):
        return TLS_ERROR
    if isinstance(exc, requests.Timeout) or any(isinstance(c, TimeoutError) for c in causes):
        return TIMEOUT
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return CONNECTION_REFUSED
    return CONNECTION_ERROR

