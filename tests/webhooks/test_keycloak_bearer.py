"""Keycloak events in with p2-inc keycloak-events' bearer mode: a JWT signed by the realm, bound to the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp_bridge.bootstrap import build, create_app
from idp_bridge.bridge import Bridge
from idp_bridge.errors import ConfigError
from idp_bridge.settings import load_settings
from idp_bridge.worker import Worker
from tests.fakes import FakeRequest, FakeResponse
from tests.fakes.oidc import b64url, signing_key
from tests.helpers import Api

from .conftest import ServedKeycloak, drain, event_types, inbound_count, member_of, serve_keycloak
from .test_keycloak_events import p2_event, provisioned

AUDIENCE = "idp-bridge-events"


class SigningRealm(ServedKeycloak):
    """A Keycloak realm with signing keys: its certs endpoint publishes them, as Keycloak's JWKS endpoint does,
    and it mints the bearer tokens p2-inc keycloak-events sends (WebhookJwtSigner: jti, iss, aud, iat, exp =
    iat + 300 s, and `request_body_sha256` = lowercase hex SHA-256 of the body, signed RS256 with the active
    key and its kid)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys: list[RSAKey] = [signing_key("realm-key-1")]
        self.certs_down = False

    def _certs(self, request: FakeRequest, realm: str) -> FakeResponse:
        if realm != self.realm:
            return super()._certs(request, realm)
        if self.certs_down:
            return FakeResponse.text(503, "Service Unavailable")
        return FakeResponse.json(200, {"keys": [{**key.as_dict(private=False), "use": "sig", "alg": "RS256"}
                                                for key in self.keys]})

    def rotate(self) -> None:
        """A new active key, published beside the old one."""
        self.keys.append(signing_key("realm-key-2"))

    def claims(self, body: bytes, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"jti": str(uuid.uuid4()), "iss": self.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 300,
                  "request_body_sha256": hashlib.sha256(body).hexdigest(), **changes}
        return {k: v for k, v in claims.items() if v is not None}

    def bearer(self, body: bytes, *, key: RSAKey | None = None, **changes: Any) -> dict[str, str]:
        key = key or self.keys[-1]
        token = jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, self.claims(body, **changes), key)
        return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    settings_overrides["providers"]["keycloak"].update(webhook_jwt=True, webhook_jwt_audience=AUDIENCE)
    return settings_overrides


@pytest.fixture
def keycloak(http: responses.RequestsMock) -> Iterator[SigningRealm]:
    yield from serve_keycloak(SigningRealm(redirect_uris=("https://join.test/invite/*",)))


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> int:
    return client.post("/webhooks/keycloak", data=body, headers=headers).status_code


def test_a_realm_signed_login_activates_the_bound_member_once(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: SigningRealm) -> None:
    invite, user_id = provisioned(bridge, api, worker, keycloak)
    login = p2_event("access.LOGIN", user_id)
    assert [post(client, login, keycloak.bearer(login)) for _ in range(2)] == [202, 202]
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "ACTIVE"
    assert event_types(bridge, invite["member_id"]).count("member.activated") == 1
    assert inbound_count(bridge) == 1


def _unsigned(body: bytes, realm: SigningRealm) -> str:
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64url(json.dumps(realm.claims(body)).encode())}."


def _hs256_with_public_key(body: bytes, realm: SigningRealm) -> str:
    """The algorithm-confusion forgery: HMAC keyed with the realm's public key, which anyone can read."""
    key = realm.keys[-1]
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = b64url(json.dumps(realm.claims(body)).encode())
    secret = json.dumps(key.as_dict(private=False)).encode()
    mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64url(mac)}"


FORGERIES: dict[str, Callable[[bytes, SigningRealm], dict[str, str]]] = {
    # Signed with a key the realm never published, under the realm's own kid.
    "wrong key": lambda body, realm: realm.bearer(
        body, key=RSAKey.generate_key(2048, parameters={"kid": realm.keys[-1].kid})),
    "token for another body": lambda body, realm: realm.bearer(body.replace(b"LOGIN", b"LOGOUT")),
    "expired": lambda body, realm: realm.bearer(body, iat=int(time.time()) - 900, exp=int(time.time()) - 600),
    "issued in the future": lambda body, realm: realm.bearer(body, iat=int(time.time()) + 600,
                                                             exp=int(time.time()) + 900),
    "no expiry": lambda body, realm: realm.bearer(body, exp=None),
    "another realm's issuer": lambda body, realm: realm.bearer(body, iss=realm.issuer.replace("/acme", "/other")),
    "another audience": lambda body, realm: realm.bearer(body, aud="someone-else"),
    "no body hash": lambda body, realm: realm.bearer(body, request_body_sha256=None),
    "base64url body hash": lambda body, realm: realm.bearer(
        body, request_body_sha256=base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")),
    "alg none": lambda body, realm: {"Authorization": f"Bearer {_unsigned(body, realm)}"},
    "HS256 keyed with the public key": lambda body, realm: {
        "Authorization": f"Bearer {_hs256_with_public_key(body, realm)}"},
    "not a JWT": lambda body, realm: {"Authorization": "Bearer not-a-token"},
}


@pytest.mark.parametrize("forgery", list(FORGERIES), ids=list(FORGERIES))
def test_a_bearer_token_failing_any_check_gets_401_and_nothing_is_stored(
        bridge: Bridge, client: FlaskClient, keycloak: SigningRealm, forgery: str) -> None:
    login = p2_event("access.LOGIN", str(uuid.uuid4()))
    assert post(client, login, {"Content-Type": "application/json", **FORGERIES[forgery](login, keycloak)}) == 401
    assert inbound_count(bridge) == 0
    # The same event with a valid token goes through, so the refusal was about the token alone.
    assert post(client, login, keycloak.bearer(login)) == 202
    assert inbound_count(bridge) == 1


def test_a_rotated_realm_key_is_fetched_once_and_forged_kids_do_not_refetch(
        bridge: Bridge, client: FlaskClient, keycloak: SigningRealm) -> None:
    first = p2_event("access.LOGIN", str(uuid.uuid4()))
    assert post(client, first, keycloak.bearer(first)) == 202
    keycloak.rotate()
    second = p2_event("access.LOGIN", str(uuid.uuid4()))
    assert post(client, second, keycloak.bearer(second)) == 202
    assert keycloak.calls["GET /certs"] == 2
    forged_kid = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
    third = p2_event("access.LOGIN", str(uuid.uuid4()))
    assert post(client, third, keycloak.bearer(third, key=forged_kid)) == 401
    assert keycloak.calls["GET /certs"] == 2
    assert inbound_count(bridge) == 2


def test_unreadable_realm_keys_answer_503_so_the_sender_retries_and_nothing_is_stored(
        bridge: Bridge, client: FlaskClient, keycloak: SigningRealm) -> None:
    keycloak.certs_down = True
    login = p2_event("access.LOGIN", str(uuid.uuid4()))
    assert post(client, login, keycloak.bearer(login)) == 503
    assert inbound_count(bridge) == 0
    keycloak.certs_down = False
    assert post(client, login, keycloak.bearer(login)) == 202
    assert inbound_count(bridge) == 1


def test_hmac_signatures_still_work_beside_bearer_tokens(
        bridge: Bridge, client: FlaskClient, keycloak: SigningRealm) -> None:
    login = p2_event("access.LOGIN", str(uuid.uuid4()))
    secret = bridge.settings.providers["keycloak"]["webhook_secret"]
    signature = hmac.new(secret.encode(), login, hashlib.sha256).hexdigest()
    assert post(client, login, {"Content-Type": "application/json", "X-Keycloak-Signature": signature}) == 202
    assert inbound_count(bridge) == 1


def test_bearer_tokens_are_refused_where_the_provider_does_not_enable_them(
        settings_overrides: dict[str, Any], keycloak: SigningRealm) -> None:
    settings_overrides["providers"]["keycloak"]["webhook_jwt"] = False
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        client = create_app(bridge=bridge).test_client()
        login = p2_event("access.LOGIN", str(uuid.uuid4()))
        assert post(client, login, keycloak.bearer(login)) == 401
        assert inbound_count(bridge) == 0
        assert keycloak.calls["GET /certs"] == 0
    finally:
        bridge.close()


@pytest.mark.parametrize("algorithms", ["HS256", "none", "RS256,HS512", " , "])
def test_a_symmetric_or_unknown_jwt_algorithm_setting_fails_at_startup(
        settings_overrides: dict[str, Any], algorithms: str) -> None:
    settings_overrides["providers"]["keycloak"]["webhook_jwt_algorithms"] = algorithms
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        with pytest.raises(ConfigError, match="webhook_jwt_algorithms"):
            create_app(bridge=bridge)
    finally:
        bridge.close()


@pytest.mark.parametrize("algorithms", ["", []], ids=["empty-string", "empty-list"])
def test_an_empty_jwt_algorithm_setting_means_the_default_rs256(
        settings_overrides: dict[str, Any], keycloak: SigningRealm, algorithms: Any) -> None:
    settings_overrides["providers"]["keycloak"]["webhook_jwt_algorithms"] = algorithms
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        client = create_app(bridge=bridge).test_client()
        login = p2_event("access.LOGIN", str(uuid.uuid4()))
        # The realm's own key, freed of its "alg": RS256 so that it can sign the same claims with PS256.
        key = RSAKey.import_key({k: v for k, v in keycloak.keys[-1].as_dict(private=True).items() if k != "alg"})
        ps256 = jwt.encode({"alg": "PS256", "typ": "JWT", "kid": keycloak.keys[-1].kid}, keycloak.claims(login), key,
                           algorithms=["PS256"])
        assert post(client, login, {"Content-Type": "application/json", "Authorization": f"Bearer {ps256}"}) == 401
        assert post(client, login, keycloak.bearer(login)) == 202
        assert inbound_count(bridge) == 1
    finally:
        bridge.close()
