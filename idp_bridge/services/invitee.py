"""The invitee's way in, up to the IdP: open a link, pass the invite code, pick a provider, start the login."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from idp_bridge.audit import Actor
from idp_bridge.domain.providers import LoginFailed
from idp_bridge.models import Invite, Organization
from idp_bridge.services import invites, redeem
from idp_bridge.services.ports import Opening, WithProviders

log = logging.getLogger(__name__)

# How starting a login ended: the browser goes to the IdP; the person picks a provider (again, when the one
# named is not allowed); no provider can take the invite; the IdP cannot be reached; the code was wrong or
# is locked (the landing page comes back).
REDIRECT = "redirect"
CHOOSE = "choose"
NOT_ALLOWED = "not_allowed"
NO_PROVIDER = "no_provider"
PROVIDER_DOWN = "provider_down"
WRONG_CODE = "wrong_code"
CODE_LOCKED = "code_locked"


class DeadLink(Exception):
    """The link cannot be used now: used, replaced by a newer one, or not a live invite at all."""

    def __init__(self, found: invites.LinkLookup) -> None:
        super().__init__("dead link")
        self.found = found


@dataclass(frozen=True)
class Start:
    """What starting a login came to, and what the page for it needs."""

    kind: str
    choices: list[str] = field(default_factory=list)
    url: str = ""
    label: str = ""
    tries_left: int = 0


def choose_provider(choices: list[str], asked: str | None) -> str | Start:
    """The provider a login goes to: the one asked for if it is a choice, else the only choice; or the Start that
    says why there is none yet (not allowed, none at all, or a choice for the person to make)."""
    if asked:
        return asked if asked in choices else Start(NOT_ALLOWED, choices)
    if len(choices) == 1:
        return choices[0]
    return Start(CHOOSE, choices) if choices else Start(NO_PROVIDER)


def open_invite(session: Session, token: str, *, lock: bool = False) -> tuple[Invite, Organization]:
    """The invite and org behind an open link (its row locked when `lock`); raises DeadLink otherwise."""
    found = invites.by_token(session, token)
    if not found.open:
        raise DeadLink(found)
    assert found.invite_id is not None
    invite = redeem.lock_invite(session, found.invite_id) if lock else session.get(Invite, found.invite_id)
    assert invite is not None
    org = session.get(Organization, invite.org_id)
    assert org is not None
    return invite, org


def needs_code(invite: Invite, org: Organization) -> bool:
    """Whether this invite is opened with its code as well as its link."""
    return bool(org.require_invite_code and invite.code_hash)


def start(session: Session, deps: WithProviders, invite: Invite, org: Organization, *, token: str,
          provider_name: str | None, browser_secret: str, select_account: bool) -> Start:
    """Record a login in flight for this browser and say where it goes (or why it cannot start)."""
    choices = redeem.login_providers(deps, invite, org)
    picked = choose_provider(choices, provider_name)
    if isinstance(picked, Start):
        return picked
    provider = deps.providers[picked]
    state, nonce, verifier = redeem.start_login(session, deps.settings, invite, link_token=token,
                                                provider=picked, browser_secret=browser_secret)
    try:
        url = provider.authorization_url(invites.target_of(invite, org), state=state, nonce=nonce,
                                         code_verifier=verifier, select_account=select_account)
    except LoginFailed as exc:
        log.warning("login at %s cannot start: %s", picked, exc)
        return Start(PROVIDER_DOWN, label=provider.label)
    return Start(REDIRECT, url=url)


def start_with_code(session: Session, deps: Opening, actor: Actor, invite: Invite, org: Organization, *,
                    code: str, token: str, provider_name: str | None, browser_secret: str,
                    select_account: bool) -> Start:
    """Check the invite code (when the invite has one; caller holds the invite's lock), then start the login."""
    if needs_code(invite, org):
        if redeem.code_locked(invite):
            return Start(CODE_LOCKED)
        if not redeem.try_code(session, deps.secret_keys, actor, invite, code):
            return Start(WRONG_CODE, tries_left=redeem.MAX_CODE_FAILURES - invite.code_failures)
    return start(session, deps, invite, org, token=token, provider_name=provider_name,
                 browser_secret=browser_secret, select_account=select_account)
