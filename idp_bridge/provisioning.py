"""Provisioning jobs: create or bind IdP accounts for invites, undo them, and follow member status."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Row, Select, Update, bindparam, exists, insert, select
from sqlalchemy.orm import Session

from idp_bridge import audit, events, jobs
from idp_bridge.audit import Actor
from idp_bridge.core_jobs import SEALED_KEYS
from idp_bridge.domain.providers import InviteTarget, OrganizationMembership, Pacing, Provisioner, ProvisionResult
from idp_bridge.errors import InvalidState, ProviderError, lazy_gettext
from idp_bridge.jobs import PermanentFailure, RetryLater
from idp_bridge.models import (
    AuditEvent,
    Identity,
    Invite,
    InviteStatus,
    Member,
    MemberStatus,
    Organization,
    ProvisioningState,
    utcnow,
)
from idp_bridge.pacing import Pace
from idp_bridge.services import invites, orgs
from idp_bridge.services.members import DISABLE_ACCOUNT_JOB, ORGANIZATION_JOB, accounts_of
from idp_bridge.services.ports import Inviting, ProvisioningContext, WithSessions
from idp_bridge.store.db import read_only, transaction
from idp_bridge.store.group_commit import GroupCommit
from idp_bridge.store.sql import Flavor, flavor, table_of
from idp_bridge.worker import JobKind, JobView

log = logging.getLogger(__name__)

# idp_data keys: when an attempt first went to create the account, and which job recorded it.
CREATE_ATTEMPTED = "create_attempted_at"
PROVISIONED_BY = "provisioned_by_job"
# The longest a worker thread waits out a provider's Retry-After before calling it (the job itself is retried
# after the full Retry-After).
MAX_PAUSE_SECONDS = 60.0
# How often one run of an organization job goes round when the member changes while it calls the IdP.
ORGANIZATION_ROUNDS = 3


class Paced(Protocol):
    """What a provider's pacer is built from: its name and its limits."""

    name: str

    def pacing(self) -> Pacing: ...


class Pacer:
    """Per-provider limits: a pace shared by every worker of the deployment, this process's concurrency cap, and
    Retry-After pauses (shared through the pace when the provider has a rate)."""

    def __init__(self, pace: Pace | None, concurrency: int) -> None:
        self.pace = pace
        self.slots = threading.BoundedSemaphore(concurrency)
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every call to this provider back, as its Retry-After asks."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
        if self.pace is not None:
            try:
                self.pace.hold(min(seconds, MAX_PAUSE_SECONDS))
            except Exception:
                log.exception("the pause of %s could not be shared with the other workers", self.pace.key)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self.slots:
            wait = self.paused_until - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, MAX_PAUSE_SECONDS))
            if self.pace is not None:
                self.pace.take()
            yield


class Provisioning:
    """This process's provisioning state: one pacer per provider and the writer of create-attempt stamps."""

    def __init__(self, bridge: ProvisioningContext) -> None:
        self.bridge = bridge
        self._pacers: dict[str, Pacer] = {}
        self._provisioners: dict[str, Provisioner | None] = {}
        self._memberships: dict[str, OrganizationMembership | None] = {}
        self._lock = threading.Lock()
        # Many provisioning threads stamp their invites before creating accounts: in shared transactions.
        self.stamper: GroupCommit[str] = GroupCommit(bridge.engine, _stamp_create_attempts,
                                                   name="provisioning-stamper")

    def pacer(self, provider: Paced) -> Pacer:
        """The pacer of this provider (one per provider per process; its pace is the deployment's)."""
        found = self._pacers.get(provider.name)
        if found is not None:
            return found
        with self._lock:
            if provider.name not in self._pacers:
                pacing = provider.pacing()
                pace = (Pace(self.bridge.paces, f"provider:{provider.name}", pacing.rate_per_second)
                        if pacing.rate_per_second > 0 else None)
                self._pacers[provider.name] = Pacer(pace, pacing.concurrency)
            return self._pacers[provider.name]

    def provisioner(self, name: str) -> Provisioner | None:
        """The configured provider by this name when it provisions accounts."""
        # Checking a runtime protocol walks all its members; the answer per provider never changes.
        if name not in self._provisioners:
            provider = self.bridge.provider(name)
            self._provisioners[name] = provider.provisioner() if provider is not None else None
        return self._provisioners[name]

    def membership(self, name: str) -> OrganizationMembership | None:
        """The configured provider by this name when it has IdP organizations turned on."""
        if name not in self._memberships:
            provider = self.bridge.provider(name)
            self._memberships[name] = provider.organizations() if provider is not None else None
        return self._memberships[name]

    def provision(self, bridge: object, job: JobView) -> jobs.Recorder | None:
        return provision_invite(self, job)

    def sync_organization(self, bridge: object, job: JobView) -> jobs.Recorder | None:
        return sync_organization(self, job)

    def deprovision(self, bridge: object, job: JobView) -> None:
        deprovision_invite(self, job)

    def set_enabled(self, bridge: object, job: JobView) -> None:
        set_account_enabled(self, job)

    def job_kinds(self) -> dict[str, JobKind]:
        """Job kinds of provisioning, provider-agnostic; pacing is per provider inside the handlers."""
        return {
            invites.PROVISION_JOB: JobKind(run=self.provision, on_give_up=provisioning_failed, wipe=SEALED_KEYS,
                                           prefetch=prefetch_invites),
            invites.DEPROVISION_JOB: JobKind(run=self.deprovision),
            DISABLE_ACCOUNT_JOB: JobKind(run=self.set_enabled),
            ORGANIZATION_JOB: JobKind(run=self.sync_organization),
        }


def _call(state: Provisioning, provider: Paced, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one provider operation inside its pacing; ProviderError becomes retry-later or a permanent failure."""
    gate = state.pacer(provider)
    try:
        with gate.slot():
            return fn(*args, **kwargs)
    except ProviderError as exc:
        if not exc.retryable:
            raise PermanentFailure(exc.detail) from exc
        if exc.retry_after is not None:
            gate.pause(exc.retry_after)
        raise RetryLater(exc.detail, delay=exc.retry_after) from exc


@dataclass(frozen=True)
class Attempt:
    """What a provisioning attempt needs from the database, read before any IdP call."""

    provider: Provisioner
    target: InviteTarget
    idp_mail: bool
    ours_too: bool
    since: datetime | None
    send_email: bool


_invites = table_of(Invite)
_orgs = table_of(Organization)
# Statements built once: provisioning runs them for every invite, and building one costs as much as running it.
# The row carries the invite's columns under the model's attribute names, plus what it needs of the org.
_LOAD_ALL = select(_invites, _orgs.c.slug, _orgs.c.keycloak_email).join(_orgs, _orgs.c.id == _invites.c.org_id)
_LOAD = _LOAD_ALL.where(_invites.c.id == bindparam("b_invite"))
_LOAD_MANY = _LOAD_ALL.where(_invites.c.id.in_(bindparam("b_invites", expanding=True)))
# Row-locked for the read-modify-write (PostgreSQL); SQLite's writing transaction excludes every other writer.
_BOUND_MANY: Select[Any] = select(_invites.c.id, _invites.c.idp_data, _invites.c.idp_user_id,
                                  _invites.c.idp_user_created, _invites.c.status, _invites.c.expires_at,
                                  _invites.c.org_id).where(
    _invites.c.id.in_(bindparam("b_invites", expanding=True))).with_for_update()
_AUDIT = insert(table_of(AuditEvent))
_RECORD = _invites.update().where(_invites.c.id == bindparam("b_invite")).values(
    idp_user_id=bindparam("b_user"), idp_user_created=bindparam("b_created"), idp_data=bindparam("b_data"),
    provisioning_state=ProvisioningState.DONE.value, provisioning_attempts=bindparam("b_attempts"),
    provisioning_error=None)
_PENDING = (_invites.c.id == bindparam("b_invite")) & (_invites.c.provisioning_state == ProvisioningState.PENDING)
_RECORD_ATTEMPT = _invites.update().where(_PENDING).values(provisioning_attempts=bindparam("b_attempts"),
                                                           provisioning_error=bindparam("b_error"))
_UNPROVISION = _invites.update().where(_PENDING).values(provisioning_state=ProvisioningState.NONE.value)


@functools.cache
def _stamp_statement(sql: Flavor) -> Update:
    """One statement stamps an invite unless an earlier attempt did (each database's JSON functions)."""
    return _invites.update().where(
        _invites.c.id == bindparam("b_invite"), ~sql.json_has_key(_invites.c.idp_data, CREATE_ATTEMPTED),
    ).values(idp_data=sql.json_with_key(_invites.c.idp_data, CREATE_ATTEMPTED, bindparam("b_at")))


def _attempt_recorder(invite_id: str, attempts: int, error: str) -> jobs.Recorder:
    """Show a failed attempt on the invite, in the transaction that schedules the retry."""

    def record(session: Session) -> None:
        session.execute(_RECORD_ATTEMPT, {"b_invite": invite_id, "b_attempts": attempts, "b_error": error[:2000]})

    return record


def _prepare(state: Provisioning, row: Row[Any], job: JobView) -> Attempt:
    invite, org = cast(Invite, row), cast(Organization, row)
    bridge = state.bridge
    provider = state.provisioner(invite.provider)
    if provider is None:
        raise PermanentFailure(f"provider {invite.provider!r} is not configured to provision accounts")
    if "link" not in job.payload:
        raise PermanentFailure("job has no link (wiped)")
    link = bridge.link(bridge.unseal(job.payload["link"]))
    target = invites.target_of(invite, org, link)
    # The provider reads the org's choice of who mails a new account's invitee (its setup mail, ours, or both).
    plan = provider.mail_plan(org.keycloak_email)
    started = invite.idp_data.get(CREATE_ATTEMPTED)
    since = datetime.fromisoformat(started) if started else None
    return Attempt(provider, target, plan.idp_mails, plan.we_mail_too, since, invite.send_email)


def _already_done(row: Row[Any], job: JobView) -> bool:
    """Whether this job (an earlier run of it, before a lost lease) already recorded the account."""
    if row.provisioning_state != ProvisioningState.DONE:
        return False
    # An invite resent while an older job was at the IdP is DONE with the old link; this job carries the
    # new one, which still has to reach the invitee.
    return row.idp_data.get(PROVISIONED_BY) in (None, job.id)


def _stamp_create_attempts(conn: Connection, invite_ids: list[str]) -> None:
    """Record, durably and before any account is created, that an attempt for these invites is about to."""
    now = utcnow().isoformat()
    conn.execute(_stamp_statement(flavor(conn)), [{"b_invite": invite_id, "b_at": now} for invite_id in invite_ids])


def prefetch_invites(session: Session, batch: list[JobView]) -> dict[str, Row[Any]]:
    """The invite rows of a batch of claimed provisioning jobs, read in one query."""
    wanted = {job.payload.get("invite_id") for job in batch}
    rows = {row.id: row for row in session.execute(_LOAD_MANY, {"b_invites": sorted(wanted, key=str)})}
    return {job.id: rows[job.payload["invite_id"]] for job in batch if job.payload.get("invite_id") in rows}


def provision_invite(state: Provisioning, job: JobView) -> jobs.Recorder | None:
    """Create or bind the invitee's IdP account; the returned recorder stores it and queues our mail if due."""
    bridge = state.bridge
    invite_id = job.payload["invite_id"]
    row: Row[Any] | None = job.context
    if row is None:
        # Reading takes no SQLite write lock: many provisioning threads share one database.
        with read_only(), transaction(bridge.sessions) as session:
            row = session.execute(_LOAD, {"b_invite": invite_id}).first()
    if row is None or _already_done(row, job):
        return None  # a rerun after a lost lease: the first run recorded everything
    if invites.effective_status(cast(Invite, row)) != InviteStatus.PENDING:
        return _closed_recorder(invite_id)
    try:
        attempt = _prepare(state, row, job)
    except PermanentFailure as exc:
        raise PermanentFailure(str(exc), record=_attempt_recorder(invite_id, job.attempts, str(exc))) from exc
    since = attempt.since

    def before_create() -> None:
        if since is None:
            state.stamper.submit(invite_id)

    try:
        result = _call(state, attempt.provider, attempt.provider.provision, attempt.target,
                       idp_mail=attempt.idp_mail, since=since, before_create=before_create)
    except RetryLater as exc:
        raise RetryLater(str(exc), delay=exc.delay,
                         record=_attempt_recorder(invite_id, job.attempts, str(exc))) from exc
    except PermanentFailure as exc:
        raise PermanentFailure(str(exc), record=_attempt_recorder(invite_id, job.attempts, str(exc))) from exc
    return Provisioned(bridge, job, attempt, result)


def _closed_recorder(invite_id: str) -> jobs.Recorder:
    def record(session: Session) -> None:
        session.execute(_UNPROVISION, {"b_invite": invite_id})

    return record


@dataclass(frozen=True)
class Provisioned:
    """Records one provisioning result; the worker hands all of a transaction's results to record_all."""

    bridge: ProvisioningContext
    job: JobView
    attempt: Attempt
    result: ProvisionResult

    @property
    def invite_id(self) -> str:
        return str(self.job.payload["invite_id"])

    def __call__(self, session: Session) -> None:
        self.record_all(session, [self])

    @staticmethod
    def record_all(session: Session, done: list[Provisioned]) -> None:
        """Bind the accounts, audit them and queue what follows: a few statements for the whole batch."""
        with session.no_autoflush:
            found = session.execute(_BOUND_MANY,
                                    {"b_invites": sorted({p.invite_id for p in done})})
            rows = {row.id: row for row in found}
            updates: list[dict[str, Any]] = []
            entries: list[dict[str, Any]] = []
            for item in done:
                bound, result, name = rows.get(item.invite_id), item.result, item.attempt.provider.name
                if bound is None:
                    continue  # the invite was deleted meanwhile
                same_account = bound.idp_user_id == result.user_id
                data = {**bound.idp_data, **dict(result.data), "provider": name, "idp_mailed": result.mailed,
                        PROVISIONED_BY: item.job.id}
                updates.append({"b_invite": item.invite_id, "b_user": result.user_id, "b_data": data,
                                "b_created": result.created or (same_account and bound.idp_user_created),
                                "b_attempts": item.job.attempts})
                entries.append(audit.entry(audit.WORKER, "invite.provisioned", org_id=bound.org_id,
                                           target_type="invite", target_id=item.invite_id,
                                           details={"provider": name, "idp_user_id": result.user_id,
                                                    "created": result.created, "idp_mailed": result.mailed}))
                item._follow_up(session, bound)
            if updates:
                session.execute(_RECORD, updates)
                session.execute(_AUDIT, entries)

    def _follow_up(self, session: Session, bound: Row[Any]) -> None:
        if invites.effective_status(cast(Invite, bound)) != InviteStatus.PENDING:
            # Revoked or expired while we were at the IdP: undo at once.
            jobs.enqueue(session, invites.DEPROVISION_JOB, {"invite_id": self.invite_id}, org_id=bound.org_id)
        elif self.attempt.send_email and (not self.result.mailed or self.attempt.ours_too):
            payload = {k: v for k, v in self.job.payload.items() if k in (*SEALED_KEYS, "invite_id", "inviter")}
            jobs.enqueue(session, invites.SEND_EMAIL_JOB, payload, org_id=bound.org_id,
                         max_attempts=self.bridge.settings.job_max_attempts)


def provisioning_failed(bridge: WithSessions, job: JobView, error: str) -> None:
    """After the last attempt: the invite shows `failed` with the error and the host hears of it."""
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, job.payload["invite_id"])
        if invite is None or invite.provisioning_state != ProvisioningState.PENDING:
            return
        org = session.get(Organization, invite.org_id)
        assert org is not None
        invite.provisioning_state = ProvisioningState.FAILED.value
        invite.provisioning_attempts = job.attempts
        invite.provisioning_error = error[:2000]
        audit.record(session, audit.WORKER, "invite.provisioning_failed", org_id=org.id, target_type="invite",
                     target_id=invite.id, details={"error": error[:500], "attempts": job.attempts})
        events.emit(session, org, "invite.provisioning_failed", member=invite.member, invite=invite,
                    error=error[:500], attempts=job.attempts)


def deprovision_invite(state: Provisioning, job: JobView) -> None:
    """For a revoked, expired or removed invite: delete the account only if we created it and it is unused."""
    bridge = state.bridge
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, job.payload["invite_id"])
        if invite is None or not invite.idp_user_id or invites.effective_status(invite) == InviteStatus.PENDING:
            return  # nothing bound, or the invite was reopened by a resend and keeps its account
        provider = state.provisioner(invite.provider)
        if provider is None:
            return
        user_id, created = invite.idp_user_id, invite.idp_user_created
    outcome = str(_call(state, provider, provider.deprovision, user_id, created=created))
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, job.payload["invite_id"])
        assert invite is not None
        invite.idp_data = {**invite.idp_data, "deprovision": outcome}
        if outcome in ("deleted", "gone"):
            invite.idp_user_id = None
            invite.idp_user_created = False
            invite.provisioning_state = ProvisioningState.NONE.value
        audit.record(session, audit.WORKER, "invite.deprovisioned", org_id=invite.org_id, target_type="invite",
                     target_id=invite.id, details={"idp_user_id": user_id, "outcome": outcome})


def set_account_enabled(state: Provisioning, job: JobView) -> None:
    """Disable (deactivate) or enable (reactivate) the IdP account bound to a member."""
    bridge = state.bridge
    enabled = bool(job.payload["enabled"])
    with transaction(bridge.sessions) as session:
        member = session.get(Member, job.payload["member_id"])
        if member is None:
            return
        wanted = MemberStatus.ACTIVE if enabled else MemberStatus.DEACTIVATED
        if member.status != wanted:
            return  # a later change superseded this one; its own job applies it
        invite = session.scalar(select(Invite).where(Invite.member_id == member.id, Invite.idp_user_id.is_not(None))
                                .order_by(Invite.created_at.desc()).limit(1))
        if invite is None or invite.idp_user_id is None:
            return
        provider = state.provisioner(invite.provider)
        if provider is None:
            return
        user_id, org_id, member_id = invite.idp_user_id, member.org_id, member.id
    outcome = str(_call(state, provider, provider.set_enabled, user_id, enabled))
    with transaction(bridge.sessions) as session:
        audit.record(session, audit.WORKER, "member.idp_account_" + ("enabled" if enabled else "disabled"),
                     org_id=org_id, target_type="member", target_id=member_id,
                     details={"idp_user_id": user_id, "outcome": outcome})


LIVE_STATUSES = (MemberStatus.ACTIVE.value, MemberStatus.DEACTIVATED.value)


def _belongs(session: Session, org_id: str, provider: str, subject: str) -> bool:
    """Whether this account is bound to a live member of the org (ACTIVE, or DEACTIVATED and not yet removed)."""
    live = (Member.org_id == org_id) & Member.status.in_(LIVE_STATUSES)
    by_identity = exists().where(Identity.member_id == Member.id, Identity.provider == provider,
                                 Identity.subject == subject)
    by_invite = exists().where(Invite.member_id == Member.id, Invite.provider == provider,
                               Invite.idp_user_id == subject)
    return session.scalar(select(exists().where(live & (by_identity | by_invite)))) is True


def _wanted(state: Provisioning, job: JobView) -> dict[tuple[str, str], bool]:
    """Each account of the job's member that a provider with organizations knows: whether it belongs in."""
    with read_only(), transaction(state.bridge.sessions) as session:
        accounts = [(str(p), str(s)) for p, s in job.payload.get("accounts", [])]
        member = session.get(Member, job.payload["member_id"])
        if member is not None:
            accounts += accounts_of(session, member)
        return {(provider, subject): _belongs(session, str(job.org_id), provider, subject)
                for provider, subject in dict.fromkeys(accounts) if state.membership(provider) is not None}


def sync_organization(state: Provisioning, job: JobView) -> jobs.Recorder | None:
    """Bring the org's IdP organization in line with one member: its accounts in while it is a live member of
    the org, out once it is removed. Decided on the member as it is now (so jobs may run in any order), and
    again after the IdP calls: a member that changed meanwhile is gone over once more."""
    organization = str(job.payload["organization"])
    entries: list[dict[str, Any]] = []
    wanted = _wanted(state, job)
    for _round in range(ORGANIZATION_ROUNDS):
        for (name, subject), belongs in wanted.items():
            membership = state.membership(name)
            assert membership is not None
            change = membership.add_member if belongs else membership.remove_member
            outcome = str(_call(state, membership, change, organization, subject))
            entries.append(audit.entry(
                audit.WORKER, "member.idp_organization_" + ("added" if belongs else "removed"), org_id=job.org_id,
                target_type="member", target_id=str(job.payload["member_id"]),
                details={"provider": name, "organization": organization, "idp_user_id": subject,
                         "outcome": outcome}))
        now = _wanted(state, job)
        if now == wanted:
            return _audited(entries)
        wanted = now
    raise RetryLater("the member kept changing while its IdP organization membership was updated",
                     record=_audited(entries))


def _audited(entries: list[dict[str, Any]]) -> jobs.Recorder | None:
    if not entries:
        return None

    def record(session: Session) -> None:
        session.execute(_AUDIT, entries)

    return record


def retry(session: Session, bridge: Inviting, actor: Actor, org: Organization, invite_id: str) -> invites.IssuedInvite:
    """Provision a failed invite again; it gets a new link, since links are never stored in the clear."""
    orgs.lock(session, org)
    invite = invites.get_for_update(session, org, invite_id)
    status = invites.effective_status(invite)
    if status != InviteStatus.PENDING or invite.provisioning_state != ProvisioningState.FAILED:
        raise InvalidState(lazy_gettext("invite %(id)s is %(status)s with provisioning %(provisioning)s; only a "
                                        "pending invite whose provisioning failed can be retried", id=invite.id,
                                        status=status, provisioning=invite.provisioning_state),
                           status=status, provisioning=invite.provisioning_state)
    invites.supersede_links(session, invite)
    token = invites._new_link(session, invite)
    code = invites._new_code(bridge.settings, invite) if org.require_invite_code else None
    invite.provisioning_attempts = 0
    invite.provisioning_error = None
    invites._dispatch(session, bridge, org, invite, token, code, str(actor))
    audit.record(session, actor, "invite.provisioning_retried", org_id=org.id, target_type="invite",
                 target_id=invite.id)
    session.flush()
    return invites.IssuedInvite(invite, bridge.link(token), code)
