"""Google RISC: Security Event Tokens verified against the RISC configuration's keys and issuer."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Identity, Invite, Member, utcnow
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.helpers import Api

from .conftest import GOOGLE_CLIENT_ID, drain, event_types, inbound_count, member_of

RISC = "https://schemas.openid.net/secevent/risc/event-type/"
CONFIG_URL = "https://accounts.google.com/.well-known/risc-configuration"
JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_KEY = RSAKey.generate_key(2048, parameters={"kid": "google-risc-1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "google-risc-1"})


@pytest.fixture
def google(http: responses.RequestsMock) -> None:
    """Google's RISC configuration and its JWKS, as published."""
    http.add(responses.GET, CONFIG_URL, json={"issuer": "https://accounts.google.com", "jwks_uri": JWKS_URL,
                                              "delivery_methods_supported": [
                                                  "https://schemas.openid.net/secevent/risc/delivery-method/push"]})
    http.add(responses.GET, JWKS_URL, json={"keys": [GOOGLE_KEY.as_dict(private=False)]})


def set_token(events: dict[str, Any], *, key: RSAKey = GOOGLE_KEY, iss: str = "https://accounts.google.com",
              aud: str = GOOGLE_CLIENT_ID, jti: str | None = None) -> str:
    """A Security Event Token as Google sends it (no exp)."""
    claims = {"iss": iss, "aud": aud, "iat": int(time.time()), "jti": jti or uuid.uuid4().hex, "events": events}
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "secevent+jwt"}, claims, key)


def account_event(kind: str, sub: str) -> dict[str, Any]:
    return {RISC + kind: {"subject": {"subject_type": "iss-sub", "iss": "https://accounts.google.com", "sub": sub}}}


def push(client: FlaskClient, token: str) -> int:
    return client.post("/webhooks/google-risc", data=token,
                       headers={"Content-Type": "application/secevent+jwt"}).status_code


def active_google_member(bridge: Bridge, api: Api, email: str = "gina@example.com") -> tuple[str, str]:
    """A member who redeemed with a Google account: (member id, Google sub)."""
    invite = api.invite(email, provider="google")
    sub = str(uuid.uuid4().int)[:21]
    with transaction(bridge.sessions) as session:
        member = session.get(Member, invite["member_id"])
        row = session.get(Invite, invite["id"])
        assert member is not None and row is not None
        member.status, row.status, row.accepted_at = "ACTIVE", "ACCEPTED", utcnow()
        session.add(Identity(org_id=member.org_id, member_id=member.id, provider="google",
                             issuer="https://accounts.google.com", subject=sub, email=email, email_verified=True))
    return invite["member_id"], sub


def test_account_disabled_deactivates_the_bound_member(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, google: None) -> None:
    member_id, sub = active_google_member(bridge, api)
    assert push(client, set_token(account_event("account-disabled", sub))) == 202
    drain(bridge, worker)
    member = member_of(bridge, member_id)
    assert (member.status, member.deactivated_by) == ("DEACTIVATED", "google-risc")
    assert event_types(bridge, member_id)[-1] == "member.deactivated"


@pytest.mark.parametrize("bad", [{"key": OTHER_KEY}, {"aud": "someone-else.apps.googleusercontent.com"},
                                 {"iss": "https://accounts.evil.example"}],
                         ids=["bad-signature", "wrong-aud", "wrong-iss"])
def test_an_invalid_token_is_refused_with_400_and_nothing_changes(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, google: None, bad: dict[str, Any]) -> None:
    member_id, sub = active_google_member(bridge, api)
    assert push(client, set_token(account_event("account-disabled", sub), **bad)) == 400
    assert push(client, "not.a.token") == 400
    drain(bridge, worker)
    assert inbound_count(bridge) == 0
    assert member_of(bridge, member_id).status == "ACTIVE"


def test_a_duplicate_jti_changes_nothing_the_second_time(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, google: None) -> None:
    member_id, sub = active_google_member(bridge, api)
    token = set_token(account_event("account-disabled", sub))
    assert push(client, token) == 202
    drain(bridge, worker)
    assert api.post(f"/members/{member_id}/reactivate").status_code == 200
    assert push(client, token) == 202
    drain(bridge, worker)
    assert member_of(bridge, member_id).status == "ACTIVE"
    assert event_types(bridge, member_id).count("member.deactivated") == 1


def test_account_enabled_reactivates_only_what_risc_deactivated(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, google: None) -> None:
    by_risc, risc_sub = active_google_member(bridge, api, "one@example.com")
    by_admin, admin_sub = active_google_member(bridge, api, "two@example.com")
    push(client, set_token(account_event("account-disabled", risc_sub)))
    drain(bridge, worker)
    assert api.post(f"/members/{by_admin}/deactivate").status_code == 200
    time.sleep(1.1)  # iat has one-second resolution; the enabling event is newer than the deactivation
    push(client, set_token(account_event("account-enabled", risc_sub)))
    push(client, set_token(account_event("account-enabled", admin_sub)))
    drain(bridge, worker)
    assert member_of(bridge, by_risc).status == "ACTIVE"
    assert member_of(bridge, by_admin).status == "DEACTIVATED"


def test_sessions_revoked_is_audited_and_changes_no_state(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, google: None) -> None:
    member_id, sub = active_google_member(bridge, api)
    assert push(client, set_token(account_event("sessions-revoked", sub))) == 202
    drain(bridge, worker)
    assert member_of(bridge, member_id).status == "ACTIVE"
    with bridge.sessions() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == member_id)))
    assert "idp.sessions-revoked" in actions


def test_a_verification_event_is_answered_and_acts_on_no_one(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, google: None) -> None:
    member_id, _sub = active_google_member(bridge, api)
    token = set_token({RISC + "verification": {"state": json.dumps({"nonce": "abc"})}})
    assert push(client, token) == 202
    drain(bridge, worker)
    assert inbound_count(bridge) == 1
    assert member_of(bridge, member_id).status == "ACTIVE"


def test_an_email_only_subject_is_never_acted_on(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, google: None) -> None:
    member_id, _sub = active_google_member(bridge, api, "gina@example.com")
    events = {RISC + "account-disabled": {"subject": {"subject_type": "email", "email": "gina@example.com"}}}
    assert push(client, set_token(events)) == 202
    drain(bridge, worker)
    assert member_of(bridge, member_id).status == "ACTIVE"
