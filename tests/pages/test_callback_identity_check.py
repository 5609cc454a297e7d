"""One callback asks the provider's identity rules once, whether the fast path accepts or the general path decides."""

from __future__ import annotations

from typing import Any

import pytest

from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.inputs import InviteInput
from idp_bridge.models import Invite
from idp_bridge.services import callback, invites, orgs, redeem
from idp_bridge.store.db import transaction
from tests.fakes.claims import ClaimsProvider
from tests.helpers import make_org
from tests.pages.conftest import PROVIDERS

ALICE = {"iss": "https://idp.test", "sub": "alice-sub", "email": "alice@example.com", "email_verified": True}
BOB = {"iss": "https://idp.test", "sub": "bob-sub", "email": "bob@example.com", "email_verified": True}


@pytest.fixture
def counted(settings_overrides: dict[str, Any], request: pytest.FixtureRequest) -> tuple[Bridge, ClaimsProvider]:
    settings_overrides["providers"] = {"oidc": PROVIDERS["oidc"]}
    bridge: Bridge = request.getfixturevalue("bridge")
    provider = ClaimsProvider(bridge.providers["oidc"], {"alice": ALICE, "bob": BOB})
    bridge.providers["oidc"] = provider  # type: ignore[assignment]
    return bridge, provider


def _invite(bridge: Bridge) -> tuple[str, str]:
    make_org(bridge, "checks")
    with transaction(bridge.sessions) as session:
        issued = invites.create(session, bridge, Actor("test"), orgs.get(session, "checks"),
                                InviteInput(identifier="alice@example.com", provider="oidc", send_email=False))
        return issued.invite.id, issued.link.rsplit("/", 1)[1]


def _callback(bridge: Bridge, invite_id: str, token: str, code: str) -> callback.Callback:
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        state, _nonce, _verifier = redeem.start_login(session, bridge.settings, invite, link_token=token,
                                                      provider="oidc", browser_secret="b" * 32)
    return callback.finish(bridge, Actor("invitee"), "oidc", state=state, browser_secrets=["b" * 32], code=code,
                           error=None, iss="https://idp.test")


def test_a_callback_the_fast_path_accepts_checks_the_identity_once(
        counted: tuple[Bridge, ClaimsProvider]) -> None:
    bridge, provider = counted
    invite_id, token = _invite(bridge)
    assert _callback(bridge, invite_id, token, "alice").kind == redeem.ACCEPTED
    assert provider.checks == 1


def test_a_callback_the_general_path_rejects_checks_the_identity_once(
        counted: tuple[Bridge, ClaimsProvider]) -> None:
    bridge, provider = counted
    invite_id, token = _invite(bridge)
    result = _callback(bridge, invite_id, token, "bob")
    assert (result.kind, result.reason) == (redeem.REJECTED, "different_account")
    assert provider.checks == 1


def test_a_returning_invitee_and_a_late_stranger_each_cost_one_identity_check(
        counted: tuple[Bridge, ClaimsProvider]) -> None:
    bridge, provider = counted
    invite_id, token = _invite(bridge)
    assert _callback(bridge, invite_id, token, "alice").kind == redeem.ACCEPTED
    assert _callback(bridge, invite_id, token, "alice").kind == redeem.CONTINUE
    assert _callback(bridge, invite_id, token, "bob").kind == redeem.USED
    assert provider.checks == 3
