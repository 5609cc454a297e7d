"""Rule 7: concurrent redemptions of one invite on real parallel PostgreSQL connections; exactly one wins."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.db import transaction
from idp_bridge.idp import IdentityCheck, LoginIdentity
from idp_bridge.inputs import InviteInput
from idp_bridge.models import Event, Identity, Member
from idp_bridge.services import invites, orgs, redeem
from tests.helpers import make_org
from tests.pages.conftest import PROVIDERS

ATTEMPTS = 50


@pytest.fixture
def oidc_bridge(settings_overrides: dict[str, Any], request: pytest.FixtureRequest) -> Bridge:
    settings_overrides["providers"] = {"oidc": PROVIDERS["oidc"]}
    bridge: Bridge = request.getfixturevalue("bridge")
    return bridge


@pytest.mark.postgres
def test_fifty_concurrent_redemptions_of_one_invite_make_exactly_one_membership(oidc_bridge: Bridge) -> None:
    bridge = oidc_bridge
    make_org(bridge, "race", match="link", member_limit=100)
    with transaction(bridge.sessions) as session:
        org = orgs.get(session, "race")
        issued = invites.create(session, bridge, Actor("test"), org,
                                InviteInput(identifier="alice@example.com", provider="oidc", send_email=False))
        invite_id, token = issued.invite.id, issued.link.rsplit("/", 1)[1]
    barrier = threading.Barrier(ATTEMPTS, timeout=30)

    def attempt(n: int) -> str:
        identity = LoginIdentity(provider="oidc", issuer="https://idp.test", subject=f"sub-{n}",
                                 email="alice@example.com", email_verified=True, account="alice@example.com")
        barrier.wait()
        with transaction(bridge.sessions) as session:
            return redeem.redeem(session, bridge, Actor("invitee"), invite_id=invite_id, link_token=token,
                                 provider="oidc", check=IdentityCheck(identity)).kind

    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        kinds = list(pool.map(attempt, range(ATTEMPTS), timeout=120))

    assert kinds.count(redeem.ACCEPTED) == 1
    assert kinds.count(redeem.USED) == ATTEMPTS - 1
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(func.count(Identity.id))) == 1
        assert session.scalar(select(func.count(Member.id)).where(Member.status == "ACTIVE")) == 1
        assert session.scalar(select(func.count(Event.id)).where(Event.type == "member.activated")) == 1
