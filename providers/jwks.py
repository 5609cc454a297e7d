"""One JWKS cache for every consumer of a provider's signing keys: OIDC login, Keycloak bearer webhooks, Google RISC."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import requests
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

# A token naming a kid the cached set lacks refetches that JWKS URL at most this often, whoever asks, so forged
# kids cannot turn every request into a call to the provider.
REFRESH_EVERY_SECONDS = 10.0
# How an asker reads a URL: its own pooled session, CA bundle, proxies and timeout.
Get = Callable[[str], requests.Response]


class KeysUnavailable(Exception):
    """The JWKS could not be read; the message names the URL and the kind of failure, never a response body."""


def has_kid(keys: KeySet, kid: str | None) -> bool:
    """Whether the set can be tried for a token naming `kid` (a token without a kid tries every key)."""
    return kid is None or any(key.kid == kid for key in keys.keys)


@dataclass
class _Entry:
    """What is known of one JWKS URL; `lock` makes concurrent askers share one fetch."""

    keys: KeySet | None = None
    refreshed_at: float | None = None
    refresh_failed: bool = False
    attempts: int = 0
    error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class JWKSCache:
    """Key sets by JWKS URL: fetched once, refetched on an unknown kid at most once per URL per refresh window."""

    def __init__(self, *, refresh_every: float = REFRESH_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_every = refresh_every
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, url: str) -> _Entry:
        entry = self._entries.get(url)
        if entry is None:
            with self._lock:
                entry = self._entries.setdefault(url, _Entry())
        return entry

    def key_set(self, url: str, kid: str | None, get: Get) -> KeySet:
        """The keys at `url`, refetched first when they lack `kid` and the window allows; raises KeysUnavailable.

        Whoever asks, the cache decides when `url` is fetched; `get` is only how this asker reaches it. The
        returned set may still lack `kid` (a forged or not yet published key): the caller refuses the token.
        """
        entry = self._entry(url)
        keys = entry.keys
        if keys is not None and has_kid(keys, kid):
            return keys
        seen = entry.attempts
        with entry.lock:
            if entry.attempts != seen and entry.keys is None:
                # Another asker's fetch finished while this one waited and found nothing: share its failure.
                raise KeysUnavailable(entry.error)
            keys = entry.keys
            if keys is not None:
                if has_kid(keys, kid):
                    return keys
                now = self.clock()
                if entry.refreshed_at is not None and now - entry.refreshed_at < self.refresh_every:
                    if entry.refresh_failed:
                        raise KeysUnavailable(entry.error)
                    return keys
                entry.refreshed_at = now
            entry.attempts += 1
            try:
                fresh = _fetch(url, get)
            except KeysUnavailable as exc:
                entry.error = str(exc)
                entry.refresh_failed = keys is not None
                raise
            entry.keys, entry.refresh_failed = fresh, False
            return fresh


def _fetch(url: str, get: Get) -> KeySet:
    """One read of a JWKS; failures name the URL and the kind of failure only."""
    try:
        resp = get(url)
    except requests.RequestException as exc:
        raise KeysUnavailable(f"cannot read {url}: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise KeysUnavailable(f"{url} answered {resp.status_code}")
    try:
        doc = resp.json()
    except ValueError as exc:
        raise KeysUnavailable(f"{url} did not answer JSON") from exc
    if not isinstance(doc, dict):
        raise KeysUnavailable(f"{url} is not a JWKS")
    try:
        return KeySet.import_key_set(cast(KeySetSerialization, doc))
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise KeysUnavailable(f"{url} is not a JWKS") from exc
