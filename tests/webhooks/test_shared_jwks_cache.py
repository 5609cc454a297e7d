"""One JWKS cache for OIDC login, Keycloak bearer webhooks and Google RISC: unknown kids refetch at most once per
JWKS URL per 10 s, whoever asks; rotated keys are still picked up once the window has passed."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp_bridge.bootstrap import build, create_app
from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import LoginFailed
from idp_bridge.settings import load_settings
from providers.base import OIDCProviderBase
from providers.jwks import REFRESH_EVERY_SECONDS, JWKSCache, KeysUnavailable
from tests.conftest import RecordingMail
from tests.fakes.oidc import signing_key

from .conftest import serve_keycloak
from .test_google_risc import CONFIG_URL, JWKS_URL, account_event, push
from .test_google_risc import set_token as risc_token
from .test_keycloak_bearer import AUDIENCE, SigningRealm, post
from .test_keycloak_events import p2_event

GOOGLE_DISCOVERY = "https://accounts.google.com/.well-known/openid-configuration"
# One key signs every forged token; only the kid in the header changes.
FORGER = RSAKey.generate_key(2048, parameters={"kid": "forger"})
NONCE = "nonce-1"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GoogleKeys:
    """Google's discovery, RISC configuration and the one JWKS both name, through `responses`, counting fetches."""

    def __init__(self, http: responses.RequestsMock) -> None:
        self.keys = [signing_key("google-1")]
        self.fetches = 0
        http.add(responses.GET, GOOGLE_DISCOVERY, json={
            "issuer": "https://accounts.google.com", "authorization_endpoint": "https://accounts.google.com/o/oauth2",
            "token_endpoint": "https://oauth2.googleapis.com/token", "jwks_uri": JWKS_URL})
        http.add(responses.GET, CONFIG_URL, json={"issuer": "https://accounts.google.com", "jwks_uri": JWKS_URL})
        http.add_callback(responses.GET, JWKS_URL, callback=self._jwks)

    def _jwks(self, _request: Any) -> tuple[int, dict[str, str], str]:
        self.fetches += 1
        body = {"keys": [key.as_dict(private=False) for key in self.keys]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def rotate(self) -> RSAKey:
        key = signing_key(f"google-{len(self.keys) + 1}")
        self.keys.append(key)
        return key


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keycloak(http: responses.RequestsMock) -> Iterator[SigningRealm]:
    yield from serve_keycloak(SigningRealm(redirect_uris=("https://join.test/invite/*",)))


@pytest.fixture
def google(http: responses.RequestsMock) -> GoogleKeys:
    return GoogleKeys(http)


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    settings_overrides["providers"]["keycloak"].update(webhook_jwt=True, webhook_jwt_audience=AUDIENCE)
    return settings_overrides


@pytest.fixture
def jwks(clock: Clock) -> JWKSCache:
    return JWKSCache(clock=clock)


@pytest.fixture
def bridge(settings_overrides: dict[str, Any], mail: RecordingMail, jwks: JWKSCache) -> Iterator[Bridge]:
    b = build(load_settings(overrides=settings_overrides, environ={}), mail=mail, jwks=jwks)
    yield b
    b.close()


@pytest.fixture
def client(bridge: Bridge, jwks: JWKSCache) -> FlaskClient:
    return create_app(bridge=bridge, jwks=jwks).test_client()


def id_token(provider: OIDCProviderBase, key: RSAKey, kid: str, issuer: str) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": provider.client_id, "sub": "someone", "iat": now, "exp": now + 300,
              "nonce": NONCE}
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, key)


@dataclass
class Consumer:
    """One reader of an issuer's keys: `ask(key, kid)` is True when a token signed by key under kid passed."""

    name: str
    ask: Callable[[RSAKey, str], bool]
    fetches: Callable[[], int]
    rotate: Callable[[], RSAKey]


def login_consumer(bridge: Bridge, name: str, issuer: str, fetches: Callable[[], int],
                   rotate: Callable[[], RSAKey]) -> Consumer:
    provider = bridge.providers[name]
    assert isinstance(provider, OIDCProviderBase)

    def ask(key: RSAKey, kid: str) -> bool:
        try:
            provider.oidc.validate_id_token(id_token(provider, key, kid, issuer), nonce=NONCE)
        except LoginFailed as exc:
            assert exc.reason == "unknown_key"
            return False
        return True

    return Consumer(f"{name} login", ask, fetches, rotate)


def keycloak_consumers(bridge: Bridge, client: FlaskClient, realm: SigningRealm) -> list[Consumer]:
    def fetches() -> int:
        return int(realm.calls["GET /certs"])

    def rotate() -> RSAKey:
        realm.rotate()
        return realm.keys[-1]

    def bearer(key: RSAKey, kid: str) -> bool:
        body = p2_event("access.LOGIN", str(uuid.uuid4()))
        token = jwt.encode({"alg": "RS256", "typ": "JWT", "kid": kid}, realm.claims(body), key)
        status = post(client, body, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        assert status in (202, 401)
        return status == 202

    return [login_consumer(bridge, "keycloak", realm.issuer, fetches, rotate),
            Consumer("keycloak bearer webhook", bearer, fetches, rotate)]


def google_consumers(bridge: Bridge, client: FlaskClient, google: GoogleKeys) -> list[Consumer]:
    def risc(key: RSAKey, kid: str) -> bool:
        signer = RSAKey.import_key(key.as_dict(private=True), parameters={"kid": kid})
        status = push(client, risc_token(account_event("account-disabled", "123"), key=signer))
        assert status in (202, 400)
        return status == 202

    return [login_consumer(bridge, "google", "https://accounts.google.com", lambda: google.fetches, google.rotate),
            Consumer("google risc", risc, lambda: google.fetches, google.rotate)]


@pytest.fixture
def consumers(bridge: Bridge, client: FlaskClient, keycloak: SigningRealm,
              google: GoogleKeys) -> dict[str, list[Consumer]]:
    """Consumers grouped by the JWKS URL they share."""
    return {"keycloak": keycloak_consumers(bridge, client, keycloak),
            "google": google_consumers(bridge, client, google)}


CONSUMERS = [("keycloak", 0), ("keycloak", 1), ("google", 0), ("google", 1)]
CONSUMER_IDS = ["keycloak-login", "keycloak-bearer-webhook", "google-login", "google-risc"]


@pytest.mark.parametrize(("issuer", "index"), CONSUMERS, ids=CONSUMER_IDS)
def test_fifty_unknown_kids_refetch_a_consumers_jwks_at_most_once_per_ten_seconds(
        consumers: dict[str, list[Consumer]], clock: Clock, keycloak: SigningRealm, google: GoogleKeys,
        issuer: str, index: int) -> None:
    consumer = consumers[issuer][index]
    first_key = keycloak.keys[0] if issuer == "keycloak" else google.keys[0]
    assert consumer.ask(first_key, str(first_key.kid)) is True
    assert consumer.fetches() == 1

    refused = [consumer.ask(FORGER, f"forged-{n}") for n in range(50)]
    clock.now += REFRESH_EVERY_SECONDS - 0.5
    refused += [consumer.ask(FORGER, f"forged-late-{n}") for n in range(50)]

    assert refused == [False] * 100
    assert consumer.fetches() == 2
    clock.now += 0.5
    assert [consumer.ask(FORGER, f"forged-next-{n}") for n in range(50)] == [False] * 50
    assert consumer.fetches() == 3


@pytest.mark.parametrize("issuer", ["keycloak", "google"])
def test_consumers_of_one_issuer_share_one_refetch_window(
        consumers: dict[str, list[Consumer]], clock: Clock, keycloak: SigningRealm, google: GoogleKeys,
        issuer: str) -> None:
    login, webhook = consumers[issuer]
    first_key = keycloak.keys[0] if issuer == "keycloak" else google.keys[0]
    assert login.ask(first_key, str(first_key.kid)) is True
    assert webhook.ask(first_key, str(first_key.kid)) is True

    for n in range(25):
        assert login.ask(FORGER, f"login-{n}") is False
        assert webhook.ask(FORGER, f"webhook-{n}") is False

    assert login.fetches() == 2


@pytest.mark.parametrize(("issuer", "index"), CONSUMERS, ids=CONSUMER_IDS)
def test_a_rotated_key_is_picked_up_once_the_window_has_passed(
        consumers: dict[str, list[Consumer]], clock: Clock, keycloak: SigningRealm, google: GoogleKeys,
        issuer: str, index: int) -> None:
    consumer = consumers[issuer][index]
    first_key = keycloak.keys[0] if issuer == "keycloak" else google.keys[0]
    assert consumer.ask(first_key, str(first_key.kid)) is True
    assert consumer.ask(FORGER, "forged") is False
    rotated = consumer.rotate()

    too_soon = consumer.ask(rotated, str(rotated.kid))
    clock.now += REFRESH_EVERY_SECONDS
    after_window = consumer.ask(rotated, str(rotated.kid))

    assert (too_soon, after_window) == (False, True)
    assert consumer.fetches() == 3
    assert consumer.ask(rotated, str(rotated.kid)) is True
    assert consumer.fetches() == 3


def test_the_first_rotation_after_a_fetch_is_picked_up_at_once(
        consumers: dict[str, list[Consumer]], keycloak: SigningRealm) -> None:
    login, webhook = consumers["keycloak"]
    assert webhook.ask(keycloak.keys[0], str(keycloak.keys[0].kid)) is True
    rotated = webhook.rotate()

    assert login.ask(rotated, str(rotated.kid)) is True
    assert webhook.ask(rotated, str(rotated.kid)) is True
    assert login.fetches() == 2


def test_concurrent_askers_for_an_unknown_kid_share_one_fetch(http: responses.RequestsMock) -> None:
    url = "https://issuer.test/jwks"
    key = signing_key("k1")
    release = threading.Event()
    fetches: list[int] = []

    def jwks(_request: Any) -> tuple[int, dict[str, str], str]:
        fetches.append(1)
        # Hold the first fetch until every asker has arrived, so the others queue behind it.
        release.wait(10)
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"keys": [key.as_dict(private=False)]})

    http.add_callback(responses.GET, url, callback=jwks)
    cache = JWKSCache(clock=Clock())
    session = requests.Session()
    found: list[bool] = []

    def ask() -> None:
        keys = cache.key_set(url, "k1", lambda u: session.get(u, timeout=10))
        found.append(any(k.kid == "k1" for k in keys.keys))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while not fetches and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    release.set()
    for thread in threads:
        thread.join(10)

    assert found == [True] * 8
    assert len(fetches) == 1


def test_a_failed_refetch_answers_unavailable_until_the_window_has_passed(http: responses.RequestsMock) -> None:
    url = "https://issuer.test/jwks"
    key = signing_key("k1")
    answers = [200, 503, 200]
    calls: list[int] = []

    def jwks(_request: Any) -> tuple[int, dict[str, str], str]:
        calls.append(1)
        status = answers[min(len(calls), len(answers)) - 1]
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"keys": [key.as_dict(private=False)]})

    http.add_callback(responses.GET, url, callback=jwks)
    clock = Clock()
    cache = JWKSCache(clock=clock)
    session = requests.Session()

    def get(u: str) -> requests.Response:
        return session.get(u, timeout=10)

    assert [k.kid for k in cache.key_set(url, "k1", get).keys] == ["k1"]
    with pytest.raises(KeysUnavailable, match="answered 503"):
        cache.key_set(url, "k2", get)
    with pytest.raises(KeysUnavailable):
        cache.key_set(url, "k3", get)
    assert [k.kid for k in cache.key_set(url, "k1", get).keys] == ["k1"]
    assert len(calls) == 2
    clock.now += REFRESH_EVERY_SECONDS
    assert [k.kid for k in cache.key_set(url, "k2", get).keys] == ["k1"]
    assert len(calls) == 3
