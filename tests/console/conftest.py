"""Fixtures for the admin console: an org with an OWNER who redeemed an invite, and a browser that signs in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Member
from idp_bridge.store.db import transaction
from tests.fakes.oidc import FakeOP
from tests.helpers import Api, make_key, make_org
from tests.pages.conftest import OPs, ops
from tests.pages.test_redeem_rules import login as redeem

__all__ = ["ops"]

BASE = "https://join.test"
OWNER = {"sub": "owner-sub", "email": "owner@example.com", "email_verified": True}
ADMIN = {"sub": "admin-sub", "email": "admin@example.com", "email_verified": True}
MEMBER = {"sub": "member-sub", "email": "member@example.com", "email_verified": True}


@dataclass
class Org:
    """An org with an API key, and a person per role who redeemed an invite through the OIDC provider."""

    slug: str
    api: Api
    ids: dict[str, str]


def join(api: Api, client: FlaskClient, op: FakeOP, claims: dict[str, Any], role: str) -> str:
    """Invite the person and redeem as them: an ACTIVE member with a bound identity; returns the member id."""
    invite = api.invite(str(claims["email"]), provider="oidc", role=role)
    resp = redeem(client, op, invite["link"], "oidc", claims)
    assert resp.status_code in (200, 303), resp.get_data(as_text=True)
    return str(invite["member_id"])


@pytest.fixture
def acme(ops: OPs, bridge: Bridge, app: Any) -> Org:
    make_org(bridge, "acme", member_limit=10)
    api = Api(app.test_client(), make_key(bridge, "acme"))
    helper = app.test_client()
    ids = {"OWNER": join(api, helper, ops.oidc, OWNER, "OWNER"),
           "ADMIN": join(api, helper, ops.oidc, ADMIN, "ADMIN"),
           "MEMBER": join(api, helper, ops.oidc, MEMBER, "MEMBER")}
    return Org("acme", api, ids)


def sign_in(client: FlaskClient, op: FakeOP, claims: dict[str, Any], provider: str = "oidc") -> Any:
    """Sign in to the console as the person `claims` describe; returns the callback's response."""
    resp = client.get(f"/console/login?provider={provider}", base_url=BASE)
    assert resp.status_code == 303, resp.get_data(as_text=True)
    cb = op.authorize(str(resp.headers["Location"]), claims)
    return client.get(f"/auth/callback/{provider}", query_string=cb, base_url=BASE)


@pytest.fixture
def owner(ops: OPs, client: FlaskClient, acme: Org) -> FlaskClient:
    """A browser signed in to the console as the OWNER."""
    assert sign_in(client, ops.oidc, OWNER).status_code == 303
    return client


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    at = html.index(marker) + len(marker)
    return html[at:html.index('"', at)]


def get(client: FlaskClient, path: str, **kw: Any) -> Any:
    return client.get(path, base_url=BASE, **kw)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True) -> Any:
    """Post a console form, with the CSRF token of the page the form came from unless told not to."""
    form = dict(data or {})
    if csrf:
        form["csrf_token"] = csrf_of(get(client, "/console/acme/members").get_data(as_text=True))
    return client.post(path, data=form, base_url=BASE)


def member_row(bridge: Bridge, member_id: str) -> Member:
    with transaction(bridge.sessions) as session:
        member = session.get(Member, member_id)
        assert member is not None
        session.expunge(member)
        return member


def audit_actions(bridge: Bridge) -> list[AuditEvent]:
    with transaction(bridge.sessions) as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.at)))
        session.expunge_all()
        return rows


def location(resp: Any) -> str:
    return urlsplit(str(resp.headers["Location"])).path


def table(html: str) -> str:
    """The rows of the page's table (the header names the signed-in account too)."""
    return html[html.index("<tbody>"):html.index("</tbody>")]
