"""What /metrics says about invitee logins: each outcome counted once, with the reason of a refusal."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.helpers import Api, metric
from tests.pages.conftest import OPs, finish, start

ALICE = {"sub": "alice-sub", "email": "alice@example.com", "email_verified": True}
LOGINS = "idp_bridge_logins_total"


def test_an_accepted_login_is_counted_with_its_callback_request(api: Api, ops: OPs, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    accepted = metric(client, LOGINS, provider="oidc", outcome="accepted")
    requests = metric(client, "idp_bridge_http_requests_total", handler="pages.callback", status="303")
    timed = metric(client, "idp_bridge_http_request_duration_seconds_count", handler="pages.callback")

    assert finish(client, "oidc", cb).status_code == 303

    assert metric(client, LOGINS, provider="oidc", outcome="accepted") == accepted + 1
    assert metric(client, "idp_bridge_http_requests_total", handler="pages.callback", method="GET",
                  status="303") == requests + 1
    assert metric(client, "idp_bridge_http_request_duration_seconds_count", handler="pages.callback") == timed + 1


def test_refusals_are_counted_by_reason_and_a_replay_as_expired(api: Api, ops: OPs, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    other = {"sub": "eve", "email": "eve@example.com", "email_verified": True}
    cb = ops.oidc.authorize(start(client, invite["link"]), other)
    rejected = metric(client, LOGINS, provider="oidc", outcome="rejected", reason="different_account")
    expired = metric(client, LOGINS, provider="oidc", outcome="expired")

    assert finish(client, "oidc", cb).status_code == 403
    assert finish(client, "oidc", cb).status_code == 400

    assert metric(client, LOGINS, provider="oidc", outcome="rejected", reason="different_account") == rejected + 1
    assert metric(client, LOGINS, provider="oidc", outcome="expired") == expired + 1


def test_a_token_that_fails_validation_is_counted_as_failed_with_its_reason(
        api: Api, ops: OPs, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), {**ALICE, "aud": "someone-else"})
    failed = metric(client, LOGINS, provider="oidc", outcome="failed", reason="wrong_audience")

    assert finish(client, "oidc", cb).status_code == 400

    assert metric(client, LOGINS, provider="oidc", outcome="failed", reason="wrong_audience") == failed + 1


def test_a_callback_for_an_unknown_provider_never_becomes_a_label(client: FlaskClient) -> None:
    before = metric(client, LOGINS, provider="unknown", outcome="expired")

    assert client.get("/auth/callback/made-up-name?state=x&code=y").status_code == 400

    assert metric(client, LOGINS, provider="unknown", outcome="expired") == before + 1
    assert metric(client, LOGINS, provider="made-up-name") == 0


def test_request_paths_with_tokens_are_counted_under_their_route_not_their_path(
        api: Api, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    token = invite["link"].rsplit("/", 1)[1]
    before = metric(client, "idp_bridge_http_requests_total", handler="pages.landing")

    assert client.get(f"/invite/{token}").status_code == 200

    assert metric(client, "idp_bridge_http_requests_total", handler="pages.landing") == before + 1
    assert token not in client.get("/metrics").get_data(as_text=True)
