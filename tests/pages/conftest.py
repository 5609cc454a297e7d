"""Fixtures for invite redemption: configured providers, faked OPs at the HTTP boundary, an invitee browser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Event, Identity, Invite, Member
from idp_bridge.store.db import transaction
from tests.fakes.oidc import FakeOP
from tests.helpers import Api, make_key, make_org

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
PERSONAL = "9188040d-6c67-4c5b-b112-36a304b66dad"
MS = "https://login.microsoftonline.com"
CLIENT = {"client_id": "bridge-client", "client_secret": "bridge-secret"}
PROVIDERS: dict[str, dict[str, Any]] = {
    "oidc": {"type": "oidc", "issuer": "https://idp.test", **CLIENT},
    "google": {"type": "google", **CLIENT},
    "entra": {"type": "entra", "tenant": "organizations", **CLIENT},
    "keycloak": {"type": "keycloak", "server_url": "https://kc.test", "realm": "acme", "provision": False,
                 **CLIENT},
}
REDIRECT = "https://app.test/welcome"


@dataclass
class OPs:
    oidc: FakeOP
    google: FakeOP
    entra: FakeOP
    keycloak: FakeOP


@pytest.fixture
def ops(settings_overrides: dict[str, Any]) -> Iterator[OPs]:
    """Fake OPs for every configured provider, answering only through `responses`."""
    settings_overrides["providers"] = PROVIDERS
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield OPs(
            oidc=FakeOP("https://idp.test").install(rsps),
            google=FakeOP("https://accounts.google.com").install(rsps),
            entra=FakeOP(f"{MS}/{TENANT}/v2.0", base=f"{MS}/common-fake", discovery_issuer=f"{MS}/{{tenantid}}/v2.0",
                         discovery_path=f"{MS}/organizations/v2.0").install(rsps),
            keycloak=FakeOP("https://kc.test/realms/acme").install(rsps),
        )


@pytest.fixture
def api(ops: OPs, bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", redirect_url=REDIRECT)
    return Api(client, make_key(bridge, "acme"))


@dataclass
class Snapshot:
    invite_status: str
    member_status: str
    identities: int
    event_types: list[str]
    rejections: list[str]


def snapshot(bridge: Bridge, invite_id: str) -> Snapshot:
    """Everything redemption may change about one invite, read back from the database."""
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        member = session.get(Member, invite.member_id)
        assert member is not None
        identities = len(list(session.scalars(select(Identity).where(Identity.member_id == member.id))))
        types = list(session.scalars(select(Event.type).where(Event.invite_id == invite_id)
                                     .order_by(Event.created_at)))
        reasons = [a.details.get("reason", "") for a in session.scalars(
            select(AuditEvent).where(AuditEvent.target_id == invite_id,
                                     AuditEvent.action == "invite.redeem_rejected").order_by(AuditEvent.at))]
        return Snapshot(invite.status, member.status, identities, types, reasons)


def token_of(link: str) -> str:
    return urlsplit(link).path.rsplit("/", 1)[1]


def start(client: FlaskClient, link: str, query: str = "") -> str:
    """Click "Sign in": returns the IdP authorization URL the browser is sent to."""
    resp = client.get(f"/invite/{token_of(link)}/login{query}")
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return str(resp.headers["Location"])


def auth_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def finish(client: FlaskClient, provider: str, params: dict[str, str]) -> Any:
    return client.get(f"/auth/callback/{provider}", query_string=params)
