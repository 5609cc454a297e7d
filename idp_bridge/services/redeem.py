"""Invite redemption after OIDC login: login states, the identity rules, and the one winning transaction."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Literal, cast

from sqlalchemy import Connection, Insert, Select, Update, and_, bindparam, delete, select, text, update
from sqlalchemy.orm import Session, joinedload

from idp_bridge import audit, events
from idp_bridge.audit import Actor
from idp_bridge.domain import redemption
from idp_bridge.domain.providers import IdentityCheck, LoginIdentity, Provider
from idp_bridge.domain.redemption import Binding, Decision, Facts, LinkState, Verdict
from idp_bridge.models import (
    Identity,
    Invite,
    InviteLink,
    LoginState,
    Member,
    MemberStatus,
    Organization,
    utcnow,
)
from idp_bridge.security import same, seal, token_hash
from idp_bridge.services import invites, members, orgs
from idp_bridge.services.ports import Redeeming, WithProviders
from idp_bridge.settings import Settings
from idp_bridge.store.compiled import compiled, pipelined, read_first
from idp_bridge.store.ids import new_id
from idp_bridge.store.sql import Flavor, flavor, pipelines, table_of

LOGIN_STATE_TTL = timedelta(minutes=15)
MAX_CODE_FAILURES = 5

ACCEPTED = Verdict.ACCEPT.value
CONTINUE = Verdict.CONTINUE.value
REJECTED = Verdict.REJECT.value
USED = Verdict.USED.value
INVALID = Verdict.INVALID.value


@dataclass
class Redemption:
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
    """A login in flight, found at its callback: everything needed to finish it."""

    state_hash: str
    # None for a console sign-in, which redeems no invite.
    invite_id: str | None
    link_token: str
    provider: str
    nonce: str
    code_verifier: str


def provider_allowed(deps: WithProviders, invite: Invite, org: Organization, provider: str) -> bool:
    """Rule 2: the invite's provider, or for `any` a configured provider the org allows."""
    return redemption.provider_allowed(provider, invite.provider, deps.providers, org.allowed_providers)


def login_providers(deps: WithProviders, invite: Invite, org: Organization) -> list[str]:
    """The providers the invitee may sign in with, in configuration order."""
    return [name for name in deps.providers if provider_allowed(deps, invite, org, name)]


def start_login(session: Session, settings: Settings, invite: Invite | None, *, link_token: str, provider: str,
                browser_secret: str) -> tuple[str, str, str]:
    """Record a login in flight; returns (state, nonce, code_verifier) for the authorization URL.

    `invite` is None for a console sign-in: the same state, nonce, PKCE and browser binding, no invite.
    """
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(24), secrets.token_urlsafe(64)
    session.add(LoginState(state_hash=token_hash(state), browser_hash=token_hash(browser_secret),
                           invite_id=invite.id if invite is not None else None,
                           link_sealed=seal(settings.secret_key, link_token), provider=provider,
                           nonce=nonce, code_verifier=verifier, created_at=utcnow()))
    return state, nonce, verifier


def find_login(deps: Redeeming, *, state: str, browser_secrets: Sequence[str], provider: str) -> PendingLogin | None:
    """The login a callback finishes: it must exist, be unused and fresh, and belong to this browser and provider.

    browser_secrets are the values this browser holds, one per login it has in flight; the login must be bound
    to one of them. Only reads, in one statement on a bare pooled driver connection; claim_login() uses the
    state up in the transaction that records how the login ended.
    """
    if not state or len(state) > 200 or not browser_secrets:
        return None
    row = read_first(deps.engine, "find_login", _find_login_statement, {"state_hash": token_hash(state)})
    if row is None:
        return None
    state_hash, browser_hash, invite_id, link_sealed, row_provider, nonce, code_verifier, created_at, used_at = row
    if used_at is not None or row_provider != provider:
        return None
    if not any(same(browser_hash, token_hash(secret)) for secret in browser_secrets):
        return None
    if created_at + LOGIN_STATE_TTL < utcnow():
        return None
    return PendingLogin(state_hash=state_hash, invite_id=invite_id,
                        link_token=deps.unseal(link_sealed), provider=row_provider,
                        nonce=nonce, code_verifier=code_verifier)


def claim_login(session: Session, pending: PendingLogin) -> bool:
    """Use the login state up; False when another callback already did (the conditional update decides a race)."""
    return _claim(session.connection(), pending)


def _claim(connection: Connection, pending: PendingLogin) -> bool:
    claim = compiled(connection, "claim_login", _claim_login_statement)
    return claim.run(connection, {"hash": pending.state_hash, "now": utcnow()}) == 1


def complete_login(connection: Connection, deps: Redeeming, actor: Actor, pending: PendingLogin, provider: Provider,
                   claims: Mapping[str, Any]) -> Redemption | None:
    """Use the login state up and redeem, within the caller's transaction on `connection`.

    None when another callback with the same state finished first. The common case, an open invite
    redeemed by the right account, runs as a few prebuilt statements; every other outcome goes to
    finish_login() (the ORM path) in the same transaction, which re-reads under the same lock and asks
    redemption.decide() again, with the identity check made here.
    """
    row = _claim_and_lock(connection, pending)
    if row is False:
        return None
    check = None
    if row is not None:
        outcome, check = _accept_directly(connection, deps, actor, pending, provider, claims, row)
        if outcome is not None:
            return outcome
    # The session joins the connection's transaction: the caller commits or rolls back.
    session = deps.sessions(bind=connection)
    try:
        outcome = finish_login(session, deps, actor, pending, provider, claims, check=check)
        session.flush()
    finally:
        session.close()
    return outcome


def _claim_and_lock(connection: Connection, pending: PendingLogin) -> tuple[Any, ...] | Literal[False] | None:
    """Use the login state up, then read the invite (row-locked on PostgreSQL), its org, its member and the link
    the login came through (_direct_lock_statement's columns).

    False when another callback used the state first; None when there is no such invite (the ORM path then
    decides). On PostgreSQL both are one statement, the claim as a data-modifying WITH, sent together with the
    transaction's BEGIN; there invites are never deleted, so no row means the state was used already.
    """
    values = {"hash": pending.state_hash, "now": utcnow(), "invite_id": pending.invite_id,
              "link_hash": token_hash(pending.link_token)}
    if flavor(connection).writes_in_cte:
        both = compiled(connection, "claim_and_lock", _claim_and_lock_statement)
        with pipelined(connection):
            row = both.first(connection, values)
        return False if row is None else row
    if not _claim(connection, pending):
        return False
    lock = compiled(connection, "direct_lock", _direct_lock_statement)
    return lock.first(connection, values)


def _accept_directly(connection: Connection, deps: WithProviders, actor: Actor, pending: PendingLogin,
                     provider: Provider, claims: Mapping[str, Any],
                     row: tuple[Any, ...]) -> tuple[Redemption | None, IdentityCheck]:
    """Redeem when redemption.decide() accepts at the first look; otherwise no outcome, having written nothing.

    `row` is what _claim_and_lock() read; the identity, the two status changes, the audit entries and the
    events are written with prebuilt statements. The identity check is returned for finish_login() to reuse.
    """
    columns = _lock_columns()
    # Plain objects with the columns as attributes: what the rules and the event builders read, without the
    # per-instance bookkeeping of ORM objects.
    invite, org, member, link = (SimpleNamespace(**dict(zip(keys, row[start:end], strict=True)))
                                 for keys, start, end in columns)
    as_invite, as_org = cast(Invite, invite), cast(Organization, org)
    check = provider.check_identity(claims, invites.target_of(as_invite, as_org), match=org.match)
    if member.id is None:
        return None, check
    # Decided as if the identity were bound to nobody: the bind below inserts only a free identity, and a
    # taken one sends the callback to finish_login(), which looks the binding up and decides again.
    link_state = _link_state(link.token_hash is not None, link.superseded_at)
    decision = redemption.decide(_facts(deps, as_invite, as_org, member.status, link_state, pending.provider,
                                        check, Binding.NONE))
    if decision.verdict != Verdict.ACCEPT:
        return None, check
    identity = check.identity
    if not _write_acceptance(connection, actor, as_org, cast(Member, member), as_invite, identity):
        return None, check
    return Redemption(ACCEPTED, org=as_org, invite=as_invite, identity=identity,
                   redirect_url=redirect_for(deps.settings, as_org)), check


def _link_state(found: bool, superseded_at: datetime | None) -> LinkState:
    if not found:
        return LinkState.MISSING
    return LinkState.CURRENT if superseded_at is None else LinkState.SUPERSEDED


def _facts(deps: WithProviders, invite: Invite, org: Organization, member_status: str, link: LinkState, provider: str,
           check: IdentityCheck, binding: Binding) -> Facts:
    return Facts(invite_status=invites.effective_status(invite), member_status=member_status, link=link,
                 provider=provider, invite_provider=invite.provider, configured=deps.providers,
                 org_providers=org.allowed_providers, identity_problem=check.problem, binding=binding)


def _write_acceptance(connection: Connection, actor: Actor, org: Organization, member: Member, invite: Invite,
                      identity: LoginIdentity) -> bool:
    """Bind the identity and make the member ACTIVE; False, with nothing written, when the identity is bound.

    On PostgreSQL the bind and the activation's writes go to the server together, behind a savepoint that is
    rolled back in the rare case the bind finds the identity taken (the ORM path then decides).
    """
    data = _activation_data(identity)
    if not pipelines(connection):
        if not _bind(connection, org, member, identity):
            return False
        members.write_activation(connection, actor, org, member, invite, **data)
        return True
    with pipelined(connection):
        compiled(connection, "direct_savepoint", lambda: text(f"SAVEPOINT {_SAVEPOINT}")).run(connection, {})
        bound = _bind_later(connection, org, member, identity)
        members.write_activation(connection, actor, org, member, invite, **data)
    if bound() is not None:
        return True
    compiled(connection, "direct_rollback", lambda: text(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")).run(connection, {})
    return False


_SAVEPOINT = "direct_accept"


def purge_login_states(session: Session, *, older_than: timedelta = timedelta(days=1)) -> int:
    """Forget login states well past their life."""
    result = session.execute(delete(LoginState).where(LoginState.created_at < utcnow() - older_than))
    return int(getattr(result, "rowcount", 0) or 0)


def redirect_for(settings: Settings, org: Organization) -> str | None:
    """The org's redirect, only if it is on the allowlist (re-checked: the allowlist may have shrunk)."""
    if org.redirect_url and orgs.redirect_allowed(settings, org.redirect_url):
        return org.redirect_url
    return None


def _lock_invite(session: Session, invite_id: str) -> Invite | None:
    stmt = select(Invite).where(Invite.id == invite_id).with_for_update(of=Invite)
    return session.scalars(stmt.execution_options(populate_existing=True)).unique().one_or_none()


def _lock_for_redemption(session: Session, invite_id: str,
                         link_token: str) -> tuple[Invite, Organization, InviteLink | None] | None:
    """The invite (row-locked on PostgreSQL) with its member, its org and the link the login came through."""
    row = session.execute(_lock_statement(),
                          {"invite_id": invite_id, "link_hash": token_hash(link_token)}).unique().one_or_none()
    if row is None:
        return None
    return row[0], row[1], row[2]


def bound_identity(session: Session, org: Organization, identity: LoginIdentity) -> Identity | None:
    """The binding of this account (provider, issuer, subject) in the org, if any."""
    return session.scalar(select(Identity).where(Identity.org_id == org.id, Identity.provider == identity.provider,
                                                 Identity.issuer == identity.issuer,
                                                 Identity.subject == identity.subject))


def is_live(session: Session, member_id: str) -> bool:
    """Whether the member exists and is not DELETED."""
    member = session.get(Member, member_id)
    return member is not None and member.status != MemberStatus.DELETED


def _bind(connection: Connection, org: Organization, member: Member, identity: LoginIdentity) -> bool:
    """Bind the identity to the member; False when (org, provider, issuer, subject) is bound already.

    The unique constraint decides, so two redemptions racing to bind one identity cannot both succeed.
    """
    return _bind_later(connection, org, member, identity)() is not None


def _bind_later(connection: Connection, org: Organization, member: Member,
                identity: LoginIdentity) -> Callable[[], tuple[Any, ...] | None]:
    """_bind()'s INSERT, executed now; calling the result reads whether the row went in (None: it did not)."""
    now = utcnow()
    values = {"id": new_id(), "org_id": org.id, "member_id": member.id, "provider": identity.provider,
              "issuer": identity.issuer, "subject": identity.subject, "tenant_id": identity.tenant_id,
              "email": identity.email, "email_verified": identity.email_verified, "created_at": now,
              "last_login_at": now}
    insert = compiled(connection, "bind_identity", lambda: _bind_statement(flavor(connection)), list(values))
    return insert.first_later(connection, values)


# The callback's statements are built once: constructing them anew each time costs more than running them.

@functools.cache
def _find_login_statement() -> Select[Any]:
    table = table_of(LoginState)
    return select(table.c.state_hash, table.c.browser_hash, table.c.invite_id, table.c.link_sealed, table.c.provider,
                  table.c.nonce, table.c.code_verifier, table.c.created_at,
                  table.c.used_at).where(table.c.state_hash == bindparam("state_hash"))


@functools.cache
def _claim_login_statement() -> Update:
    table = table_of(LoginState)
    return (update(table).where(table.c.state_hash == bindparam("hash"), table.c.used_at.is_(None))
            .values(used_at=bindparam("now")))


@functools.cache
def _lock_statement() -> Select[Invite, Organization, InviteLink]:
    """The invite, its org and the link, row-locked (the lock is left out on SQLite, where writers take turns)."""
    stmt = (select(Invite, Organization, InviteLink)
            .join(Organization, Organization.id == Invite.org_id)
            .outerjoin(InviteLink, and_(InviteLink.token_hash == bindparam("link_hash"),
                                        InviteLink.invite_id == Invite.id))
            .where(Invite.id == bindparam("invite_id"))
            # The member's identities are not needed here; loading them would cost a query per callback.
            .options(joinedload(Invite.member).lazyload(Member.identities))
            .execution_options(populate_existing=True))
    return stmt.with_for_update(of=Invite)


_DIRECT_TABLES = (Invite, Organization, Member, InviteLink)


@functools.cache
def _lock_columns() -> list[tuple[list[str], int, int]]:
    """(column keys, start, end) of each table's slice of a _direct_lock_statement() row."""
    out, start = [], 0
    for model in _DIRECT_TABLES:
        keys = list(table_of(model).c.keys())
        out.append((keys, start, start + len(keys)))
        start += len(keys)
    return out


@functools.cache
def _direct_lock_statement() -> Select[Any]:
    invite, org, member, link = (table_of(model) for model in _DIRECT_TABLES)
    stmt = (select(*invite.c, *org.c, *member.c, *link.c)
            .join_from(invite, org, org.c.id == invite.c.org_id)
            .outerjoin(member, member.c.id == invite.c.member_id)
            .outerjoin(link, and_(link.c.token_hash == bindparam("link_hash"), link.c.invite_id == invite.c.id))
            .where(invite.c.id == bindparam("invite_id")))
    return stmt.with_for_update(of=invite)


@functools.cache
def _claim_and_lock_statement() -> Select[Any]:
    """PostgreSQL: the claim of the login state as a data-modifying WITH, and the locked read of the invite
    with its org, member and link, which yields no row unless the claim took."""
    table = table_of(LoginState)
    claimed = (update(table).where(table.c.state_hash == bindparam("hash"), table.c.used_at.is_(None))
               .values(used_at=bindparam("now")).returning(table.c.invite_id).cte("claimed"))
    invite = table_of(Invite)
    lock = _direct_lock_statement()
    return lock.where(invite.c.id.in_(select(claimed.c.invite_id)))


@functools.cache
def _bind_statement(sql: Flavor) -> Insert:
    table = table_of(Identity)
    # RETURNING tells whether the row went in: an INSERT's rowcount is not reliable on every driver.
    return cast(Insert, sql.insert(table).on_conflict_do_nothing().returning(table.c.id))


def reject(session: Session, actor: Actor, org: Organization, invite: Invite, reason: str, *,
           provider: str, identity: LoginIdentity | None = None, detail: str = "") -> Redemption:
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
    return Redemption(REJECTED, org=org, invite=invite, reason=reason, identity=identity)


def finish_login(session: Session, deps: WithProviders, actor: Actor, pending: PendingLogin, provider: Provider,
                 claims: Mapping[str, Any], *, check: IdentityCheck | None = None) -> Redemption:
    """Redeem under the invite's lock as redemption.decide() says; `check` is the identity check, when made."""
    locked = _lock_for_redemption(session, pending.invite_id, pending.link_token) if pending.invite_id else None
    if locked is None:
        return Redemption(INVALID)
    invite, org, link = locked
    if check is None:
        check = provider.check_identity(claims, invites.target_of(invite, org), match=org.match)
    identity = check.identity
    member = invite.member
    link_state = _link_state(link is not None, link.superseded_at if link is not None else None)
    bound = bound_identity(session, org, identity)
    decision = redemption.decide(_facts(deps, invite, org, member.status, link_state, pending.provider, check,
                                        _binding(session, bound, member)))
    if decision.verdict == Verdict.ACCEPT and bound is None and not _bind(session.connection(), org, member,
                                                                           identity):
        # Bound by a concurrent redemption since the look above: decide again on what it bound.
        bound = bound_identity(session, org, identity)
        # A row gone between the insert and this read was bound by someone else too (rule 6).
        binding = Binding.OTHER_MEMBER if bound is None else _binding(session, bound, member)
        decision = redemption.decide(_facts(deps, invite, org, member.status, link_state, pending.provider,
                                            check, binding))
    return _carry_out(session, deps, actor, decision, invite, org, bound, identity, provider=pending.provider)


def _binding(session: Session, bound: Identity | None, member: Member) -> Binding:
    if bound is None:
        return Binding.NONE
    if bound.member_id == member.id:
        return Binding.THIS_MEMBER
    return Binding.OTHER_MEMBER if is_live(session, bound.member_id) else Binding.GONE_MEMBER


def _carry_out(session: Session, deps: WithProviders, actor: Actor, decision: Decision, invite: Invite,
               org: Organization, bound: Identity | None, identity: LoginIdentity, *, provider: str) -> Redemption:
    """Write what the decision says: the acceptance, the continued login, or the audited rejection."""
    verdict = decision.verdict
    if verdict == Verdict.REJECT:
        return reject(session, actor, org, invite, str(decision.reason), provider=provider, identity=identity)
    if verdict == Verdict.SUPERSEDED:
        return Redemption(INVALID, org=org, invite=invite, reason=decision.reason)
    if verdict == Verdict.INVALID:
        return Redemption(INVALID, org=org, invite=invite)
    if verdict == Verdict.USED:
        return Redemption(USED, org=org, invite=invite, identity=identity)
    if bound is not None:
        # Bound to this member already, or a DELETED member's old identity moving to the new membership.
        bound.member_id = invite.member_id
        bound.last_login_at = utcnow()
    if verdict == Verdict.ACCEPT:
        members.activate(session, actor, org, invite.member, invite, **_activation_data(identity))
    return Redemption(verdict.value, org=org, invite=invite, identity=identity,
                      redirect_url=redirect_for(deps.settings, org))


def _activation_data(identity: LoginIdentity) -> dict[str, Any]:
    """What the audit entries and the events of a redemption say about the identity."""
    details = {"provider": identity.provider, "account": identity.account, "subject": identity.subject,
               "issuer": identity.issuer, "tenant_id": identity.tenant_id}
    return {"details": details, "accepted": {"identity_provider": identity.provider},
            "activated": {"via": "invite", "identity": {
                "provider": identity.provider, "issuer": identity.issuer, "subject": identity.subject,
                "tenant_id": identity.tenant_id, "email": identity.email}}}


def record_login_failure(session: Session, actor: Actor, invite_id: str, provider: str, reason: str,
                         detail: str = "") -> Redemption:
    """A login whose tokens did not validate: the invite stays as it is; audit and tell the host."""
    invite = session.get(Invite, invite_id)
    if invite is None:
        return Redemption(INVALID)
    org = session.get(Organization, invite.org_id)
    assert org is not None
    return reject(session, actor, org, invite, reason, provider=provider, detail=detail)


def code_locked(invite: Invite) -> bool:
    return invite.code_failures >= MAX_CODE_FAILURES


def try_code(session: Session, secret_keys: Sequence[str], actor: Actor, invite: Invite, presented: str) -> bool:
    """Check an invite code; wrong tries are counted and lock the code after five (caller holds the lock)."""
    if code_locked(invite):
        return False
    if invites.check_code(secret_keys, invite, presented):
        return True
    invite.code_failures += 1
    audit.record(session, actor, "invite.code_failed", org_id=invite.org_id, target_type="invite",
                 target_id=invite.id, details={"failures": invite.code_failures})
    return False


def lock_invite(session: Session, invite_id: str) -> Invite | None:
    """The invite with its row locked until commit (PostgreSQL; SQLite writes are serialized)."""
    return _lock_invite(session, invite_id)
