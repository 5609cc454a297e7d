"""Keycloak events: p2-inc keycloak-events (X-Keycloak-Signature HMAC, or a realm-signed bearer JWT) and vymalo
keycloak-webhook (Basic auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from idp_bridge import jsontext
from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import RealmEventSource
from idp_bridge.errors import ConfigError
from idp_bridge.inbox import IdpSignal, InboundView
from idp_bridge.security import same
from providers.jwks import JWKSCache

SOURCE = "keycloak"
# First login, or finishing the required actions set at provisioning, proves the invitee owns the account.
ACTIVATING = frozenset({"LOGIN", "UPDATE_PASSWORD", "VERIFY_EMAIL"})
USER_PATH = re.compile(r"^users/([^/]+)$")
# p2's bearer mode signs with the realm's active key for the webhook's algorithm (RS256 unless set); only
# asymmetric algorithms can be checked against a JWKS, so HS* and "none" are never accepted.
BEARER_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                               "EdDSA"})
# The claim binding the token to the exact body: lowercase hex SHA-256 of the body's bytes.
BODY_HASH_CLAIM = "request_body_sha256"
CLOCK_SKEW_SECONDS = 60


def sources(bridge: Bridge) -> list[RealmEventSource]:
    """The configured providers that send realm events."""
    return [s for s in (p.realm_events() for p in bridge.providers.values()) if s is not None]


class RealmKeys:
    """Where a realm publishes its signing keys and how to reach it; the keys themselves live in the shared cache."""

    def __init__(self, url: str, cache: JWKSCache, *, verify: bool | str = True, timeout: float = 10.0) -> None:
        self.url = url
        self.cache = cache
        self.verify = verify
        self.timeout = timeout
        self.http = requests.Session()

    def _get(self, url: str) -> requests.Response:
        return self.http.get(url, timeout=self.timeout, verify=self.verify)

    def for_kid(self, kid: str | None) -> KeySet:
        """The key set, refetched by the cache when it lacks `kid` and no refetch happened within its window."""
        return self.cache.key_set(self.url, kid, self._get)


class BearerVerifier:
    """Checks p2-inc keycloak-events bearer tokens: realm signature, issuer, audience, lifetime, body hash."""

    def __init__(self, *, issuer: str, keys: RealmKeys, audience: str | None = None,
                 algorithms: frozenset[str] = frozenset({"RS256"}), clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self.keys = keys
        self.audience = audience
        self.algorithms = sorted(algorithms)
        self.clock = clock

    def verify(self, token: str, body: bytes) -> bool:
        """True when the token is valid and made for exactly this body; raises providers.jwks.KeysUnavailable."""
        try:
            header = jsontext.loads(_b64url(token.split(".")[0]))
        except (ValueError, IndexError):
            return False
        if not isinstance(header, dict) or header.get("alg") not in self.algorithms:
            return False
        kid = header.get("kid")
        keys = self.keys.for_kid(kid if isinstance(kid, str) else None)
        try:
            claims = dict(jwt.decode(token, keys, algorithms=self.algorithms,
                                     registry=JWSRegistry(algorithms=self.algorithms)).claims)
            options: dict[str, Any] = {"iss": {"essential": True, "value": self.issuer},
                                       "exp": {"essential": True}, "iat": {"essential": True}}
            if self.audience:
                options["aud"] = {"essential": True, "value": self.audience}
            jwt.JWTClaimsRegistry(now=int(self.clock()), leeway=CLOCK_SKEW_SECONDS, **options).validate(claims)
        except (JoseError, ValueError, TypeError):
            return False
        iat = claims["iat"]
        if not isinstance(iat, int | float) or isinstance(iat, bool) or iat > self.clock() + CLOCK_SKEW_SECONDS:
            return False
        presented = claims.get(BODY_HASH_CLAIM)
        return isinstance(presented, str) and same(presented.lower(), hashlib.sha256(body).hexdigest())


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _unverified_issuer(token: str) -> str | None:
    try:
        claims = jsontext.loads(_b64url(token.split(".")[1]))
    except (ValueError, IndexError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


def bearer_verifier(source: RealmEventSource, cache: JWKSCache) -> BearerVerifier | None:
    """The source's bearer-token verifier when it accepts bearer tokens, built from its settings."""
    settings = source.bearer_settings()
    if settings is None:
        return None
    if not settings.algorithms or not settings.algorithms <= BEARER_ALGORITHMS:
        raise ConfigError(f"providers.{source.name}.webhook_jwt_algorithms",
                          f"choose from {', '.join(sorted(BEARER_ALGORITHMS))}")
    keys = RealmKeys(settings.jwks_url, cache, verify=settings.verify, timeout=settings.timeout)
    return BearerVerifier(issuer=settings.issuer, keys=keys, audience=settings.audience,
                          algorithms=settings.algorithms)


def bearer_verifiers(bridge: Bridge, jwks: JWKSCache) -> dict[str, BearerVerifier]:
    """Bearer verifiers of the Keycloak providers that accept bearer tokens, by provider name."""
    built = {s.name: bearer_verifier(s, jwks) for s in sources(bridge)}
    return {n: v for n, v in built.items() if v is not None}


def verify(bridge: Bridge, body: bytes, *, signature: str | None, authorization: str | None,
           bearer: Mapping[str, BearerVerifier]) -> str | None:
    """The name of the Keycloak provider that authenticates this request, or None; may raise KeysUnavailable.

    p2-inc keycloak-events sends either `X-Keycloak-Signature` (hex HMAC-SHA256 of the body with the shared
    secret) or `Authorization: Bearer <JWT>` signed by the realm; vymalo keycloak-webhook sends Basic auth.
    """
    signature = (signature or "").strip().lower().removeprefix("sha256=")
    if signature:
        for source in sources(bridge):
            secret = source.hmac_secret()
            if secret and same(hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), signature):
                return source.name
        return None
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        token = value.strip()
        issuer = _unverified_issuer(token)
        for name, verifier in bearer.items():
            # Only the realm the token claims to come from is asked for keys.
            if issuer == verifier.issuer and verifier.verify(token, body):
                return name
        return None
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    for source in sources(bridge):
        wanted = source.basic_credentials()
        # Both compared, always, so timing says nothing about which half was wrong.
        if wanted is not None and same(user, wanted[0]) & same(password, wanted[1]):
            return source.name
    return None


def event_id(payload: Mapping[str, Any], body: bytes) -> str:
    """p2 sends `uid`, vymalo `id`; without either the exact body is its own identity."""
    found = payload.get("uid") or payload.get("id")
    return str(found) if found else "sha256:" + hashlib.sha256(body).hexdigest()


def _time(payload: Mapping[str, Any]) -> datetime | None:
    raw = payload.get("time")
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw / 1000, UTC)
    return None


def _representation(payload: Mapping[str, Any]) -> dict[str, Any]:
    raw = payload.get("representation")
    if isinstance(raw, str):
        try:
            parsed = jsontext.loads(raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return raw if isinstance(raw, dict) else {}


def interpret(bridge: Bridge, view: InboundView) -> list[IdpSignal]:
    """Turn a stored Keycloak event into signals about the Keycloak user it concerns."""
    payload = json.loads(view.body)
    provider = view.source.split(":", 1)[1]
    kind = str(payload.get("type") or "")
    when = _time(payload)
    details = {"event": kind, "keycloak_event_id": view.event_id}
    if kind.startswith("admin.") or payload.get("operationType"):
        resource, _, operation = kind.removeprefix("admin.").partition("-")
        resource = str(payload.get("resourceType") or resource)
        operation = str(payload.get("operationType") or operation)
        match = USER_PATH.match(str(payload.get("resourcePath") or ""))
        if resource != "USER" or match is None:
            return []
        user_id = match.group(1)
        if operation == "DELETE":
            return [IdpSignal("deleted", provider, user_id, when, details)]
        if operation == "UPDATE":
            enabled = _representation(payload).get("enabled")
            if enabled is False:
                return [IdpSignal("deactivated", provider, user_id, when, details)]
            if enabled is True:
                return [IdpSignal("reactivated", provider, user_id, when, details)]
        return []
    name = kind.removeprefix("access.")
    auth = payload.get("authDetails") if isinstance(payload.get("authDetails"), dict) else {}
    user_id = (auth or {}).get("userId") or payload.get("userId")
    if name in ACTIVATING and user_id:
        return [IdpSignal("activated", provider, str(user_id), when, details)]
    return []
