"""The HTTP every provider module shares: pooled sessions with timeouts, and the deployment's one JWKS cache."""

from __future__ import annotations

import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from providers.jwks import JWKSCache

DEFAULT_TIMEOUT_SECONDS = 10.0
POOL_SIZE = 16


class TimeoutSession(requests.Session):
    """A pooled session whose requests time out after `timeout` seconds unless the call sets its own."""

    def __init__(self, *, timeout: float, verify: bool | str = True, trust_env: bool = True,
                 pool_size: int = POOL_SIZE) -> None:
        super().__init__()
        self.timeout = timeout
        self.verify = verify
        self.trust_env = trust_env
        # No transparent retries: a repeated create or invitation is not harmless; jobs retry with backoff.
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # Every request, redirects included, passes here; request() hands over timeout=None when unset.
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


class ProviderHTTP:
    """Hands every provider module its pooled session and the one JWKS cache; built once per deployment."""

    def __init__(self, *, jwks: JWKSCache | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        # One cache for every consumer of signing keys (OIDC login, Keycloak bearer webhooks, Google RISC), so an
        # unknown kid refetches a JWKS URL at most once per window whoever asks.
        self.jwks = jwks if jwks is not None else JWKSCache()
        self.timeout = timeout
        self._sessions: dict[tuple[float, bool | str, bool], TimeoutSession] = {}
        self._lock = threading.Lock()

    def session(self, *, timeout: float | None = None, verify: bool | str = True,
                trust_env: bool = True) -> TimeoutSession:
        """The pooled session for these transport settings, shared by every caller that asks for the same ones."""
        key = (self.timeout if timeout is None else timeout, verify, trust_env)
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                found = self._sessions[key] = TimeoutSession(timeout=key[0], verify=verify, trust_env=trust_env)
            return found

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
