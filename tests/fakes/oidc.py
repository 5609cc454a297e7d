"""A stateful OpenID Provider faked at the HTTP boundary: discovery, JWKS, token and userinfo endpoints.

It follows OpenID Connect Core / RFC 7636: codes are single use, bound to the client, redirect_uri and
PKCE challenge; the token endpoint takes client_secret_basic. With `iss_parameter` it follows RFC 9207:
discovery advertises `authorization_response_iss_parameter_supported` and responses carry `iss`. Tests decide
what the ID token says, and can mint bad tokens (wrong key, alg none, HMAC keyed with the public key, a key
the JWKS does not list yet).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses
from joserfc import jwt
from joserfc.jwk import RSAKey
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Handler = Callable[[PreparedRequest], tuple[int, dict[str, str], str]]

_KEYS: dict[str, RSAKey] = {}


def signing_key(kid: str) -> RSAKey:
    """RSA keys are slow to generate; tests share one per kid (each fake still publishes its own JWKS)."""
    if kid not in _KEYS:
        _KEYS[kid] = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    return _KEYS[kid]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Authorization:
    """What the relying party asked for at the authorization endpoint."""

    params: dict[str, str]
    claims: dict[str, Any]
    id_token: str | None = None
    userinfo: dict[str, Any] | None = None
    used: bool = False


@dataclass
class FakeOP:
    """One issuer with one registered confidential client."""

    issuer: str
    client_id: str = "bridge-client"
    client_secret: str = "bridge-secret"
    base: str = ""
    discovery_issuer: str | None = None
    discovery_path: str = ""
    iss_parameter: bool = False
    keys: list[RSAKey] = field(default_factory=list)
    published: list[RSAKey] = field(default_factory=list)
    codes: dict[str, Authorization] = field(default_factory=dict)
    access_tokens: dict[str, Authorization] = field(default_factory=dict)
    jwks_fetches: int = 0
    token_requests: int = 0

    def __post_init__(self) -> None:
        self.base = (self.base or self.issuer).rstrip("/")
        key = signing_key("k1")
        self.keys.append(key)
        self.published.append(key)

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.base}/authorize"

    def routes(self) -> dict[tuple[str, str], Handler]:
        """This OP's endpoints: (method, URL) to handler."""
        discovery = f"{(self.discovery_path or self.base).rstrip('/')}/.well-known/openid-configuration"
        return {("GET", discovery): self._discovery, ("GET", f"{self.base}/jwks"): self._jwks,
                ("POST", f"{self.base}/token"): self._token, ("GET", f"{self.base}/userinfo"): self._userinfo}

    def install(self, rsps: responses.RequestsMock) -> FakeOP:
        """Answer this OP's endpoints through `responses`."""
        for (method, url), handler in self.routes().items():
            rsps.add_callback(method, url, callback=handler)
        return self

    def adapter(self) -> BaseAdapter:
        """A requests transport answering this OP's endpoints, to mount on one Session.

        Same endpoints and behaviour as install(), without `responses`' request matching, which a benchmark
        would otherwise count as the relying party's time.
        """
        return _Transport(self.routes())

    def _discovery(self, _req: PreparedRequest) -> tuple[int, dict[str, str], str]:
        doc = {"issuer": self.discovery_issuer or self.issuer, "authorization_endpoint": self.authorization_endpoint,
               "token_endpoint": f"{self.base}/token", "jwks_uri": f"{self.base}/jwks",
               "userinfo_endpoint": f"{self.base}/userinfo", "response_types_supported": ["code"],
               "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
               "token_endpoint_auth_methods_supported": ["client_secret_basic"]}
        if self.iss_parameter:
            doc["authorization_response_iss_parameter_supported"] = True
        return 200, {"Content-Type": "application/json"}, json.dumps(doc)

    def _jwks(self, _req: PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.jwks_fetches += 1
        body = {"keys": [k.as_dict(private=False) for k in self.published]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def rotate(self, *, publish: bool = True) -> RSAKey:
        """Sign from now on with a new key, published in the JWKS (or not, to forge)."""
        kid = f"k{len(self.keys) + 1}"
        key = signing_key(kid)
        self.keys.append(key)
        if publish:
            self.published.append(key)
        return key

    def authorize(self, url: str, claims: Mapping[str, Any] | None = None, *,
                  userinfo: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Play the person signing in: returns the callback parameters (code, state, and iss per RFC 9207)."""
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == self.authorization_endpoint, url
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert params["client_id"] == self.client_id
        assert params["response_type"] == "code"
        assert params["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = Authorization(params=params, claims=dict(claims or {}),
                                         userinfo=dict(userinfo) if userinfo is not None else None)
        callback = {"code": code, "state": params["state"]}
        if self.iss_parameter:
            callback["iss"] = self.issuer
        return callback

    def sign_ahead(self, code: str) -> None:
        """Sign the ID token for this code now rather than at the token request (as a remote OP does it on
        its own machine, outside the relying party's time)."""
        entry = self.codes[code]
        entry.id_token = self.sign(self.id_token_claims(entry))

    def id_token_claims(self, auth: Authorization) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                                  "nonce": auth.params.get("nonce"), "sub": "subject-1"}
        claims.update(auth.claims)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: Mapping[str, Any], *, key: RSAKey | None = None, alg: str = "RS256",
             header: Mapping[str, Any] | None = None) -> str:
        """A compact JWS as a real OP would issue it, or a forgery of one."""
        key = key or self.keys[-1]
        if alg == "none":
            head = {"alg": "none", "typ": "JWT"}
            return f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(dict(claims)).encode())}."
        if alg == "HS256":
            # The classic confusion attack: HMAC keyed with the provider's public key.
            head = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
            signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(dict(claims)).encode())}"
            secret = key.as_pem(private=False)
            sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            return f"{signing_input}.{b64url(sig)}"
        head = {"alg": alg, "typ": "JWT", "kid": key.kid, **dict(header or {})}
        return jwt.encode(head, dict(claims), key)

    def _token(self, req: PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(str(req.body or "")).items()}
        auth = req.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if auth != expected:
            return self._error(401, "invalid_client")
        entry = self.codes.get(form.get("code", ""))
        if entry is None or entry.used:
            return self._error(400, "invalid_grant")
        entry.used = True
        if form.get("redirect_uri") != entry.params.get("redirect_uri"):
            return self._error(400, "invalid_grant")
        verifier = form.get("code_verifier", "")
        if b64url(hashlib.sha256(verifier.encode()).digest()) != entry.params.get("code_challenge"):
            return self._error(400, "invalid_grant")
        id_token = entry.id_token or self.sign(self.id_token_claims(entry))
        access = "at-" + secrets.token_urlsafe(12)
        self.access_tokens[access] = entry
        body = {"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _userinfo(self, req: PreparedRequest) -> tuple[int, dict[str, str], str]:
        token = req.headers.get("Authorization", "").removeprefix("Bearer ")
        entry = self.access_tokens.get(token)
        if entry is None:
            return self._error(401, "invalid_token")
        info = entry.userinfo if entry.userinfo is not None else {
            k: v for k, v in self.id_token_claims(entry).items()
            if k not in ("iss", "aud", "iat", "exp", "nonce")}
        return 200, {"Content-Type": "application/json"}, json.dumps(info)

    @staticmethod
    def _error(status: int, error: str) -> tuple[int, dict[str, str], str]:
        return status, {"Content-Type": "application/json"}, json.dumps({"error": error})


class _Transport(BaseAdapter):
    """Routes requests to in-process handlers by method and URL (query string ignored, as `responses` does)."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        super().__init__()
        self.routes = routes

    def send(self, request: PreparedRequest, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> Response:
        handler = self.routes.get((str(request.method), str(request.url).split("?", 1)[0]))
        status, headers, body = handler(request) if handler is not None else (404, {}, "")
        resp = Response()
        resp.status_code = status
        resp.headers = CaseInsensitiveDict(headers)
        resp._content = body.encode()
        resp.encoding = "utf-8"
        resp.url = str(request.url)
        resp.request = request
        return resp

    def close(self) -> None:
        pass
