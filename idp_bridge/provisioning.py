"""Provisioning jobs: create or bind IdP accounts for invites, undo them, and follow member status."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp_bridge import audit, events, jobs
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.db import read_only, transaction
from idp_bridge.errors import InvalidState, ProviderError
from idp_bridge.handlers import SEALED_KEYS
from idp_bridge.idp import InviteTarget, Provisioner
from idp_bridge.jobs import PermanentFailure, RetryLater
from idp_bridge.models import (
    Invite,
    InviteLink,
    InviteStatus,
    Member,
    MemberStatus,
    Organization,
    ProvisioningState,
    utcnow,
)
from idp_bridge.security import unseal
from idp_bridge.services import invites, orgs
from idp_bridge.services.members import DISABLE_ACCOUNT_JOB
from idp_bridge.worker import JobKind, JobView, TokenBucket

PACERS = "provisioning.pacers"
_pacers_lock = threading.Lock()


class Pacer:
    """Per-provider limits shared by every worker thread: a token bucket, a semaphore, Retry-After pauses."""

    def __init__(self, rate: float, concurrency: int) -> None:
        self.bucket = TokenBucket(rate) if rate > 0 else None
        self.slots = threading.BoundedSemaphore(concurrency)
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every call to this provider back, as its Retry-After asks."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self.slots:
            wait = self.paused_until - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 60.0))
            if self.bucket is not None:
                self.bucket.take()
            yield


def pacer(bridge: Bridge, provider: Provisioner) -> Pacer:
    """The pacer of this provider (one per provider per process)."""
    with _pacers_lock:
        pacers: dict[str, Pacer] = bridge.extras.setdefault(PACERS, {})
        if provider.name not in pacers:
            pacing = provider.pacing()
            pacers[provider.name] = Pacer(pacing.rate_per_second, pacing.concurrency)
        return pacers[provider.name]


def provisioner(bridge: Bridge, name: str) -> Provisioner | None:
    """The configured provider by this name when it provisions accounts."""
    provider = bridge.provider(name)
    if isinstance(provider, Provisioner) and provider.provisions():
        return provider
    return None


def _call(bridge: Bridge, provider: Provisioner, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one provider operation inside its pacing; ProviderError becomes retry-later or a permanent failure."""
    gate = pacer(bridge, provider)
    try:
        with gate.slot():
            return fn(*args, **kwargs)
    except ProviderError as exc:
        if not exc.retryable:
            raise PermanentFailure(exc.detail) from exc
        if exc.retry_after is not None:
            gate.pause(exc.retry_after)
        raise RetryLater(exc.detail, delay=exc.retry_after) from exc


def _record_attempt(bridge: Bridge, invite_id: str, attempts: int, error: str) -> None:
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        if invite is not None and invite.provisioning_state == ProvisioningState.PENDING:
            invite.provisioning_attempts = attempts
            invite.provisioning_error = error[:2000]


def _prepare(bridge: Bridge, session: Session, invite: Invite,
             job: JobView) -> tuple[Provisioner, InviteTarget, bool, bool, datetime | None, bool]:
    """What a provisioning attempt needs from the database, read before any IdP call."""
    provider = provisioner(bridge, invite.provider)
    if provider is None:
        raise PermanentFailure(f"provider {invite.provider!r} is not configured to provision accounts")
    org = session.get(Organization, invite.org_id)
    assert org is not None
    if "link" not in job.payload:
        raise PermanentFailure("job has no link (wiped)")
    link = bridge.link(unseal(bridge.settings.secret_key, job.payload["link"]))
    target = invites.target_of(invite, org, link)
    is_keycloak = getattr(provider, "kind", "") == "keycloak"
    # org.keycloak_email: who mails a new Keycloak user (Keycloak's setup mail, ours, or both).
    idp_mail = org.keycloak_email != "ours" if is_keycloak else True
    ours_too = is_keycloak and org.keycloak_email in ("ours", "both")
    started = invite.idp_data.get("create_attempted_at")
    since = datetime.fromisoformat(started) if started else None
    return provider, target, idp_mail, ours_too, since, invite.send_email


def provision_invite(bridge: Bridge, job: JobView) -> None:
    """Create or bind the invitee's IdP account, then queue our invitation mail when one is due."""
    invite_id = job.payload["invite_id"]
    # Reading takes no SQLite write lock: many provisioning threads share one database.
    with read_only(), transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        if invite is None or invite.provisioning_state == ProvisioningState.DONE:
            return  # a rerun after a lost lease: the first run recorded everything
        closed = invites.effective_status(invite) != InviteStatus.PENDING
        if not closed:
            ready = _prepare(bridge, session, invite, job)
    if closed:
        with transaction(bridge.sessions) as session:
            row = session.get(Invite, invite_id)
            if row is not None and row.provisioning_state == ProvisioningState.PENDING:
                row.provisioning_state = ProvisioningState.NONE.value
        return
    provider, target, idp_mail, ours_too, since, send_email = ready

    def before_create() -> None:
        if since is not None:
            return
        with transaction(bridge.sessions) as session:
            row = session.get(Invite, invite_id)
            if row is not None:
                row.idp_data = {**row.idp_data, "create_attempted_at": utcnow().isoformat()}

    try:
        result = _call(bridge, provider, provider.provision, target, idp_mail=idp_mail, since=since,
                       before_create=before_create)
    except (RetryLater, PermanentFailure) as exc:
        _record_attempt(bridge, invite_id, job.attempts, str(exc))
        raise
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        same_account = invite.idp_user_id == result.user_id
        invite.idp_user_id = result.user_id
        invite.idp_user_created = result.created or (same_account and invite.idp_user_created)
        invite.idp_data = {**invite.idp_data, **dict(result.data), "provider": provider.name,
                           "idp_mailed": result.mailed}
        invite.provisioning_state = ProvisioningState.DONE.value
        invite.provisioning_attempts = job.attempts
        invite.provisioning_error = None
        audit.record(session, audit.WORKER, "invite.provisioned", org_id=invite.org_id, target_type="invite",
                     target_id=invite.id, details={"provider": provider.name, "idp_user_id": result.user_id,
                                                   "created": result.created, "idp_mailed": result.mailed})
        if invites.effective_status(invite) != InviteStatus.PENDING:
            # Revoked or expired while we were at the IdP: undo at once.
            jobs.enqueue(session, invites.DEPROVISION_JOB, {"invite_id": invite.id}, org_id=invite.org_id)
        elif send_email and (not result.mailed or ours_too):
            payload = {k: v for k, v in job.payload.items() if k in (*SEALED_KEYS, "invite_id", "inviter")}
            jobs.enqueue(session, invites.SEND_EMAIL_JOB, payload, org_id=invite.org_id,
                         max_attempts=bridge.settings.job_max_attempts)


def provisioning_failed(bridge: Bridge, job: JobView, error: str) -> None:
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


def deprovision_invite(bridge: Bridge, job: JobView) -> None:
    """For a revoked, expired or removed invite: delete the account only if we created it and it is unused."""
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, job.payload["invite_id"])
        if invite is None or not invite.idp_user_id or invites.effective_status(invite) == InviteStatus.PENDING:
            return  # nothing bound, or the invite was reopened by a resend and keeps its account
        provider = provisioner(bridge, invite.provider)
        if provider is None:
            return
        user_id, created = invite.idp_user_id, invite.idp_user_created
    outcome = str(_call(bridge, provider, provider.deprovision, user_id, created=created))
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


def set_account_enabled(bridge: Bridge, job: JobView) -> None:
    """Disable (deactivate) or enable (reactivate) the IdP account bound to a member."""
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
        provider = provisioner(bridge, invite.provider)
        if provider is None:
            return
        user_id, org_id, member_id = invite.idp_user_id, member.org_id, member.id
    outcome = str(_call(bridge, provider, provider.set_enabled, user_id, enabled))
    with transaction(bridge.sessions) as session:
        audit.record(session, audit.WORKER, "member.idp_account_" + ("enabled" if enabled else "disabled"),
                     org_id=org_id, target_type="member", target_id=member_id,
                     details={"idp_user_id": user_id, "outcome": outcome})


def retry(session: Session, bridge: Bridge, actor: Actor, org: Organization, invite_id: str) -> invites.IssuedInvite:
    """Provision a failed invite again; it gets a new link, since links are never stored in the clear."""
    orgs.lock(session, org)
    invite = invites.get_for_update(session, org, invite_id)
    status = invites.effective_status(invite)
    if status != InviteStatus.PENDING or invite.provisioning_state != ProvisioningState.FAILED:
        raise InvalidState(f"invite {invite.id} is {status} with provisioning {invite.provisioning_state}; only a "
                           "pending invite whose provisioning failed can be retried",
                           status=status, provisioning=invite.provisioning_state)
    now = utcnow()
    for link in session.scalars(select(InviteLink).where(InviteLink.invite_id == invite.id,
                                                         InviteLink.superseded_at.is_(None))):
        link.superseded_at = now
    token = invites._new_link(session, invite)
    code = invites._new_code(bridge, invite) if org.require_invite_code else None
    invite.provisioning_attempts = 0
    invite.provisioning_error = None
    invites._dispatch(session, bridge, org, invite, token, code, str(actor))
    audit.record(session, actor, "invite.provisioning_retried", org_id=org.id, target_type="invite",
                 target_id=invite.id)
    session.flush()
    return invites.IssuedInvite(invite, bridge.link(token), code)


def provisioning_kinds() -> dict[str, JobKind]:
    """Job kinds of provisioning, provider-agnostic; pacing is per provider inside the handlers."""
    return {
        invites.PROVISION_JOB: JobKind(run=provision_invite, on_give_up=provisioning_failed, wipe=SEALED_KEYS),
        invites.DEPROVISION_JOB: JobKind(run=deprovision_invite),
        DISABLE_ACCOUNT_JOB: JobKind(run=set_account_enabled),
    }
