"""OpenID Connect login shared by every provider: discovery, PKCE, code exchange, ID token validation."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from requests.utils import get_environ_proxies

from idp_bridge.domain.providers import LoginFailed
from idp_bridge.security import same
from providers.http import ProviderHTTP
from providers.jwks import KeysUnavailable, has_kid

# Asymmetric algorithms only: `none` and HMAC (which a forged token could key with our public key) never pass.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                      "EdDSA")
LEEWAY_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 10.0
METADATA_TTL_SECONDS = 3600.0


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and the secrets that finish the login."""

    url: str
    state: str
    nonce: str
    code_verifier: str


def _b64json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, read only to pick the key and check the algorithm."""
    try:
        return _b64json(token.split(".", 1)[0])
    except (ValueError, UnicodeDecodeError) as exc:
        raise LoginFailed("malformed_token", "the ID token header is not valid") from exc


class OIDCClient:
    """One relying-party registration at one issuer; caches discovery, reads keys through a JWKS cache."""

    def __init__(self, *, issuer: str, client_id: str, client_secret: str, redirect_uri: str,
                 discovery_issuer_ok: Callable[[str], bool] | None = None,
                 token_issuers: Callable[[Mapping[str, Any]], set[str]] | None = None,
                 scope: str = "openid email profile", use_userinfo: bool = True,
                 http: ProviderHTTP | None = None, ca_file: str | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.use_userinfo = use_userinfo
        self._discovery_issuer_ok = discovery_issuer_ok or (lambda iss: iss == self.issuer)
        self._token_issuers = token_issuers or (lambda _claims: {self.issuer})
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        shared = http if http is not None else ProviderHTTP()
        self.jwks = shared.jwks
        # The shared pooled session: discovery, JWKS, token and userinfo calls reuse connections.
        # Settings requests would merge anew on every call (session headers; proxies, CA bundle and ~/.netrc
        # from the environment) are taken once: headers and the CA bundle now, proxies once per endpoint (for
        # no_proxy); netrc not at all, the credentials sent here are always explicit.
        self.http = shared.session(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False)
        self._headers = dict(self.http.headers)
        # The provider's own CA (its `ca_file` option) wins over the environment's bundle.
        self._verify: str | bool = (ca_file or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                                    or True)
        self._prepared: dict[tuple[str, str, tuple[str, str] | None],
                             tuple[requests.PreparedRequest, dict[str, str]]] = {}

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The discovery document; its issuer must be the configured one (no mix-up with another OP)."""
        with self._lock:
            if self._metadata is not None and time.monotonic() - self._metadata_at < METADATA_TTL_SECONDS:
                return self._metadata
        doc = self._get_json(self.discovery_url, "discovery_failed")
        issuer = doc.get("issuer")
        if not isinstance(issuer, str) or not self._discovery_issuer_ok(issuer):
            raise LoginFailed("discovery_issuer_mismatch",
                              f"discovery at {self.discovery_url} names issuer {issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str):
                raise LoginFailed("discovery_failed", f"discovery lacks {key}")
        with self._lock:
            self._metadata, self._metadata_at = doc, time.monotonic()
        return doc

    def _send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
              data: Mapping[str, str] | None = None, auth: tuple[str, str] | None = None) -> requests.Response:
        """One request to the provider on the pooled session, with the settings taken once (see __init__).

        The URL, session headers and client authentication of an endpoint are prepared once; each call copies
        that and adds its own headers and form body.
        """
        found = self._prepared.get((method, url, auth))
        if found is None:
            found = self._prepared[(method, url, auth)] = (
                requests.Request(method, url, headers=self._headers, auth=auth).prepare(), get_environ_proxies(url))
        template, proxies = found
        prepared = template.copy()
        if headers:
            prepared.headers.update(headers)
        if data is not None:
            prepared.prepare_body(data, None)
        response: requests.Response = self.http.send(prepared, timeout=HTTP_TIMEOUT_SECONDS, proxies=proxies,
                                                     verify=self._verify, allow_redirects=True)
        return response

    def _get_json(self, url: str, reason: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            resp = self._send("GET", url, headers=headers)
        except requests.RequestException as exc:
            raise LoginFailed(reason, f"{url}: {exc.__class__.__name__}") from exc
        if resp.status_code != 200:
            raise LoginFailed(reason, f"{url} answered {resp.status_code}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise LoginFailed(reason, f"{url} did not answer JSON") from exc
        if not isinstance(body, dict):
            raise LoginFailed(reason, f"{url} did not answer a JSON object")
        return body

    def _session(self) -> OAuth2Session:
        return OAuth2Session(self.client_id, self.client_secret, scope=self.scope,
                             redirect_uri=self.redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method="client_secret_basic")

    def authorization_request(self, *, state: str, nonce: str, code_verifier: str,
                              params: Mapping[str, str] | None = None) -> AuthorizationRequest:
        """The authorization URL with PKCE S256, state, nonce and the provider's login hints."""
        endpoint = str(self.metadata()["authorization_endpoint"])
        url, _ = self._session().create_authorization_url(
            endpoint, state=state, nonce=nonce, code_verifier=code_verifier, **dict(params or {}))
        return AuthorizationRequest(url=url, state=state, nonce=nonce, code_verifier=code_verifier)

    def exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        """Redeem the authorization code at the token endpoint (client_secret_basic)."""
        endpoint = str(self.metadata()["token_endpoint"])
        try:
            resp = self._send("POST", endpoint, data={"grant_type": "authorization_code", "code": code,
                                                      "redirect_uri": self.redirect_uri,
                                                      "code_verifier": code_verifier},
                              auth=(self.client_id, self.client_secret))
        except requests.RequestException as exc:
            raise LoginFailed("token_exchange_failed", exc.__class__.__name__) from exc
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", "") if isinstance(body, dict) else ""
            raise LoginFailed("token_exchange_failed", f"token endpoint answered {resp.status_code} {error}")
        if not isinstance(body.get("id_token"), str):
            raise LoginFailed("token_exchange_failed", "no id_token in the token response")
        return body

    def _key_set(self, kid: str | None) -> KeySet:
        """The provider's keys for `kid`; the shared cache refetches on an unknown kid at most once per window."""
        try:
            return self.jwks.key_set(str(self.metadata()["jwks_uri"]), kid, lambda url: self._send("GET", url))
        except KeysUnavailable as exc:
            raise LoginFailed("jwks_failed", str(exc)) from exc

    def validate_id_token(self, id_token: str, *, nonce: str, now: float | None = None) -> dict[str, Any]:
        """Verify signature, algorithm, iss, aud/azp, exp/iat and nonce; return the claims."""
        header = unverified_header(id_token)
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise LoginFailed("bad_algorithm", f"alg {alg!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise LoginFailed("unknown_key", "the ID token's kid is not a string")
        keys = self._key_set(kid)
        if not has_kid(keys, kid):
            raise LoginFailed("unknown_key", f"no key {kid!r} in the provider's JWKS")
        try:
            decoded = jwt.decode(id_token, keys, algorithms=[str(alg)], registry=JWSRegistry(
                algorithms=list(ALLOWED_ALGORITHMS)))
        except (JoseError, ValueError) as exc:
            raise LoginFailed("bad_signature", exc.__class__.__name__) from exc
        claims = dict(decoded.claims)
        self._check_claims(claims, nonce=nonce, now=time.time() if now is None else now)
        return claims

    def _check_claims(self, claims: dict[str, Any], *, nonce: str, now: float) -> None:
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss not in self._token_issuers(claims):
            raise LoginFailed("wrong_issuer", f"iss {iss!r}")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.client_id not in audiences:
            raise LoginFailed("wrong_audience", f"aud {aud!r}")
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise LoginFailed("wrong_audience", f"azp {claims.get('azp')!r} with several audiences")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp < now - LEEWAY_SECONDS:
            raise LoginFailed("token_expired", f"exp {exp!r}")
        if not isinstance(iat, int | float) or isinstance(iat, bool) or iat > now + LEEWAY_SECONDS:
            raise LoginFailed("bad_issued_at", f"iat {iat!r}")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise LoginFailed("no_subject")
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not same(token_nonce, nonce):
            raise LoginFailed("wrong_nonce")

    def userinfo(self, access_token: str) -> dict[str, Any]:
        endpoint = self.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        return self._get_json(endpoint, "userinfo_failed", headers={"Authorization": f"Bearer {access_token}"})

    def check_response_issuer(self, iss: str | None) -> None:
        """RFC 9207: the authorization response must name the issuer the person was sent to (mix-up defence).

        Required when discovery says the provider sends it; compared whenever it is present.
        """
        doc = self.metadata()
        if iss is None:
            if doc.get("authorization_response_iss_parameter_supported") is True:
                raise LoginFailed("missing_issuer_parameter", "the provider sends iss (RFC 9207) but this response "
                                                              "has none")
            return
        if not same(iss, str(doc["issuer"])):
            raise LoginFailed("wrong_issuer_parameter", f"iss parameter {iss[:200]!r}")

    def finish(self, *, code: str, code_verifier: str, nonce: str, iss: str | None = None) -> dict[str, Any]:
        """Check the response's issuer, exchange the code and return the validated claims, completed by userinfo."""
        # Before the code is sent anywhere: a code from another provider must not reach this token endpoint.
        self.check_response_issuer(iss)
        tokens = self.exchange(code, code_verifier)
        claims = self.validate_id_token(tokens["id_token"], nonce=nonce)
        access_token = tokens.get("access_token")
        if self.use_userinfo and isinstance(access_token, str):
            info = self.userinfo(access_token)
            if info:
                if info.get("sub") != claims["sub"]:
                    raise LoginFailed("userinfo_subject_mismatch",
                                      "userinfo describes another account than the ID token")
                # The signed ID token wins; userinfo only fills what it left out.
                claims = {**info, **claims}
        return claims
