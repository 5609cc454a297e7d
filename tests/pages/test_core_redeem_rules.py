"""Rules the core decides whatever the provider (SPEC §3 rules 2 and 6, org-allowed providers, provider options),
checked with an in-memory provider of our own protocols: no OpenID Provider is needed to exercise them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp_bridge.bootstrap import build
from idp_bridge.bridge import Bridge
from idp_bridge.settings import load_settings
from tests.conftest import RecordingMail
from tests.fakes.provider import AUTHORIZE, FakeProvider
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import REDIRECT, auth_params, finish, snapshot, start
from tests.pages.test_redeem_rules import assert_unchanged


@pytest.fixture
def fakes() -> dict[str, FakeProvider]:
    return {"fake": FakeProvider("fake", options=frozenset({"keycloak_idp"})),
            "other": FakeProvider("other", label="Other IdP")}


@pytest.fixture
def bridge(settings_overrides: dict[str, Any], mail: RecordingMail,
           fakes: dict[str, FakeProvider]) -> Iterator[Bridge]:
    b = build(load_settings(overrides=settings_overrides, environ={}), mail=mail, providers=dict(fakes))
    yield b
    b.close()


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", redirect_url=REDIRECT)
    return Api(client, make_key(bridge, "acme"))


def signed_in(client: FlaskClient, provider: FakeProvider, link: str, claims: dict[str, Any]) -> Any:
    return finish(client, provider.name, provider.sign_in(start(client, link), claims))


def test_the_invited_account_of_a_provider_redeems_through_the_callback(
        api: Api, fakes: dict[str, FakeProvider], client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="fake")

    resp = signed_in(client, fakes["fake"], invite["link"],
                     {"sub": "alice", "email": "alice@example.com", "email_verified": True})

    assert resp.status_code == 303 and resp.headers["Location"] == REDIRECT
    assert snapshot(bridge, invite["id"]).member_status == "ACTIVE"


def test_an_identity_bound_to_another_member_cannot_redeem(
        api: Api, fakes: dict[str, FakeProvider], client: FlaskClient, bridge: Bridge) -> None:
    fake = fakes["fake"]
    first = api.invite("bob@example.com", provider="fake")
    assert signed_in(client, fake, first["link"],
                     {"sub": "shared", "email": "bob@example.com", "email_verified": True}).status_code == 303
    invite = api.invite("alice@example.com", provider="fake")

    resp = signed_in(client, fake, invite["link"],
                     {"sub": "shared", "email": "alice@example.com", "email_verified": True})

    assert resp.status_code == 403
    assert "already linked to another member" in resp.get_data(as_text=True)
    assert_unchanged(bridge, invite["id"], "identity_bound_to_other_member")


def test_an_account_from_another_provider_than_the_invites_is_refused(
        api: Api, fakes: dict[str, FakeProvider], client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="fake")
    state = auth_params(start(client, invite["link"]))["state"]

    resp = finish(client, "other", {"code": "x", "state": state})

    assert resp.status_code == 400
    assert (fakes["fake"].exchanges, fakes["other"].exchanges) == (0, 0)
    assert_unchanged(bridge, invite["id"])


def test_an_any_invite_offers_only_the_providers_the_org_allows(
        fakes: dict[str, FakeProvider], bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "narrow", allowed_providers=["fake"])
    api = Api(client, make_key(bridge, "narrow"), org="narrow")
    invite = api.invite("alice@example.com")

    url = start(client, invite["link"])
    refused = client.get(f"/invite/{invite['link'].rsplit('/', 1)[1]}/login?provider=other")

    assert url.startswith(AUTHORIZE) and auth_params(url)["provider"] == "fake"
    assert refused.status_code == 400 and "Sign in with Fake IdP" in refused.get_data(as_text=True)


def test_a_provider_option_reaches_the_provider_that_takes_it_and_is_refused_elsewhere(
        api: Api, client: FlaskClient, bridge: Bridge) -> None:
    taken = api.invite("alice@example.com", provider="fake", keycloak_idp="corp-saml")
    assert auth_params(start(client, taken["link"]))["keycloak_idp"] == "corp-saml"

    for provider in ("other", "any"):
        resp = api.post("/invites", {"identifier": "bob@example.com", "provider": provider,
                                     "keycloak_idp": "corp-saml"})
        assert resp.status_code == 422
        assert "keycloak_idp" in resp.get_json()["errors"], provider
