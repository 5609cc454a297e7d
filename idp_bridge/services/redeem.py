"""Invite redemption after OIDC login: login states, the identity rules, and the one winning transaction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp_bridge import audit, events
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.idp import ANY, IdentityCheck, LoginIdentity
from idp_bridge.models import (
    Identity,
    Invite,
    InviteLink,
    InviteStatus,
    LoginState,
    Member,
    MemberStatus,
    Organization,
    utcnow,
)
from idp_bridge.security import same, seal, token_hash, unseal
from idp_bridge.services import invites, orgs

LOGIN_STATE_TTL = timedelta(minutes=15)
MAX_CODE_FAILURES = 5

ACCEPTED = "accepted"
CONTINUE = "continue"
REJECTED = "rejected"
USED = "used"
INVALID = "invalid"


@dataclass
class Outcome:
    """What a redemption attempt came to, and what the invitee's page needs to show."""

    kind: str
    org: Organization | None = None
    invite: Invite | None = None
    reason: str | None = None
    identity: LoginIdentity | None = None
    redirect_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PendingLogin:
    """A consumed login state: everything the callback needs to finish the login."""

    invite_id: str
    link_token: str
    provider: str
    nonce: str
    code_verifier: str


def provider_allowed(bridge: Bridge, invite: Invite, org: Organization, provider: str) -> bool:
    """Rule 2: the invite's provider, or for `any` a configured provider the org allows."""
    if provider not in bridge.providers:
        return False
    if invite.provider != ANY:
        return provider == invite.provider
    return org.allowed_providers is None or provider in org.allowed_providers


def login_providers(bridge: Bridge, invite: Invite, org: Organization) -> list[str]:
    """The providers the invitee may sign in with, in configuration order."""
    return [name for name in bridge.providers if provider_allowed(bridge, invite, org, name)]


def start_login(session: Session, bridge: Bridge, invite: Invite, *, link_token: str, provider: str,
                browser_secret: str) -> tuple[str, str, str]:
    """Record a login in flight; returns (state, nonce, code_verifier) for the authorization URL."""
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(24), secrets.token_urlsafe(64)
    session.add(LoginState(state_hash=token_hash(state), browser_hash=token_hash(browser_secret),
                           invite_id=invite.id, link_sealed=seal(bridge.settings.secret_key, link_token),
                           provider=provider,
                           nonce=nonce, code_verifier=verifier, created_at=utcnow()))
    return state, nonce, verifier


def consume_login(session: Session, bridge: Bridge, *, state: str, browser_secret: str | None,
                  provider: str) -> PendingLogin | None:
    """Use a login state once: it must exist, be fresh, belong to this browser and this provider."""
    if not state or len(state) > 200 or not browser_secret:
        return None
    row = session.get(LoginState, token_hash(state))
    if row is None or row.used_at is not None or row.provider != provider:
        return None
    if not same(row.browser_hash, token_hash(browser_secret)):
        return None
    now = utcnow()
    if row.created_at + LOGIN_STATE_TTL < now:
        return None
    # The conditional update is what makes the state single-use when two callbacks race.
    claimed = session.execute(update(LoginState).where(LoginState.state_hash == row.state_hash,
                                                       LoginState.used_at.is_(None)).values(used_at=now))
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    return PendingLogin(invite_id=row.invite_id, link_token=unseal(bridge.settings.secret_key, row.link_sealed),
                        provider=row.provider,
                        nonce=row.nonce, code_verifier=row.code_verifier)


def purge_login_states(session: Session, *, older_than: timedelta = timedelta(days=1)) -> int:
    """Forget login states well past their life."""
    result = session.execute(delete(LoginState).where(LoginState.created_at < utcnow() - older_than))
    return int(getattr(result, "rowcount", 0) or 0)


def redirect_for(bridge: Bridge, org: Organization) -> str | None:
    """The org's redirect, only if it is on the allowlist (re-checked: the allowlist may have shrunk)."""
    if org.redirect_url and orgs.redirect_allowed(bridge, org.redirect_url):
        return org.redirect_url
    return None


def _lock_invite(session: Session, invite_id: str) -> Invite | None:
    stmt = select(Invite).where(Invite.id == invite_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Invite)
    return session.scalars(stmt.execution_options(populate_existing=True)).unique().one_or_none()


def _bound_identity(session: Session, org: Organization, identity: LoginIdentity) -> Identity | None:
    return session.scalar(select(Identity).where(Identity.org_id == org.id, Identity.provider == identity.provider,
                                                 Identity.issuer == identity.issuer,
                                                 Identity.subject == identity.subject))


def reject(session: Session, actor: Actor, org: Organization, invite: Invite, reason: str, *,
           provider: str, identity: LoginIdentity | None = None, detail: str = "") -> Outcome:
    """Leave the invite as it is, audit why, and tell the host."""
    details: dict[str, Any] = {"reason": reason, "provider": provider}
    if identity is not None:
        details.update(account=identity.account, subject=identity.subject, issuer=identity.issuer,
                       tenant_id=identity.tenant_id)
    if detail:
        details["detail"] = detail[:500]
    audit.record(session, actor, "invite.redeem_rejected", org_id=org.id, target_type="invite",
                 target_id=invite.id, details=details)
    events.emit(session, org, "invite.redeem_rejected", member=None, invite=invite, reason=reason,
                provider=provider, member_id=invite.member_id)
    return Outcome(REJECTED, org=org, invite=invite, reason=reason, identity=identity)


def redeem(session: Session, bridge: Bridge, actor: Actor, *, invite_id: str, link_token: str, provider: str,
           check: IdentityCheck) -> Outcome:
    """Apply rules 2, 5, 6 and 7 under the invite's lock and, when all hold, make the member ACTIVE."""
    invite = _lock_invite(session, invite_id)
    if invite is None:
        return Outcome(INVALID)
    org = session.get(Organization, invite.org_id)
    assert org is not None
    identity = check.identity
    status = invites.effective_status(invite)
    if status == InviteStatus.ACCEPTED:
        bound = _bound_identity(session, org, identity)
        if bound is not None and bound.member_id == invite.member_id:
            # The same person coming back after success just continues (rule 7).
            bound.last_login_at = utcnow()
            return Outcome(CONTINUE, org=org, invite=invite, identity=identity,
                           redirect_url=redirect_for(bridge, org))
        return Outcome(USED, org=org, invite=invite, identity=identity)
    link = session.get(InviteLink, token_hash(link_token))
    if status != InviteStatus.PENDING or link is None or link.invite_id != invite.id:
        return Outcome(INVALID, org=org, invite=invite)
    if link.superseded_at is not None:
        return Outcome(INVALID, org=org, invite=invite, reason="superseded")
    if not provider_allowed(bridge, invite, org, provider):
        return reject(session, actor, org, invite, "wrong_provider", provider=provider, identity=identity)
    if not check.ok:
        return reject(session, actor, org, invite, str(check.problem), provider=provider, identity=identity)
    bound = _bound_identity(session, org, identity)
    if bound is not None and bound.member_id != invite.member_id:
        other = session.get(Member, bound.member_id)
        if other is not None and other.status != MemberStatus.DELETED:
            return reject(session, actor, org, invite, "identity_bound_to_other_member", provider=provider,
                          identity=identity)
    return _accept(session, bridge, actor, org, invite, identity, bound)


def _accept(session: Session, bridge: Bridge, actor: Actor, org: Organization, invite: Invite,
            identity: LoginIdentity, bound: Identity | None) -> Outcome:
    now = utcnow()
    member = invite.member
    if bound is None:
        bound = Identity(org_id=org.id, member_id=member.id, provider=identity.provider, issuer=identity.issuer,
                         subject=identity.subject, tenant_id=identity.tenant_id, email=identity.email,
                         email_verified=identity.email_verified, created_at=now)
        try:
            with session.begin_nested():
                session.add(bound)
        except IntegrityError:
            # Another redemption bound this identity between our check and insert: rule 6 holds.
            return reject(session, actor, org, invite, "identity_bound_to_other_member",
                          provider=identity.provider, identity=identity)
    else:
        # A DELETED member's old identity moves to the new membership.
        bound.member_id = member.id
    bound.last_login_at = now
    invite.status = InviteStatus.ACCEPTED.value
    invite.accepted_at = now
    member.status = MemberStatus.ACTIVE.value
    member.activated_at = member.activated_at or now
    member.last_login_at = now
    details = {"provider": identity.provider, "account": identity.account, "subject": identity.subject,
               "issuer": identity.issuer, "tenant_id": identity.tenant_id}
    audit.record(session, actor, "invite.accepted", org_id=org.id, target_type="invite", target_id=invite.id,
                 details=details)
    events.emit(session, org, "invite.accepted", member=member, invite=invite, identity_provider=identity.provider)
    events.emit(session, org, "member.activated", member=member, invite=invite, via="invite",
                identity={"provider": identity.provider, "issuer": identity.issuer, "subject": identity.subject,
                          "tenant_id": identity.tenant_id, "email": identity.email})
    session.flush()
    return Outcome(ACCEPTED, org=org, invite=invite, identity=identity, redirect_url=redirect_for(bridge, org))


def record_login_failure(session: Session, actor: Actor, invite_id: str, provider: str, reason: str,
                         detail: str = "") -> Outcome:
    """A login whose tokens did not validate: the invite stays as it is; audit and tell the host."""
    invite = session.get(Invite, invite_id)
    if invite is None:
        return Outcome(INVALID)
    org = session.get(Organization, invite.org_id)
    assert org is not None
    return reject(session, actor, org, invite, reason, provider=provider, detail=detail)


def code_locked(invite: Invite) -> bool:
    return invite.code_failures >= MAX_CODE_FAILURES


def try_code(session: Session, bridge: Bridge, actor: Actor, invite: Invite, presented: str) -> bool:
    """Check an invite code; wrong tries are counted and lock the code after five (caller holds the lock)."""
    if code_locked(invite):
        return False
    if invites.check_code(bridge, invite, presented):
        return True
    invite.code_failures += 1
    audit.record(session, actor, "invite.code_failed", org_id=invite.org_id, target_type="invite",
                 target_id=invite.id, details={"failures": invite.code_failures})
    return False


def lock_invite(session: Session, invite_id: str) -> Invite | None:
    """The invite with its row locked until commit (PostgreSQL; SQLite writes are serialized)."""
    return _lock_invite(session, invite_id)
