"""Rule 7: concurrent redemptions of one invite on parallel database connections; exactly one wins."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.inputs import InviteInput
from idp_bridge.models import Event, Identity, Invite, LoginState, Member
from idp_bridge.security import token_hash
from idp_bridge.services import callback, invites, orgs, redeem
from idp_bridge.store.db import transaction
from tests.fakes.claims import ClaimsProvider
from tests.helpers import make_org
from tests.pages.conftest import PROVIDERS

ATTEMPTS = 50
# Through the callback's own transaction (SQLite serializes the writers, PostgreSQL locks the invite row).
CALLBACKS = 12


@pytest.fixture
def oidc_bridge(settings_overrides: dict[str, Any], request: pytest.FixtureRequest) -> Bridge:
    settings_overrides["providers"] = {"oidc": PROVIDERS["oidc"]}
    bridge: Bridge = request.getfixturevalue("bridge")
    return bridge


@pytest.mark.postgres
def test_fifty_concurrent_redemptions_of_one_invite_make_exactly_one_membership(oidc_bridge: Bridge) -> None:
    bridge = oidc_bridge
    invite_id, token = _open_invite(bridge, "race")
    # Fifty invitees' browsers, each with its own login in flight, finish at once through the real callback.
    claims = {f"code-{n}": {"iss": "https://idp.test", "sub": f"sub-{n}", "email": "alice@example.com",
                            "email_verified": True} for n in range(ATTEMPTS)}
    bridge.providers["oidc"] = ClaimsProvider(bridge.providers["oidc"], claims)  # type: ignore[assignment]
    browsers = [f"browser-{n:02d}".ljust(32, "b") for n in range(ATTEMPTS)]
    states = [_start(bridge, invite_id, token, browser) for browser in browsers]
    barrier = threading.Barrier(ATTEMPTS, timeout=30)

    def attempt(n: int) -> str:
        barrier.wait()
        return callback.finish(bridge, Actor("invitee"), "oidc", state=states[n], browser_secrets=[browsers[n]],
                               code=f"code-{n}", error=None, iss="https://idp.test").kind

    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        kinds = list(pool.map(attempt, range(ATTEMPTS), timeout=120))

    assert kinds.count(redeem.ACCEPTED) == 1
    assert kinds.count(redeem.USED) == ATTEMPTS - 1
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(func.count(Identity.id))) == 1
        assert session.scalar(select(func.count(Member.id)).where(Member.status == "ACTIVE")) == 1
        assert session.scalar(select(func.count(Event.id)).where(Event.type == "member.activated")) == 1
        assert session.scalar(select(func.count(LoginState.state_hash)).where(LoginState.used_at.is_(None))) == 0


def _start(bridge: Bridge, invite_id: str, token: str, browser_secret: str) -> str:
    """Start a login for the invite in one browser; returns the state its callback carries."""
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        state, _nonce, _verifier = redeem.start_login(session, bridge.settings, invite, link_token=token,
                                                      provider="oidc", browser_secret=browser_secret)
    return state


def _open_invite(bridge: Bridge, slug: str) -> tuple[str, str]:
    make_org(bridge, slug, match="link", member_limit=100)
    with transaction(bridge.sessions) as session:
        org = orgs.get(session, slug)
        issued = invites.create(session, bridge, Actor("test"), org,
                                InviteInput(identifier="alice@example.com", provider="oidc", send_email=False))
        return issued.invite.id, issued.link.rsplit("/", 1)[1]


def _pending(bridge: Bridge, invite_id: str, token: str) -> redeem.PendingLogin:
    """A login in flight for the invite, as the callback finds it."""
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        state, nonce, verifier = redeem.start_login(session, bridge.settings, invite, link_token=token, provider="oidc",
                                                    browser_secret="b" * 32)
    return redeem.PendingLogin(state_hash=token_hash(state), invite_id=invite_id, link_token=token,
                               provider="oidc", nonce=nonce, code_verifier=verifier)


def _complete(bridge: Bridge, pending: redeem.PendingLogin, subject: str,
              barrier: threading.Barrier) -> str | None:
    claims = {"iss": "https://idp.test", "sub": subject, "email": "alice@example.com", "email_verified": True}
    barrier.wait()
    with bridge.engine.begin() as connection:
        outcome = redeem.complete_login(connection, bridge, Actor("invitee"), pending,
                                        bridge.providers["oidc"], claims)
    return outcome.kind if outcome is not None else None


def test_concurrent_callbacks_from_several_browsers_redeem_one_invite_once(oidc_bridge: Bridge) -> None:
    bridge = oidc_bridge
    invite_id, token = _open_invite(bridge, "race-callbacks")
    logins = [_pending(bridge, invite_id, token) for _ in range(CALLBACKS)]
    barrier = threading.Barrier(CALLBACKS, timeout=30)

    with ThreadPoolExecutor(max_workers=CALLBACKS) as pool:
        kinds = list(pool.map(lambda n: _complete(bridge, logins[n], f"sub-{n}", barrier), range(CALLBACKS),
                              timeout=120))

    assert kinds.count(redeem.ACCEPTED) == 1
    assert kinds.count(redeem.USED) == CALLBACKS - 1
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(func.count(Identity.id))) == 1
        assert session.scalar(select(func.count(Member.id)).where(Member.status == "ACTIVE")) == 1
        assert session.scalar(select(func.count(Event.id)).where(Event.type == "member.activated")) == 1


def test_concurrent_callbacks_with_one_login_state_use_it_once(oidc_bridge: Bridge) -> None:
    bridge = oidc_bridge
    invite_id, token = _open_invite(bridge, "race-state")
    pending = _pending(bridge, invite_id, token)
    barrier = threading.Barrier(CALLBACKS, timeout=30)

    with ThreadPoolExecutor(max_workers=CALLBACKS) as pool:
        kinds = list(pool.map(lambda _n: _complete(bridge, pending, "alice-sub", barrier), range(CALLBACKS),
                              timeout=120))

    assert kinds.count(redeem.ACCEPTED) == 1
    assert kinds.count(None) == CALLBACKS - 1
    with transaction(bridge.sessions) as session:
        assert session.scalar(select(func.count(Identity.id))) == 1
        assert session.scalar(select(func.count(Event.id)).where(Event.type == "invite.accepted")) == 1
