"""Google Cross-Account Protection (RISC): Security Event Tokens verified against Google's RISC configuration."""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from idp_bridge import jsontext
from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import SecurityEventSource
from idp_bridge.inbox import IdpSignal, InboundView
from providers.jwks import JWKSCache, KeysUnavailable

SOURCE = "google-risc"
ISSUER = "https://accounts.google.com"
RISC_CONFIGURATION = "https://accounts.google.com/.well-known/risc-configuration"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
OAUTH = "https://schemas.openid.net/secevent/oauth/event-type/"
ALGORITHMS = ["RS256"]
SIGNALS: Mapping[str, str] = {
    RISC + "account-disabled": "deactivated",
    RISC + "account-enabled": "reactivated",
    RISC + "sessions-revoked": "noted",
    OAUTH + "tokens-revoked": "noted",
    OAUTH + "token-revoked": "noted",
    RISC + "account-purged": "noted",
    RISC + "account-credential-change-required": "noted",
}


class InvalidToken(Exception):
    """The SET failed verification; the receiver answers 400."""


class RiscVerifier:
    """Verifies SETs with the keys named by Google's RISC configuration, read through the shared JWKS cache."""

    def __init__(self, configuration_url: str = RISC_CONFIGURATION, timeout: float = 10.0, *,
                 jwks: JWKSCache | None = None) -> None:
        self.configuration_url = configuration_url
        self.timeout = timeout
        self.http = requests.Session()
        self.jwks = jwks or JWKSCache()
        self._config: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _get(self, url: str) -> dict[str, Any]:
        try:
            resp = self.http.get(url, timeout=self.timeout)
            body = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise InvalidToken(f"cannot read {url}: {exc}") from exc
        if resp.status_code != 200 or not isinstance(body, dict):
            raise InvalidToken(f"{url} answered {resp.status_code}")
        return body

    def configuration(self) -> dict[str, Any]:
        with self._lock:
            if self._config is not None:
                return self._config
        config = self._get(self.configuration_url)
        with self._lock:
            self._config = config
        return config

    def keys(self, kid: str | None) -> KeySet:
        """Google's keys for `kid`; the shared cache refetches on an unknown kid at most once per window."""
        url = str(self.configuration().get("jwks_uri") or "")
        try:
            return self.jwks.key_set(url, kid, lambda u: self.http.get(u, timeout=self.timeout))
        except KeysUnavailable as exc:
            raise InvalidToken(f"the RISC JWKS could not be read: {exc}") from exc

    def verify(self, token: str, audiences: set[str]) -> dict[str, Any]:
        """The SET's claims, after signature, issuer, audience and jti checks (exp is optional for SETs)."""
        header = _segment(token, 0)
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken(f"alg {header.get('alg')!r} is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("kid is not a string")
        keys = self.keys(kid)
        try:
            claims = dict(jwt.decode(token, keys, algorithms=ALGORITHMS,
                                     registry=JWSRegistry(algorithms=ALGORITHMS)).claims)
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"signature: {type(exc).__name__}") from exc
        issuer = str(self.configuration().get("issuer") or ISSUER)
        if claims.get("iss") != issuer:
            raise InvalidToken(f"iss {claims.get('iss')!r}")
        aud = claims.get("aud")
        presented = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
        if not presented & audiences:
            raise InvalidToken(f"aud {aud!r}")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise InvalidToken("no jti")
        if not isinstance(claims.get("events"), dict):
            raise InvalidToken("no events")
        return claims


def _segment(token: str, index: int) -> dict[str, Any]:
    try:
        part = token.split(".")[index]
        value = jsontext.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError) as exc:
        raise InvalidToken("not a JWT") from exc
    if not isinstance(value, dict):
        raise InvalidToken("not a JWT")
    return value


def sources(bridge: Bridge) -> list[SecurityEventSource]:
    """The configured providers whose accounts security event tokens may concern."""
    return [s for s in (p.security_events() for p in bridge.providers.values()) if s is not None]


def audiences(bridge: Bridge) -> dict[str, str]:
    """Our Google client ids, each mapped to its provider name."""
    return {s.audience(): s.name for s in sources(bridge)}


def verifier(bridge: Bridge, jwks: JWKSCache) -> RiscVerifier:
    """The deployment's RISC verifier; its configuration URL may be overridden per deployment."""
    urls = [s.configuration_url() for s in sources(bridge)]
    url = next((u for u in urls if u), RISC_CONFIGURATION)
    return RiscVerifier(url, jwks=jwks)


def verify(bridge: Bridge, token: str, risc: RiscVerifier) -> tuple[str, dict[str, Any]]:
    """(provider name, claims) of a valid SET; raises InvalidToken."""
    ours = audiences(bridge)
    if not ours:
        raise InvalidToken("no Google provider is configured")
    claims = risc.verify(token.strip(), set(ours))
    aud = claims["aud"]
    matched = next(a for a in ([aud] if isinstance(aud, str) else aud) if a in ours)
    return ours[matched], claims


def interpret(bridge: Bridge, view: InboundView) -> list[IdpSignal]:
    """The account events of a stored SET; verification events and unknown types change nothing."""
    claims = _segment(view.body, 1)
    provider = view.source.split(":", 1)[1]
    iat = claims.get("iat")
    when = datetime.fromtimestamp(iat, UTC) if isinstance(iat, int | float) and not isinstance(iat, bool) else None
    signals = []
    for event_type, event in (claims.get("events") or {}).items():
        action = SIGNALS.get(event_type)
        subject = (event or {}).get("subject") or {}
        # Only iss-sub subjects name an account unambiguously; an email-only subject is never acted on.
        if action is None or subject.get("subject_type") != "iss-sub" or not subject.get("sub"):
            continue
        name = event_type.rsplit("/", 1)[-1]
        details = {"event": name, "jti": claims.get("jti"), "reason": (event or {}).get("reason")}
        signals.append(IdpSignal(action, provider, str(subject["sub"]), when, details))  # type: ignore[arg-type]
    return signals
