"""The admin console's sign-in and sessions: a validated login of an identity bound to an ACTIVE member opens
the console for that member's org, with that member's role."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from idp_bridge import audit
from idp_bridge.audit import MEMBER, Actor
from idp_bridge.domain.providers import InviteTarget, LoginFailed, LoginProvider
from idp_bridge.models import ConsoleSession, Identity, Member, MemberStatus, Organization, utcnow
from idp_bridge.permissions import ORGS_MANAGE
from idp_bridge.security import new_token, token_hash
from idp_bridge.services import api_keys, redeem
from idp_bridge.services.ports import Redeeming
from idp_bridge.settings import Settings
from idp_bridge.store.db import transaction

log = logging.getLogger(__name__)

# How a console sign-in ended (besides the callback's own kinds: expired, cancelled, failed).
SIGNED_IN = "signed_in"
NOT_A_MEMBER = "not_a_member"
# A session's last-seen time is written at most this often (a write per page view would be a waste).
TOUCH_EVERY = timedelta(minutes=1)
# Nothing identifies the person before they sign in: the authorization request carries no hints.
NO_TARGET = InviteTarget(invite_id="", org_slug="", identifier="", email=None, name="")


@dataclass(frozen=True)
class SignIn:
    """What a console sign-in came to: the new session's cookie value, or why there is none."""

    kind: str
    token: str = ""
    account: str = ""


@dataclass(frozen=True)
class Membership:
    """The signed-in person in one org: the member, and what its role lets them see and do."""

    org: Organization
    member: Member
    permissions: frozenset[str]
    owner: bool

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def grantor(self) -> api_keys.Principal:
        """The member as the API-key service's grantor: it hands out or takes back at most what the role holds."""
        return api_keys.Principal(key_id="", org_id=self.org.id, permissions=self.permissions)

    def actor(self, ip: str | None) -> Actor:
        """The person as the actor of their console actions."""
        return Actor(MEMBER, self.member.id, ip, email=self.member.email or self.member.identifier)


def start(session: Session, settings: Settings, provider: LoginProvider, *, browser_secret: str) -> str | None:
    """Record a console login in flight (no invite) and return the provider's authorization URL (None: the
    provider cannot be reached)."""
    state, nonce, verifier = redeem.start_login(session, settings, None, link_token="", provider=provider.name,
                                                browser_secret=browser_secret)
    try:
        return provider.authorization_url(NO_TARGET, state=state, nonce=nonce, code_verifier=verifier)
    except LoginFailed as exc:
        log.warning("console sign-in at %s cannot start: %s", provider.name, exc)
        return None


def finish(deps: Redeeming, actor: Actor, pending: redeem.PendingLogin, provider: LoginProvider,
           claims: Mapping[str, Any]) -> SignIn | None:
    """Use the login state up and open a session when the identity is bound to an ACTIVE member somewhere.

    None when another callback used the state first. A person with no such membership gets no session; the
    refusal is audited.
    """
    identity = provider.identity_from(claims)
    with transaction(deps.sessions) as session:
        if not redeem.claim_login(session, pending):
            return None
        found = _active_memberships(session, identity.provider, identity.issuer, identity.subject)
        if not found:
            audit.record(session, actor, "console.sign_in_refused", details={
                "provider": identity.provider, "issuer": identity.issuer, "subject": identity.subject,
                "account": identity.account})
            return SignIn(NOT_A_MEMBER, account=identity.account)
        token = new_token()
        now = utcnow()
        session.add(ConsoleSession(token_hash=token_hash(token), provider=identity.provider, issuer=identity.issuer,
                                   subject=identity.subject, account=identity.account[:320], created_at=now,
                                   last_seen_at=now))
        for identity_row, member in found:
            identity_row.last_login_at = now
            member.last_login_at = now
            audit.record(session, Actor(MEMBER, member.id, actor.ip, email=member.email or member.identifier),
                         "console.signed_in", org_id=member.org_id, target_type="member", target_id=member.id,
                         details={"provider": identity.provider})
        return SignIn(SIGNED_IN, token=token, account=identity.account)


def _active_memberships(session: Session, provider: str, issuer: str,
                        subject: str) -> list[tuple[Identity, Member]]:
    stmt = (select(Identity, Member).join(Member, Member.id == Identity.member_id)
            .where(Identity.provider == provider, Identity.issuer == issuer, Identity.subject == subject,
                   Member.status == MemberStatus.ACTIVE))
    return [(row[0], row[1]) for row in session.execute(stmt)]


def open_session(session: Session, settings: Settings, token: str) -> ConsoleSession | None:
    """The live session the cookie value opens; one past its idle or absolute timeout is ended."""
    if not token or len(token) > 200:
        return None
    found = session.get(ConsoleSession, token_hash(token))
    if found is None:
        return None
    now = utcnow()
    if (now - found.created_at > timedelta(hours=settings.console_session_max_hours)
            or now - found.last_seen_at > timedelta(minutes=settings.console_session_idle_minutes)):
        session.delete(found)
        return None
    if now - found.last_seen_at >= TOUCH_EVERY:
        found.last_seen_at = now
    return found


def sign_out(session: Session, token: str) -> None:
    """End the session the cookie value opens (nothing when there is none)."""
    if token:
        session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))


def purge_sessions(session: Session, *, older_than: timedelta = timedelta(days=31)) -> int:
    """Forget sessions older than any absolute timeout allows (they can no longer be used anyway)."""
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.created_at < utcnow() - older_than))
    return int(getattr(result, "rowcount", 0) or 0)


def memberships(session: Session, settings: Settings, signed_in: ConsoleSession) -> list[Membership]:
    """Every org the signed-in identity is an ACTIVE member of, by org name."""
    stmt = (select(Organization, Member).join(Member, Member.org_id == Organization.id)
            .join(Identity, Identity.member_id == Member.id)
            .where(Identity.provider == signed_in.provider, Identity.issuer == signed_in.issuer,
                   Identity.subject == signed_in.subject, Member.status == MemberStatus.ACTIVE)
            .order_by(Organization.name, Organization.slug))
    return [_membership(settings, row[0], row[1]) for row in session.execute(stmt)]


def membership(session: Session, settings: Settings, signed_in: ConsoleSession, slug: str) -> Membership | None:
    """The signed-in identity's ACTIVE membership of the org `slug`, if any (checked on every request)."""
    stmt = (select(Organization, Member).join(Member, Member.org_id == Organization.id)
            .join(Identity, Identity.member_id == Member.id)
            .where(Organization.slug == slug, Identity.provider == signed_in.provider,
                   Identity.issuer == signed_in.issuer, Identity.subject == signed_in.subject,
                   Member.status == MemberStatus.ACTIVE))
    row = session.execute(stmt).first()
    return _membership(settings, row[0], row[1]) if row is not None else None


def _membership(settings: Settings, org: Organization, member: Member) -> Membership:
    """The member with its role's permissions; an owner role manages its own org (the console's Settings) even
    without `orgs:manage`, which otherwise is the platform's permission."""
    role = settings.roles.get(member.role)
    permissions = frozenset(role.permissions) if role is not None else frozenset()
    owner = role.owner if role is not None else False
    return Membership(org, member, permissions | {ORGS_MANAGE} if owner else permissions, owner=owner)
