"""Join by domain: the join page's login, who qualifies (SPEC §10), auto-join, and join requests admins decide."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp_bridge import audit, events
from idp_bridge.audit import Actor
from idp_bridge.domain import joining
from idp_bridge.domain.joining import JoinFacts, JoinRequestStatus, JoinVerdict
from idp_bridge.domain.providers import IdentityCheck, InviteTarget, LoginFailed, LoginIdentity, Provider
from idp_bridge.domain.redemption import Binding, provider_allowed
from idp_bridge.domain.states import ANY_PROVIDER
from idp_bridge.errors import AlreadyExists, InvalidState, NotFound, SeatLimitReached, ValidationFailed, lazy_gettext
from idp_bridge.identifiers import InvalidDomain, canonical_email
from idp_bridge.models import (
    Identity,
    Job,
    JoinLogin,
    JoinRequest,
    MatchPolicy,
    Member,
    MemberStatus,
    Organization,
    utcnow,
)
from idp_bridge.pagination import Page, Sort, paginate
from idp_bridge.security import same, token_hash
from idp_bridge.services import domains, invites, members, orgs, redeem
from idp_bridge.services.invitee import PROVIDER_DOWN, REDIRECT, Start, choose_provider
from idp_bridge.services.ports import WithProviders
from idp_bridge.settings import Settings

log = logging.getLogger(__name__)

JOINED = JoinVerdict.JOIN.value
REQUESTED = JoinVerdict.REQUEST.value
CONTINUE = JoinVerdict.CONTINUE.value
REJECTED = JoinVerdict.REJECT.value
NEWEST_FIRST = Sort("created_at", JoinRequest.created_at, descending=True)


@dataclass(frozen=True)
class PendingJoin:
    """A login from a join page, found at its callback."""

    state_hash: str
    org_id: str
    org_slug: str
    provider: str
    nonce: str
    code_verifier: str


@dataclass
class JoinOutcome:
    """What a login from a join page came to, and what the page shows."""

    kind: str
    org: Organization
    reason: str | None = None
    identity: LoginIdentity | None = None
    redirect_url: str | None = None


def accepting(org: Organization) -> bool:
    """Whether the org takes people by domain at all."""
    return org.domain_join in (joining.JoinPolicy.AUTO, joining.JoinPolicy.REQUEST)


def login_providers(deps: WithProviders, org: Organization) -> list[str]:
    """The providers a person may join through: every configured one the org allows, in configuration order."""
    return [name for name in deps.providers
            if provider_allowed(name, ANY_PROVIDER, deps.providers, org.allowed_providers)]


def _target(org: Organization, email: str) -> InviteTarget:
    """What the provider's rules check a join login against: the person's own address, no tenant or domain."""
    return InviteTarget(invite_id="", org_slug=org.slug, identifier=email, email=email or None, name="")


def start(session: Session, deps: WithProviders, org: Organization, *, provider_name: str | None,
          browser_secret: str, select_account: bool) -> Start:
    """Record a join login in flight for this browser and say where it goes (or why it cannot start)."""
    choices = login_providers(deps, org)
    picked = choose_provider(choices, provider_name)
    if isinstance(picked, Start):
        return picked
    provider = deps.providers[picked]
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(24), secrets.token_urlsafe(64)
    session.add(JoinLogin(state_hash=token_hash(state), browser_hash=token_hash(browser_secret), org_id=org.id,
                          provider=picked, nonce=nonce, code_verifier=verifier, created_at=utcnow()))
    try:
        url = provider.authorization_url(_target(org, ""), state=state, nonce=nonce, code_verifier=verifier,
                                         select_account=select_account)
    except LoginFailed as exc:
        log.warning("join login at %s cannot start: %s", picked, exc)
        return Start(PROVIDER_DOWN, label=provider.label)
    return Start(REDIRECT, url=url)


def find_login(session: Session, *, state: str, browser_secrets: Sequence[str], provider: str) -> PendingJoin | None:
    """The join login a callback finishes: unused, fresh, of this browser and this provider."""
    if not state or len(state) > 200 or not browser_secrets:
        return None
    row = session.get(JoinLogin, token_hash(state))
    if row is None or row.used_at is not None or row.provider != provider:
        return None
    if not any(same(row.browser_hash, token_hash(secret)) for secret in browser_secrets):
        return None
    if row.created_at + redeem.LOGIN_STATE_TTL < utcnow():
        return None
    org = session.get(Organization, row.org_id)
    if org is None:
        return None
    return PendingJoin(row.state_hash, row.org_id, org.slug, row.provider, row.nonce, row.code_verifier)


def claim_login(session: Session, pending: PendingJoin) -> bool:
    """Use the join login up; False when another callback already did."""
    result = session.execute(update(JoinLogin).where(JoinLogin.state_hash == pending.state_hash,
                                                     JoinLogin.used_at.is_(None)).values(used_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0) == 1


def record_login_failure(session: Session, actor: Actor, pending: PendingJoin, reason: str, detail: str = "") -> None:
    """A join login whose tokens did not validate: audited against the org, nothing else."""
    audit.record(session, actor, "join.rejected", org_id=pending.org_id, target_type="org",
                 target_id=pending.org_slug, details={"reason": reason, "provider": pending.provider,
                                                      "detail": detail[:500]})


def purge_logins(session: Session, *, older_than: timedelta = timedelta(days=1)) -> int:
    result = session.execute(delete(JoinLogin).where(JoinLogin.created_at < utcnow() - older_than))
    return int(getattr(result, "rowcount", 0) or 0)


def check_identity(provider: Provider, org: Organization,
                   claims: Mapping[str, Any]) -> tuple[IdentityCheck, str | None]:
    """The provider's own §3 rule 5 (verified email; Entra's nOAuth rules with no invite tenant) applied to the
    login's own address; with the address in canonical form when it has one."""
    probe = provider.check_identity(claims, _target(org, ""), match=MatchPolicy.EMAIL.value)
    email = probe.identity.email
    if not email:
        return IdentityCheck(probe.identity, "no_email"), None
    try:
        key = canonical_email(email)
    except InvalidDomain:
        return IdentityCheck(probe.identity, "no_email"), None
    return provider.check_identity(claims, _target(org, email), match=MatchPolicy.EMAIL.value), key


def complete(session: Session, deps: WithProviders, actor: Actor, pending: PendingJoin, provider: Provider,
             claims: Mapping[str, Any]) -> JoinOutcome | None:
    """Use the join login up, then join, ask to join, carry on, or refuse (audited, nothing else stored)."""
    if not claim_login(session, pending):
        return None
    org = session.get(Organization, pending.org_id)
    if org is None:
        return None
    orgs.lock(session, org)
    check, key = check_identity(provider, org, claims)
    identity = check.identity
    bound = redeem.bound_identity(session, org, identity)
    bound_member = session.get(Member, bound.member_id) if bound is not None else None
    live_bound = bound_member is not None and bound_member.status != MemberStatus.DELETED
    holder = invites.existing_for(session, org, key) if key else None
    facts = JoinFacts(policy=org.domain_join, provider=pending.provider, configured=deps.providers,
                      org_providers=org.allowed_providers, identity_problem=check.problem,
                      email_domain=joining.email_domain(key) if key else None,
                      verified_domains=domains.verified_domains(session, org),
                      binding=(Binding.OTHER_MEMBER if live_bound else Binding.GONE_MEMBER if bound else Binding.NONE),
                      bound_member_status=bound_member.status if live_bound and bound_member else None,
                      member_with_address=holder.status if holder is not None else None)
    decision = joining.decide_join(facts)
    if decision.verdict == JoinVerdict.CONTINUE:
        assert bound is not None
        bound.last_login_at = utcnow()
        return JoinOutcome(CONTINUE, org, identity=identity, redirect_url=redeem.redirect_for(deps.settings, org))
    if decision.verdict == JoinVerdict.REJECT:
        return _refuse(session, actor, org, identity, str(decision.reason), pending.provider)
    assert key is not None and identity.email is not None
    name = _name(claims)
    if decision.verdict == JoinVerdict.REQUEST:
        return _request(session, actor, org, identity, identity.email, key, name)
    try:
        admit(session, deps.settings, actor, org, identity, email=identity.email, key=key, name=name,
              via="domain")
    except SeatLimitReached:
        return _refuse(session, actor, org, identity, joining.SEAT_LIMIT, pending.provider)
    except AlreadyExists:
        return _refuse(session, actor, org, identity, joining.ALREADY_MEMBER, pending.provider)
    return JoinOutcome(JOINED, org, identity=identity, redirect_url=redeem.redirect_for(deps.settings, org))


def _name(claims: Mapping[str, Any]) -> str:
    name = claims.get("name")
    return name.strip()[:200] if isinstance(name, str) else ""


def _refuse(session: Session, actor: Actor, org: Organization, identity: LoginIdentity, reason: str,
            provider: str) -> JoinOutcome:
    """Nothing is stored but the audit event saying who tried and why they do not qualify."""
    audit.record(session, actor, "join.rejected", org_id=org.id, target_type="org", target_id=org.slug,
                 details={"reason": reason, "provider": provider, "account": identity.account,
                          "subject": identity.subject, "issuer": identity.issuer, "tenant_id": identity.tenant_id})
    return JoinOutcome(REJECTED, org, reason=reason, identity=identity)


def _request(session: Session, actor: Actor, org: Organization, identity: LoginIdentity, email: str, key: str,
             name: str) -> JoinOutcome:
    """Record a join request (once per account while it is pending) and tell the host."""
    existing = session.scalar(select(JoinRequest).where(
        JoinRequest.org_id == org.id, JoinRequest.status == JoinRequestStatus.PENDING,
        JoinRequest.provider == identity.provider, JoinRequest.issuer == identity.issuer,
        JoinRequest.subject == identity.subject))
    if existing is not None:
        return JoinOutcome(REQUESTED, org, identity=identity)
    row = JoinRequest(org_id=org.id, status=JoinRequestStatus.PENDING.value, email=email, email_key=key, name=name,
                      provider=identity.provider, issuer=identity.issuer, subject=identity.subject,
                      tenant_id=identity.tenant_id)
    session.add(row)
    session.flush()
    audit.record(session, actor, "join_request.created", org_id=org.id, target_type="join_request",
                 target_id=row.id, details={"email": email, "provider": identity.provider})
    events.emit(session, org, "join_request.created", join_request_id=row.id, email=email,
                provider=identity.provider)
    return JoinOutcome(REQUESTED, org, identity=identity)


def admit(session: Session, settings: Settings, actor: Actor, org: Organization, identity: LoginIdentity, *,
          email: str, key: str, name: str, via: str) -> Member:
    """A new ACTIVE member with the default role and the identity bound, within the seat limit (org locked)."""
    if invites.existing_for(session, org, key) is not None:
        raise AlreadyExists(lazy_gettext("%(email)s is already a member or invited", email=email))
    invites.require_seats(session, org)
    member = Member(org_id=org.id, identifier=email, identifier_key=key, email=email, name=name,
                    role=settings.default_role(), provider=identity.provider, attributes={})
    member.assign(joining.joined_member(now=utcnow()))
    bound = redeem.bound_identity(session, org, identity)
    try:
        with session.begin_nested():
            session.add(member)
            session.flush()
            if bound is None:
                session.add(Identity(org_id=org.id, member_id=member.id, provider=identity.provider,
                                     issuer=identity.issuer, subject=identity.subject, tenant_id=identity.tenant_id,
                                     email=identity.email, email_verified=identity.email_verified,
                                     last_login_at=utcnow()))
            else:
                # Bound to a removed member before: the account moves to the new membership.
                bound.member_id = member.id
                bound.last_login_at = utcnow()
            session.flush()
    except IntegrityError:
        raise AlreadyExists(lazy_gettext("%(email)s is already a member or invited", email=email)) from None
    audit.record(session, actor, "member.joined", org_id=org.id, target_type="member", target_id=member.id,
                 details={"via": via, "email": email, "provider": identity.provider, "subject": identity.subject,
                          "tenant_id": identity.tenant_id})
    if (job := members.organization_job(org, member.id)) is not None:
        session.add(Job(**job))
    events.emit(session, org, "member.joined", member=member, via=via,
                identity={"provider": identity.provider, "issuer": identity.issuer, "subject": identity.subject,
                          "tenant_id": identity.tenant_id, "email": identity.email})
    return member


def search_requests(session: Session, org: Organization, *, status: str | None, limit: int,
                    cursor: str | None) -> Page[JoinRequest]:
    """One page of the org's join requests, newest first."""
    stmt = select(JoinRequest).where(JoinRequest.org_id == org.id)
    if status:
        if status not in set(JoinRequestStatus):
            raise ValidationFailed({"status": [lazy_gettext("must be one of %(choices)s",
                                                            choices=", ".join(JoinRequestStatus))]})
        stmt = stmt.where(JoinRequest.status == status)
    return paginate(session, stmt, sort=NEWEST_FIRST, id_column=JoinRequest.id, limit=limit, cursor=cursor)


def get_request(session: Session, org: Organization, request_id: str) -> JoinRequest:
    """One of the org's join requests."""
    row = session.scalar(select(JoinRequest).where(JoinRequest.org_id == org.id, JoinRequest.id == request_id))
    if row is None:
        raise NotFound(lazy_gettext("%(org)s has no join request %(id)s", org=org.slug, id=request_id))
    return row


def _pending(session: Session, org: Organization, request_id: str) -> JoinRequest:
    row = get_request(session, org, request_id)
    if row.status != JoinRequestStatus.PENDING:
        raise InvalidState(lazy_gettext("join request %(id)s is %(status)s; only a pending one can be decided",
                                        id=request_id, status=row.status),
                           status=row.status)
    return row


def approve(session: Session, settings: Settings, actor: Actor, org: Organization, request_id: str) -> JoinRequest:
    """Admit the person who asked: ACTIVE with the default role, their account bound (seat limit holds)."""
    orgs.lock(session, org)
    row = _pending(session, org, request_id)
    identity = LoginIdentity(provider=row.provider, issuer=row.issuer, subject=row.subject, tenant_id=row.tenant_id,
                             email=row.email, email_verified=True, account=row.email)
    bound = redeem.bound_identity(session, org, identity)
    if bound is not None and redeem.is_live(session, bound.member_id):
        raise AlreadyExists(lazy_gettext("the account of %(email)s already belongs to a member", email=row.email),
                            member_id=bound.member_id)
    member = admit(session, settings, actor, org, identity, email=row.email, key=row.email_key, name=row.name,
                   via="join_request")
    _decide(session, actor, org, row, JoinRequestStatus.APPROVED, member_id=member.id)
    return row


def decline(session: Session, actor: Actor, org: Organization, request_id: str) -> JoinRequest:
    """Turn the request down; the person stays out and may ask again."""
    row = _pending(session, org, request_id)
    _decide(session, actor, org, row, JoinRequestStatus.DECLINED)
    return row


def _decide(session: Session, actor: Actor, org: Organization, row: JoinRequest, status: JoinRequestStatus, *,
            member_id: str | None = None) -> None:
    row.status = status.value
    row.decided_at = utcnow()
    row.decided_by = str(actor)
    row.member_id = member_id
    session.flush()
    audit.record(session, actor, f"join_request.{status.lower()}", org_id=org.id, target_type="join_request",
                 target_id=row.id, details={"email": row.email, "member_id": member_id})
