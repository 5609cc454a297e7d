"""RFC 9207: the authorization response's `iss` must name the provider the invitee was sent to."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.helpers import Api
from tests.pages.conftest import REDIRECT, OPs, finish, snapshot, start
from tests.pages.test_redeem_rules import ALICE, assert_unchanged


def test_a_provider_that_sends_iss_redeems_when_it_names_the_expected_issuer(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    ops.oidc.iss_parameter = True
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    assert cb["iss"] == "https://idp.test"

    resp = finish(client, "oidc", cb)

    assert resp.status_code == 303 and resp.headers["Location"] == REDIRECT
    assert snapshot(bridge, invite["id"]).invite_status == "ACCEPTED"


@pytest.mark.parametrize(("advertised", "iss", "reason"), [
    (True, None, "missing_issuer_parameter"),
    (True, "https://evil.test", "wrong_issuer_parameter"),
    (True, "https://idp.test/", "wrong_issuer_parameter"),
    (True, "", "wrong_issuer_parameter"),
    (False, "https://evil.test", "wrong_issuer_parameter"),
])
def test_a_missing_or_foreign_iss_is_refused_before_the_code_is_sent_anywhere(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge, advertised: bool, iss: str | None,
        reason: str) -> None:
    ops.oidc.iss_parameter = advertised
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    cb.pop("iss", None)
    if iss is not None:
        cb["iss"] = iss

    resp = finish(client, "oidc", cb)

    assert resp.status_code == 400
    assert "confirm your sign-in" in resp.get_data(as_text=True)
    assert ops.oidc.token_requests == 0
    assert_unchanged(bridge, invite["id"], reason)


def test_a_refused_iss_uses_the_login_up_and_a_retry_with_the_right_one_redeems(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    ops.oidc.iss_parameter = True
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)

    assert finish(client, "oidc", {**cb, "iss": "https://evil.test"}).status_code == 400
    replay = finish(client, "oidc", cb)
    retry = finish(client, "oidc", ops.oidc.authorize(start(client, invite["link"]), ALICE))

    assert replay.status_code == 400 and "sign-in attempt has expired" in replay.get_data(as_text=True)
    assert retry.status_code == 303
    assert snapshot(bridge, invite["id"]).invite_status == "ACCEPTED"
