"""Invites: create, list, resend, revoke, expire; the seat limit and duplicate rules live here."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, String, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp_bridge import audit, events, jobs
from idp_bridge.audit import Actor
from idp_bridge.domain import transitions
from idp_bridge.domain.invitation import new_invitation, seats_missing
from idp_bridge.domain.providers import ANY, InviteTarget
from idp_bridge.errors import AlreadyExists, InvalidState, NotFound, SeatLimitReached, ValidationFailed, lazy_gettext
from idp_bridge.identifiers import identifier_key
from idp_bridge.inputs import InviteInput, looks_like_email, normalize_email
from idp_bridge.models import (
    SEAT_STATUSES,
    AuditEvent,
    Event,
    Invite,
    InviteLink,
    InviteStatus,
    Job,
    MatchPolicy,
    Member,
    MemberStatus,
    Organization,
    ProvisioningState,
    utcnow,
)
from idp_bridge.pagination import Page, paginate, parse_sort
from idp_bridge.security import (
    keyed_hash,
    keyed_hash_matches,
    new_invite_code,
    new_token,
    normalize_code,
    seal,
    token_hash,
)
from idp_bridge.services import orgs
from idp_bridge.services.ports import Inviting, WithProviders
from idp_bridge.services.textsearch import matches
from idp_bridge.settings import Settings
from idp_bridge.store.ids import new_id
from idp_bridge.store.sql import lock_rows, table_of

SEND_EMAIL_JOB = "send_invite_email"
PROVISION_JOB = "provision_invite"
DEPROVISION_JOB = "deprovision_invite"
log = logging.getLogger(__name__)

INVITE_SORTS = {
    "created_at": Invite.created_at,
    "expires_at": Invite.expires_at,
    "identifier": Invite.identifier_key,
    "status": Invite.status,
    "role": Invite.role,
}


@dataclass
class IssuedInvite:
    """An invite together with the secrets that are shown only now."""

    invite: Invite
    link: str
    code: str | None = None
    warnings: list[str] = field(default_factory=list)


def inviter_text(invite: Invite, org: Organization, fallback: str = "", *, unnamed: str = "") -> str:
    """Who invited, as pages and mail say it: the invite's inviter, else a person named by `fallback` (the
    inviter text of older queued mail), else `unnamed` (the reader's words for "An admin of {org}")."""
    named = invite.inviter or {}
    name, email = str(named.get("name") or ""), str(named.get("email") or "")
    if name and email:
        return f"{name} ({email})"
    if name or email:
        return name or email
    if fallback and not fallback.startswith(("api_key:", "cli", "worker", "member:")):
        return fallback
    return unnamed or f"An admin of {org.name}"


def effective_status(invite: Invite, now: datetime | None = None) -> str:
    """EXPIRED as soon as expires_at passes, whether or not the sweeper has run."""
    return transitions.effective_status(invite.status, invite.expires_at, now or utcnow())


def provider_options(keycloak_idp: str | None) -> dict[str, str]:
    """The invite's provider-specific options, carried opaquely: the provider that takes them validates them."""
    return {"keycloak_idp": keycloak_idp} if keycloak_idp else {}


def target_of(invite: Invite, org: Organization, link: str = "") -> InviteTarget:
    """What a provider needs to know about this invite."""
    remaining = max(0, int((invite.expires_at - utcnow()).total_seconds()))
    email = invite.identifier if looks_like_email(invite.identifier) else invite.notification_email
    return InviteTarget(invite_id=invite.id, org_slug=org.slug, identifier=invite.identifier, email=email,
                        name=invite.name, tenant_id=invite.tenant_id, hosted_domain=invite.hosted_domain,
                        idp_user_id=invite.idp_user_id, link=link, expires_in_seconds=remaining,
                        extra=provider_options(invite.keycloak_idp))


@dataclass(frozen=True)
class Prepared:
    """An invite input checked against the org and the deployment, ready to insert."""

    data: InviteInput
    identifier: str
    key: str
    role: str


def prepare(deps: WithProviders, org: Organization, data: InviteInput) -> Prepared:
    """Check an invite against configuration and org settings; raise ValidationFailed with every error."""
    errors: dict[str, list[str]] = {}
    identifier = data.identifier
    if looks_like_email(identifier) or org.match != MatchPolicy.LINK:
        try:
            identifier = normalize_email(identifier)
        except ValueError as exc:
            problem = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            errors["identifier"] = [problem if looks_like_email(identifier) else lazy_gettext(
                "%(problem)s (org match policy 'link' allows non-email identifiers)", problem=problem)]
    role = data.role or deps.settings.default_role()
    if role not in deps.settings.roles:
        errors["role"] = [lazy_gettext("unknown role %(role)r; one of %(roles)s", role=role,
                                       roles=", ".join(deps.settings.role_names()))]
    allowed = org.allowed_providers if org.allowed_providers is not None else list(deps.providers)
    extra = provider_options(data.keycloak_idp)
    if data.provider != ANY:
        provider = deps.provider(data.provider)
        if provider is None:
            configured = ", ".join(["any", *sorted(deps.providers)])
            errors["provider"] = [lazy_gettext("unknown provider %(provider)r; one of %(providers)s",
                                               provider=data.provider, providers=configured)]
        elif data.provider not in allowed:
            errors["provider"] = [lazy_gettext("provider %(provider)r is not allowed in %(org)s",
                                               provider=data.provider, org=org.slug)]
        else:
            for field, messages in provider.invite_errors(tenant_id=data.tenant_id, hosted_domain=data.hosted_domain,
                                                          extra=extra).items():
                errors.setdefault(field, []).extend(messages)
    else:
        if data.tenant_id:
            errors["tenant_id"] = [lazy_gettext("needs an Entra provider; set provider to one")]
        if data.hosted_domain:
            errors["hosted_domain"] = [lazy_gettext("needs a Google provider; set provider to one")]
        for option in extra:
            errors[option] = [lazy_gettext("needs a provider that takes it; set provider to one")]
    if errors:
        raise ValidationFailed(errors)
    return Prepared(data=data, identifier=identifier, key=identifier_key(identifier), role=role)


def redeem_warnings(deps: WithProviders, org: Organization, providers: Iterable[str]) -> list[str]:
    """Why invites naming these providers cannot be redeemed yet: no provider they could sign in with is configured.

    The invites are still created (a provider may be configured later); the caller passes the warnings on.
    """
    allowed = org.allowed_providers if org.allowed_providers is not None else list(deps.providers)
    usable = [name for name in allowed if name in deps.providers]
    warnings: list[str] = []
    for name in sorted(set(providers)):
        if name == ANY and not usable:
            if not deps.providers:
                warnings.append(lazy_gettext("no identity provider is configured (add one under [providers.NAME]): "
                                             "nobody can sign in to redeem the invite until one is"))
            elif allowed:
                warnings.append(lazy_gettext("none of the providers %(org)s allows (%(allowed)s) is configured: nobody "
                                             "can sign in to redeem the invite until one is", org=org.slug,
                                             allowed=", ".join(allowed)))
            else:
                warnings.append(lazy_gettext("none of the providers %(org)s allows (none) is configured: nobody can "
                                             "sign in to redeem the invite until one is", org=org.slug))
        elif name != ANY and name not in usable:
            warnings.append(lazy_gettext("provider %(provider)r is not configured or not allowed in %(org)s: nobody "
                                         "can sign in to redeem the invite until it is", provider=name, org=org.slug))
    return warnings


def expire_due(session: Session, actor: Actor, *, org_id: str | None = None, limit: int = 500) -> int:
    """Turn PENDING invites past their expiry into EXPIRED and their INVITED members into DELETED."""
    now = utcnow()
    stmt = (select(Invite).where(Invite.status == InviteStatus.PENDING, Invite.expires_at <= now)
            .order_by(Invite.expires_at).limit(limit))
    if org_id is not None:
        stmt = stmt.where(Invite.org_id == org_id)
    # Two sweepers take disjoint invites (PostgreSQL); SQLite's writing transaction excludes the other alone.
    due = list(session.scalars(stmt.with_for_update(skip_locked=True, of=Invite)).unique())
    org_cache: dict[str, Organization] = {}
    for invite in due:
        org = org_cache.get(invite.org_id) or session.get(Organization, invite.org_id)
        assert org is not None
        org_cache[org.id] = org
        _close(session, org, invite, InviteStatus.EXPIRED, actor)
    return len(due)


def _close(session: Session, org: Organization, invite: Invite, status: InviteStatus, actor: Actor) -> None:
    """End a PENDING invite (revoked or expired): its INVITED member goes with it."""
    member = invite.member
    closing = transitions.close(invite_status=invite.status, to=status, member_status=member.status,
                                idp_user_id=invite.idp_user_id, provisioning_state=invite.provisioning_state,
                                now=utcnow())
    invite.assign(closing.invite)
    member.assign(closing.member)
    if closing.deprovision:
        jobs.enqueue(session, DEPROVISION_JOB, {"invite_id": invite.id}, org_id=org.id)
    audit.record(session, actor, closing.event_type, org_id=org.id, target_type="invite", target_id=invite.id,
                 details={"identifier": invite.identifier})
    events.emit(session, org, closing.event_type, member=member, invite=invite)


def seats_used(session: Session, org: Organization) -> int:
    """How many of the org's seats its INVITED, ACTIVE and DEACTIVATED members hold."""
    return int(session.scalar(select(func.count(Member.id)).where(
        Member.org_id == org.id, Member.status.in_([s.value for s in SEAT_STATUSES]))) or 0)


def require_seats(session: Session, org: Organization, needed: int = 1, *, batch: bool = False) -> None:
    """Raise SeatLimitReached unless `needed` more members fit in the org; `batch` words it for a bulk import."""
    used = seats_used(session, org)
    missing = seats_missing(member_limit=org.member_limit, used=used, needed=needed)
    if not missing:
        return
    if not batch:
        raise SeatLimitReached(lazy_gettext("%(org)s has %(used)s of %(limit)s seats in use", org=org.slug, used=used,
                                            limit=org.member_limit),
                               member_limit=org.member_limit, seats_used=used, seats_missing=missing)
    raise SeatLimitReached(lazy_gettext("%(org)s has %(free)s free seats; this batch needs %(needed)s, %(missing)s "
                                        "more than are free; nothing was written", org=org.slug,
                                        free=max(0, org.member_limit - used), needed=needed, missing=missing),
                           member_limit=org.member_limit, seats_used=used, seats_requested=needed,
                           seats_missing=missing)


def supersede_links(session: Session, invite: Invite) -> None:
    """Retire every current link of the invite: a new one replaces them, and old links show as replaced."""
    now = utcnow()
    for link in session.scalars(select(InviteLink).where(InviteLink.invite_id == invite.id,
                                                         InviteLink.superseded_at.is_(None))):
        link.superseded_at = now


def existing_for(session: Session, org: Organization, key: str) -> Member | None:
    """The live member (INVITED, ACTIVE or DEACTIVATED) holding this identifier, if any."""
    return session.scalar(select(Member).where(Member.org_id == org.id, Member.identifier_key == key,
                                               Member.status != MemberStatus.DELETED))


def pending_invite_of(session: Session, member: Member) -> Invite | None:
    return session.scalar(select(Invite).where(Invite.member_id == member.id,
                                               Invite.status == InviteStatus.PENDING))


def duplicate_error(session: Session, org: Organization, member: Member) -> AlreadyExists:
    """A 409 pointing at what already holds the identifier."""
    if member.status == MemberStatus.INVITED:
        invite = pending_invite_of(session, member)
        return AlreadyExists(lazy_gettext("%(identifier)s already has a pending invitation",
                                          identifier=member.identifier),
                             existing_type="invite", existing_id=invite.id if invite else member.id,
                             member_id=member.id)
    return AlreadyExists(lazy_gettext("%(identifier)s is already a member (%(status)s)", identifier=member.identifier,
                                      status=member.status),
                         existing_type="member", existing_id=member.id, member_id=member.id)


def _new_link(session: Session, invite: Invite) -> str:
    token = new_token()
    session.add(InviteLink(token_hash=token_hash(token), invite_id=invite.id))
    return token


def _new_code(settings: Settings, invite: Invite) -> str:
    code = new_invite_code()
    invite.code_hash = keyed_hash(settings.secret_key, code)
    invite.code_failures = 0
    return code


def check_code(secret_keys: Sequence[str], invite: Invite, presented: str) -> bool:
    """Compare an invite code in constant time against the current and older secret keys; the caller counts."""
    if not invite.code_hash:
        return True
    # Codes hashed before a secret-key change still verify through secret_key_fallbacks.
    return keyed_hash_matches(secret_keys, normalize_code(presented), invite.code_hash)


def _dispatch(session: Session, deps: WithProviders, org: Organization, invite: Invite, token: str,
              code: str | None, inviter: str) -> None:
    """Queue what follows an issued link: provisioning at the IdP and/or our email."""
    secret = deps.settings.secret_key
    payload: dict[str, Any] = {"invite_id": invite.id, "link": seal(secret, token), "inviter": inviter}
    if code:
        payload["code"] = seal(secret, code)
    provider = deps.provider(invite.provider)
    if provider is not None and provider.provisioner() is not None:
        # The provisioning job decides about our mail, by the provider's mail plan: e.g. a Keycloak user it
        # creates gets Keycloak's own password-setup mail, and ours only when the org asks for it.
        invite.provisioning_state = ProvisioningState.PENDING.value
        key = f"provision:{invite.id}"
        # A resend while provisioning is still retrying: the live job takes over the new link.
        live = session.scalar(select(Job).where(Job.dedupe_key == key))
        if live is not None:
            live.dedupe_key = None
            session.flush()
        jobs.enqueue(session, PROVISION_JOB, payload, org_id=org.id, dedupe_key=key,
                     max_attempts=deps.settings.job_max_attempts)
        if live is not None and live.status == jobs.QUEUED:
            live.status = jobs.DONE
            live.finished_at = utcnow()
            live.payload = {"invite_id": invite.id, "superseded": True}
    elif invite.send_email:
        jobs.enqueue(session, SEND_EMAIL_JOB, payload, org_id=org.id,
                     max_attempts=deps.settings.job_max_attempts)


def create(session: Session, deps: Inviting, actor: Actor, org: Organization, data: InviteInput,
           *, inviter: str = "") -> IssuedInvite:
    """Invite one person: a PENDING invite, its INVITED member, a link (and code), and the outbox rows."""
    prepared = prepare(deps, org, data)
    orgs.lock(session, org)
    expire_due(session, actor, org_id=org.id)
    existing = existing_for(session, org, prepared.key)
    if existing is not None:
        raise duplicate_error(session, org, existing)
    require_seats(session, org)
    issued = insert(session, deps, actor, org, prepared, inviter=inviter)
    try:
        session.flush()
    except IntegrityError as exc:
        # Another transaction took this identifier between our check and insert.
        raise AlreadyExists(lazy_gettext("%(identifier)s already has a pending invitation or membership",
                                         identifier=prepared.identifier)) from exc
    return _warned(deps, org, issued)


def _warned(deps: WithProviders, org: Organization, issued: IssuedInvite) -> IssuedInvite:
    """The issued invite with the reasons nobody can redeem it yet, each logged."""
    issued.warnings = warn_unredeemable(deps, org, issued.invite.id, issued.invite.provider)
    return issued


def warn_unredeemable(deps: WithProviders, org: Organization, invite_id: str, provider: str) -> list[str]:
    """The reasons nobody can redeem a new invite naming `provider` yet, logged."""
    warnings = redeem_warnings(deps, org, [provider])
    if warnings:
        log.warning("invite %s in %s: %s", invite_id, org.slug, "; ".join(warnings))
    return warnings


def insert(session: Session, deps: Inviting, actor: Actor, org: Organization, prepared: Prepared,
           *, inviter: str = "") -> IssuedInvite:
    """Write one prepared invite and everything that goes with it; the caller has checked seats."""
    data = prepared.data
    now = utcnow()
    ttl = data.ttl_hours or org.invite_ttl_hours
    code = new_invite_code() if org.require_invite_code else None
    provider = deps.provider(data.provider)
    provisions = provider is not None and provider.provisioner() is not None
    member_row, invite_row = new_invitation(
        member_id=new_id(), invite_id=new_id(), org_id=org.id, identifier=prepared.identifier, key=prepared.key,
        email=prepared.identifier if looks_like_email(prepared.identifier) else data.notification_email,
        notification_email=data.notification_email, name=data.name, role=prepared.role, provider=data.provider,
        attributes=data.attributes, tenant_id=data.tenant_id, hosted_domain=data.hosted_domain,
        keycloak_idp=data.keycloak_idp, ttl_hours=ttl, expires_at=now + timedelta(hours=ttl),
        created_by=str(actor), send_email=data.send_email,
        code_hash=keyed_hash(deps.settings.secret_key, code) if code else None,
        provisioning_state=(ProvisioningState.PENDING if provisions else ProvisioningState.NONE).value, now=now,
        inviter=data.inviter.model_dump() if data.inviter is not None else None, locale=data.locale)
    member = Member(**member_row)
    invite = Invite(**invite_row, member=member)
    session.add_all([member, invite])
    session.flush()
    token = _new_link(session, invite)
    _dispatch(session, deps, org, invite, token, code, inviter or str(actor))
    session.add(AuditEvent(**created_audit(actor, invite_row, id=new_id(), at=now)))
    # The member's first event, numbered by its row (new_invitation): the same row bulk imports write.
    session.add(Event(**events.build(org, "invite.created", member.event_seq, member=member, invite=invite)))
    return IssuedInvite(invite, deps.link(token), code)


def created_audit(actor: Actor, invite: Mapping[str, Any], *, id: str, at: datetime) -> dict[str, Any]:
    """The audit row of `invite.created` over the invite's row, for one invite and each row of a bulk import."""
    return audit.audit_row(id=id, actor=actor, action="invite.created", org_id=invite["org_id"],
                           target_type="invite", target_id=invite["id"],
                           details={"identifier": invite["identifier"], "role": invite["role"],
                                    "provider": invite["provider"]}, at=at)


def get(session: Session, org: Organization, invite_id: str) -> Invite:
    invite = session.get(Invite, invite_id)
    if invite is None or invite.org_id != org.id:
        raise NotFound(lazy_gettext("invite %(id)s does not exist in %(org)s", id=invite_id, org=org.slug))
    return invite


def get_for_update(session: Session, org: Organization, invite_id: str) -> Invite:
    """The invite with its row locked until commit (PostgreSQL; SQLite writes are serialized)."""
    invite = get(session, org, invite_id)
    if lock_rows(session, select(Invite.id).where(Invite.id == invite.id)):
        session.refresh(invite)
    return invite


def search(session: Session, org: Organization, *, status: str | None = None, provider: str | None = None,
           q: str | None = None, sort: str | None = None, limit: int, cursor: str | None) -> Page[Invite]:
    """Invites of an org, filtered, sorted and one page at a time."""
    stmt: Select[Invite] = select(Invite).where(Invite.org_id == org.id)
    now = utcnow()
    if status is not None:
        wanted = [s.strip().upper() for s in status.split(",") if s.strip()]
        bad = [s for s in wanted if s not in InviteStatus.__members__]
        if bad or not wanted:
            raise ValidationFailed({"status": [lazy_gettext("must be among %(choices)s",
                                                            choices=", ".join(InviteStatus.__members__))]})
        clauses: list[ColumnElement[bool]] = []
        for s in wanted:
            if s == InviteStatus.PENDING:
                clauses.append((Invite.status == s) & (Invite.expires_at > now))
            elif s == InviteStatus.EXPIRED:
                clauses.append((Invite.status == s) |
                               ((Invite.status == InviteStatus.PENDING) & (Invite.expires_at <= now)))
            else:
                clauses.append(Invite.status == s)
        stmt = stmt.where(or_(*clauses))
    if provider:
        stmt = stmt.where(Invite.provider == provider)
    if q:
        stmt = stmt.where(matches(q, Invite.identifier_key, Invite.identifier, Invite.name, Invite.notification_email))
    order = parse_sort(sort, INVITE_SORTS, "-created_at")
    return paginate(session, stmt, sort=order, id_column=Invite.id, limit=limit, cursor=cursor)


def resend(session: Session, deps: Inviting, actor: Actor, org: Organization, invite_id: str,
           *, inviter: str = "") -> IssuedInvite:
    """Mail the invite again with a new link; an EXPIRED invite becomes PENDING again."""
    orgs.lock(session, org)
    invite = get_for_update(session, org, invite_id)
    status = effective_status(invite)
    if status in (InviteStatus.ACCEPTED, InviteStatus.REVOKED):
        raise InvalidState(lazy_gettext("invite %(id)s is %(status)s; only a pending or expired invite can be resent",
                                        id=invite.id, status=status),
                           status=status)
    now = utcnow()
    if status == InviteStatus.EXPIRED:
        if invite.status == InviteStatus.PENDING:
            # Expired by time only: record the expiry first, so the host sees both transitions.
            _close(session, org, invite, InviteStatus.EXPIRED, actor)
        _reopen(session, org, invite)
    supersede_links(session, invite)
    token = _new_link(session, invite)
    code = _new_code(deps.settings, invite) if org.require_invite_code else None
    invite.expires_at = now + timedelta(hours=invite.ttl_hours)
    invite.send_email = True
    invite.send_count += 1
    invite.last_sent_at = now
    _dispatch(session, deps, org, invite, token, code, inviter or str(actor))
    audit.record(session, actor, "invite.resent", org_id=org.id, target_type="invite", target_id=invite.id,
                 details={"send_count": invite.send_count, "was": status})
    events.emit(session, org, "invite.resent", member=invite.member, invite=invite)
    session.flush()
    return _warned(deps, org, IssuedInvite(invite, deps.link(token), code))


def _reopen(session: Session, org: Organization, invite: Invite) -> None:
    """Bring an EXPIRED invite and its member back, if the identifier and a seat are still free."""
    member = invite.member
    reopening = transitions.reopen(invite_id=invite.id, invite_status=invite.status, member_status=member.status,
                                   provisioning_state=invite.provisioning_state, idp_user_id=invite.idp_user_id)
    existing = existing_for(session, org, invite.identifier_key)
    if existing is not None and existing.id != invite.member_id:
        raise duplicate_error(session, org, existing)
    if reopening.needs_seat:
        require_seats(session, org)
    member.assign(reopening.member)
    invite.assign(reopening.invite)


def revoke(session: Session, actor: Actor, org: Organization, invite_id: str) -> Invite:
    """Withdraw a pending invite; its link stops working and its INVITED member is removed."""
    orgs.lock(session, org)
    invite = get_for_update(session, org, invite_id)
    status = effective_status(invite)
    if status != InviteStatus.PENDING:
        raise InvalidState(lazy_gettext("invite %(id)s is %(status)s; only a pending invite can be revoked",
                                        id=invite.id, status=status), status=status)
    _close(session, org, invite, InviteStatus.REVOKED, actor)
    session.flush()
    return invite


@dataclass(frozen=True)
class LinkLookup:
    """What a presented invite token resolves to; org_name and locale are there for the pages of dead links."""

    invite_id: str | None
    org_id: str | None = None
    status: str | None = None
    superseded: bool = False
    org_name: str = ""
    locale: str | None = None

    @property
    def open(self) -> bool:
        """A current link of a PENDING invite: the only kind an invitee can go on with."""
        return self.invite_id is not None and not self.superseded and self.status == InviteStatus.PENDING


# Never a stored token's hash (tokens are 43 characters and more): what a token too long to be one is looked up as.
_NO_TOKEN = "\x00"


def by_token(session: Session, token: str) -> LinkLookup:
    """Resolve a link token; a superseded link is reported as such, never as the invite itself.

    Every token costs the same: one hash and one statement that always answers one row of the same columns
    (NULLs for a token that names nothing), so expired, revoked, unknown and tampered links cannot be told
    apart by the work done for them.
    """
    presented = token if 0 < len(token) <= 200 else _NO_TOKEN
    row = session.execute(_link_statement(), {"token_hash": token_hash(presented)}).one()
    superseded_at, invite_id, org_id, status, expires_at, locale, org_name = row
    if invite_id is None:
        return LinkLookup(None)
    current = effective_status(cast(Invite, SimpleNamespace(status=status, expires_at=expires_at)))
    return LinkLookup(invite_id, org_id, current, superseded=superseded_at is not None, org_name=org_name or "",
                      locale=locale)


@functools.cache
def _link_statement() -> Select[Any]:
    """by_token()'s statement: a one-row probe outer-joined to the link, its invite and its org."""
    link, invite, org = (table_of(model) for model in (InviteLink, Invite, Organization))
    probe = select(bindparam("token_hash", type_=String(64)).label("token_hash")).subquery("probe")
    return (select(link.c.superseded_at, invite.c.id, invite.c.org_id, invite.c.status, invite.c.expires_at,
                   invite.c.locale, org.c.name)
            .select_from(probe)
            .outerjoin(link, link.c.token_hash == probe.c.token_hash)
            .outerjoin(invite, invite.c.id == link.c.invite_id)
            .outerjoin(org, org.c.id == invite.c.org_id))
