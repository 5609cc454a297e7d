"""Each identity rule of SPEC §3, attacked through the real login callback; a failed rule changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Event, Identity, Invite, Member
from idp_bridge.store.db import transaction
from tests.fakes.oidc import FakeOP
from tests.helpers import Api
from tests.pages.conftest import (
    REDIRECT,
    OPs,
    auth_params,
    finish,
    snapshot,
    start,
)

ALICE = {"sub": "alice-sub", "email": "alice@example.com", "email_verified": True}


def assert_unchanged(bridge: Bridge, invite_id: str, reason: str | None = None) -> None:
    snap = snapshot(bridge, invite_id)
    assert (snap.invite_status, snap.member_status, snap.identities) == ("PENDING", "INVITED", 0)
    assert "invite.accepted" not in snap.event_types and "member.activated" not in snap.event_types
    if reason is not None:
        assert snap.rejections[-1] == reason
        assert snap.event_types[-1] == "invite.redeem_rejected"


def login(client: FlaskClient, op: FakeOP, link: str, provider: str, claims: dict[str, Any],
          **kw: Any) -> Any:
    cb = op.authorize(start(client, link), claims, **kw)
    return finish(client, provider, cb)


def test_the_invited_account_redeems_the_invite_and_lands_on_the_org_redirect(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")

    resp = login(client, ops.oidc, invite["link"], "oidc", ALICE)

    assert resp.status_code == 303 and resp.headers["Location"] == REDIRECT
    snap = snapshot(bridge, invite["id"])
    assert (snap.invite_status, snap.member_status, snap.identities) == ("ACCEPTED", "ACTIVE", 1)
    assert snap.event_types[-2:] == ["invite.accepted", "member.activated"]


def test_a_redemption_writes_the_identity_audit_and_events_that_describe_the_result(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")

    login(client, ops.oidc, invite["link"], "oidc", ALICE)

    with transaction(bridge.sessions) as session:
        stored = session.get(Invite, invite["id"])
        assert stored is not None and stored.accepted_at is not None and stored.accepted_at.tzinfo is not None
        member = session.get(Member, stored.member_id)
        assert member is not None and member.activated_at is not None and member.event_seq >= 2
        bound = session.scalars(select(Identity).where(Identity.member_id == member.id)).one()
        assert (bound.provider, bound.issuer, bound.subject, bound.email, bound.email_verified) == (
            "oidc", ops.oidc.issuer, "alice-sub", "alice@example.com", True)
        rows = list(session.scalars(select(Event).where(Event.member_id == member.id).order_by(Event.sequence)))
        accepted, activated = rows[-2:]
        assert (accepted.type, activated.type) == ("invite.accepted", "member.activated")
        assert (accepted.sequence, activated.sequence) == (member.event_seq - 1, member.event_seq)
        for event in (accepted, activated):
            data = event.payload["data"]
            assert (data["invite_status"], data["status"], data["member_id"]) == ("ACCEPTED", "ACTIVE", member.id)
            assert data["sequence"] == event.sequence and not event.dispatched
        assert accepted.payload["data"]["identity_provider"] == "oidc"
        assert activated.payload["data"]["identity"]["subject"] == "alice-sub"
        audits = {a.action: a for a in session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(["invite.accepted", "member.activated"]),
            AuditEvent.target_id.in_([invite["id"], member.id])))}
        assert set(audits) == {"invite.accepted", "member.activated"}
        assert audits["invite.accepted"].actor == "invitee"
        assert audits["invite.accepted"].details["subject"] == "alice-sub"


def test_the_authorization_request_carries_pkce_state_nonce_and_the_login_hint(
        api: Api, ops: OPs, client: FlaskClient) -> None:
    invite = api.invite("alice@example.com", provider="oidc")

    params = auth_params(start(client, invite["link"]))

    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) >= 43
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 20
    assert params["login_hint"] == "alice@example.com"
    assert params["redirect_uri"] == "https://join.test/auth/callback/oidc"
    assert "prompt" not in params


def forged(op: FakeOP, cb: dict[str, str], **kw: Any) -> None:
    """Make the token endpoint return a token the test built from the real claims."""
    auth = op.codes[cb["code"]]
    overrides = kw.pop("claims", {})
    claims = {**op.id_token_claims(auth), **overrides}
    for name, value in list(claims.items()):
        if value is None:
            del claims[name]
    auth.id_token = op.sign(claims, **kw)


@pytest.mark.parametrize(("attack", "reason"), [
    ({"claims": {"aud": "someone-else"}}, "wrong_audience"),
    ({"claims": {"aud": None}}, "wrong_audience"),
    ({"claims": {"aud": ["bridge-client", "other"], "azp": "other"}}, "wrong_audience"),
    ({"claims": {"iss": "https://evil.test"}}, "wrong_issuer"),
    ({"claims": {"nonce": "not-the-nonce"}}, "wrong_nonce"),
    ({"claims": {"nonce": None}}, "wrong_nonce"),
    ({"claims": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}}, "token_expired"),
    ({"claims": {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200}}, "bad_issued_at"),
    ({"alg": "none"}, "bad_algorithm"),
    ({"alg": "HS256"}, "bad_algorithm"),
])
def test_a_token_failing_oidc_validation_leaves_the_invite_pending(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge, attack: dict[str, Any], reason: str) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    forged(ops.oidc, cb, **attack)

    resp = finish(client, "oidc", cb)

    assert resp.status_code == 400
    assert "confirm your sign-in" in resp.get_data(as_text=True)
    assert_unchanged(bridge, invite["id"], reason)


def test_a_token_signed_by_another_key_under_a_published_kid_is_refused(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    forged(ops.oidc, cb, key=stranger)

    assert finish(client, "oidc", cb).status_code == 400
    assert_unchanged(bridge, invite["id"], "bad_signature")


def test_an_unknown_kid_triggers_one_jwks_refetch_and_a_rotated_key_is_then_accepted(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    first = api.invite("bob@example.com", provider="oidc")
    login(client, ops.oidc, first["link"], "oidc", {"sub": "bob", "email": "bob@example.com",
                                                       "email_verified": True})
    assert ops.oidc.jwks_fetches == 1
    ops.oidc.rotate()
    invite = api.invite("alice@example.com", provider="oidc")

    resp = login(client, ops.oidc, invite["link"], "oidc", ALICE)

    assert resp.status_code == 303
    assert ops.oidc.jwks_fetches == 2
    assert snapshot(bridge, invite["id"]).invite_status == "ACCEPTED"


def test_a_kid_missing_even_after_the_refetch_is_refused(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    first = api.invite("bob@example.com", provider="oidc")
    login(client, ops.oidc, first["link"], "oidc", {"sub": "bob", "email": "bob@example.com",
                                                       "email_verified": True})
    invite = api.invite("alice@example.com", provider="oidc")
    ops.oidc.rotate(publish=False)

    resp = login(client, ops.oidc, invite["link"], "oidc", ALICE)

    assert resp.status_code == 400
    assert ops.oidc.jwks_fetches == 2
    assert_unchanged(bridge, invite["id"], "unknown_key")


def test_a_key_set_fetched_for_this_very_login_is_not_fetched_again_for_its_unknown_kid(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    ops.oidc.rotate(publish=False)

    resp = login(client, ops.oidc, invite["link"], "oidc", ALICE)

    assert resp.status_code == 400
    assert ops.oidc.jwks_fetches == 1
    assert_unchanged(bridge, invite["id"], "unknown_key")


def test_userinfo_describing_another_subject_is_refused(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")

    resp = login(client, ops.oidc, invite["link"], "oidc", ALICE,
                 userinfo={"sub": "mallory", "email": "alice@example.com", "email_verified": True})

    assert resp.status_code == 400
    assert_unchanged(bridge, invite["id"], "userinfo_subject_mismatch")


def test_a_discovery_document_naming_another_issuer_stops_the_login_before_it_starts(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    ops.oidc.discovery_issuer = "https://evil.test"
    invite = api.invite("alice@example.com", provider="oidc")

    resp = client.get(f"/invite/{invite['link'].rsplit('/', 1)[1]}/login")

    assert resp.status_code == 503
    assert "be reached right now" in resp.get_data(as_text=True)
    assert_unchanged(bridge, invite["id"])


def test_a_replayed_callback_is_refused_and_a_replayed_code_does_not_redeem(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), {**ALICE, "email": "eve@example.com"})
    assert finish(client, "oidc", cb).status_code == 403

    replay = finish(client, "oidc", cb)
    fresh_state = auth_params(start(client, invite["link"]))["state"]
    code_replay = finish(client, "oidc", {"code": cb["code"], "state": fresh_state})

    assert replay.status_code == 400 and "sign-in attempt has expired" in replay.get_data(as_text=True)
    assert code_replay.status_code == 400
    assert_unchanged(bridge, invite["id"], "token_exchange_failed")
    assert snapshot(bridge, invite["id"]).rejections == ["different_account", "token_exchange_failed"]


def test_a_callback_in_another_browser_than_the_one_that_started_the_login_is_refused(
        api: Api, ops: OPs, client: FlaskClient, app: Any, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    cb = ops.oidc.authorize(start(client, invite["link"]), ALICE)

    resp = finish(app.test_client(), "oidc", cb)

    assert resp.status_code == 400
    assert ops.oidc.token_requests == 0
    assert_unchanged(bridge, invite["id"])


def test_a_verified_but_different_account_sees_which_account_it_used_and_can_switch(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")

    resp = login(client, ops.oidc, invite["link"], "oidc",
                 {"sub": "eve", "email": "eve.other@example.com", "email_verified": True})

    body = resp.get_data(as_text=True)
    assert resp.status_code == 403
    assert "e•••r@example.com" in body and "eve.other@example.com" not in body
    assert "alice@example.com" in body
    assert_unchanged(bridge, invite["id"], "different_account")
    again = body.split('href="', 2)[1].split('"', 1)[0].replace("&amp;", "&")
    switch = client.get(again)
    assert auth_params(switch.headers["Location"])["prompt"] == "select_account"
    assert login(client, ops.oidc, invite["link"], "oidc", ALICE).status_code == 303


def test_the_same_identity_coming_back_after_success_just_continues(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    first_tab = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    second_tab = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    assert finish(client, "oidc", first_tab).status_code == 303

    resp = finish(client, "oidc", second_tab)

    assert resp.status_code == 303 and resp.headers["Location"] == REDIRECT
    assert snapshot(bridge, invite["id"]).event_types.count("member.activated") == 1


def test_another_account_arriving_after_the_invite_was_used_sees_already_used(
        api: Api, ops: OPs, client: FlaskClient, bridge: Bridge) -> None:
    invite = api.invite("alice@example.com", provider="oidc")
    first_tab = ops.oidc.authorize(start(client, invite["link"]), ALICE)
    second_tab = ops.oidc.authorize(start(client, invite["link"]), {"sub": "other", "email": "alice@example.com",
                                                                     "email_verified": True})
    assert finish(client, "oidc", first_tab).status_code == 303

    resp = finish(client, "oidc", second_tab)

    assert resp.status_code == 410 and "already used" in resp.get_data(as_text=True)
    assert snapshot(bridge, invite["id"]).identities == 1
