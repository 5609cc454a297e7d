"""The job outbox: enqueue in the caller's transaction; claim, finish and retry for workers."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from idp_bridge.models import Job, utcnow
from idp_bridge.store.ids import new_id
from idp_bridge.store.sql import row_locks, table_of

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"


# Writes a job's result into the transaction that also marks the job done (or records its failed attempt).
Recorder = Callable[[Session], None]


@dataclass(frozen=True)
class JobView:
    """A detached snapshot of a claimed job, handed to handlers."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    org_id: str | None
    # What the job kind's prefetch read for this job in the claiming transaction, if it has one.
    context: Any = None

    @property
    def last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


class RetryLater(Exception):
    """A job asks to run again later; `delay` overrides the backoff (e.g. Retry-After).

    `record` writes what the attempt learned, in the transaction that schedules the retry.
    """

    def __init__(self, message: str, delay: float | None = None, *, record: Recorder | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        self.record = record


class PermanentFailure(Exception):
    """A job cannot succeed by retrying; it fails at once (`record` as for RetryLater)."""

    def __init__(self, message: str, *, record: Recorder | None = None) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped."""

    base: float = 2.0
    cap: float = 3600.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        # Half fixed, half jitter: spreads retries without ever retrying immediately.
        jitter = float((rng or random).uniform(0, ceiling / 2))
        return ceiling / 2 + jitter


def enqueue(session: Session, kind: str, payload: dict[str, Any] | None = None, *,
            org_id: str | None = None, run_after: datetime | None = None, dedupe_key: str | None = None,
            max_attempts: int = 8) -> Job:
    """Add a job to the current unit of work; it becomes visible when that commits."""
    now = utcnow()
    job = Job(**job_row(id=new_id(), kind=kind, payload=payload or {}, org_id=org_id, dedupe_key=dedupe_key,
                        max_attempts=max_attempts, run_after=run_after or now, now=now))
    session.add(job)
    return job


def job_row(*, id: str, kind: str, payload: dict[str, Any], org_id: str | None, dedupe_key: str | None,
            max_attempts: int, run_after: datetime, now: datetime) -> dict[str, Any]:
    """The row of one QUEUED job: the one builder for enqueue() and bulk imports."""
    return {"id": id, "kind": kind, "payload": payload, "org_id": org_id, "dedupe_key": dedupe_key,
            "status": QUEUED, "attempts": 0, "max_attempts": max_attempts, "run_after": run_after,
            "created_at": now}


def claim(session: Session, worker_id: str, *, limit: int, lease_seconds: float,
          kinds: list[str] | None = None) -> list[JobView]:
    """Lease up to `limit` due jobs to this worker (expired leases of crashed workers count as due)."""
    now = utcnow()
    due = or_(
        (Job.status == QUEUED) & (Job.run_after <= now),
        (Job.status == RUNNING) & (Job.locked_until < now),
    )
    pick = select(Job.id).where(due).order_by(Job.run_after).limit(limit)
    if kinds:
        pick = pick.where(Job.kind.in_(kinds))
    # Several workers can claim side by side without waiting on each other's rows (PostgreSQL; SQLite's workers
    # take turns at the write gate).
    ids = list(session.scalars(pick.with_for_update(skip_locked=True)))
    if not ids:
        return []
    until = now + timedelta(seconds=lease_seconds)
    # One statement leases the whole batch and hands back what the handlers need.
    leased = session.execute(
        update(Job).where(Job.id.in_(ids))
        .values(status=RUNNING, locked_by=worker_id, locked_until=until, attempts=Job.attempts + 1)
        .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.org_id),
        execution_options={"synchronize_session": False},
    ).all()
    views = {row.id: JobView(row.id, row.kind, dict(row.payload or {}), row.attempts, row.max_attempts, row.org_id)
             for row in leased}
    return [views[job_id] for job_id in ids if job_id in views]


_jobs = table_of(Job)


def finish(session: Session, job_id: str, worker_id: str, *, clear_payload_keys: tuple[str, ...] = ()) -> bool:
    """Mark a job done if this worker still holds it; returns False when its lease was lost."""
    job = session.get(Job, job_id, with_for_update=row_locks(session))
    if job is None or job.locked_by != worker_id or job.status != RUNNING:
        return False
    job.status = DONE
    job.finished_at = utcnow()
    job.locked_until = None
    job.dedupe_key = None
    if clear_payload_keys:
        job.payload = {k: v for k, v in job.payload.items() if k not in clear_payload_keys}
    return True


_HELD = (_jobs.c.locked_by == bindparam("b_worker")) & (_jobs.c.status == RUNNING)
# Built once: the worker runs these for every job, and building a statement costs about as much as running it.
_FINISH = _jobs.update().where(_jobs.c.id.in_(bindparam("b_ids", expanding=True)), _HELD).values(
    status=DONE, finished_at=bindparam("b_now"), locked_until=None, dedupe_key=None)
_FINISH_WIPED = _jobs.update().where(_jobs.c.id == bindparam("b_id"), _HELD).values(
    status=DONE, finished_at=bindparam("b_now"), locked_until=None, dedupe_key=None, payload=bindparam("b_payload"))
_RETRY = _jobs.update().where(_jobs.c.id == bindparam("b_id"), _HELD).values(
    status=QUEUED, last_error=bindparam("b_error"), locked_until=None, run_after=bindparam("b_run_after"))
_GIVE_UP = _jobs.update().where(_jobs.c.id == bindparam("b_id"), _HELD).values(
    status=FAILED, last_error=bindparam("b_error"), locked_until=None, finished_at=bindparam("b_now"),
    dedupe_key=None, payload=bindparam("b_payload"))


def finish_many(session: Session, worker_id: str, done: Sequence[tuple[JobView, tuple[str, ...]]]) -> None:
    """Mark jobs done in one go (those this worker still holds), dropping each one's secret payload keys."""
    now = utcnow()
    plain = [job.id for job, wipe in done if not any(k in job.payload for k in wipe)]
    if plain:
        session.execute(_FINISH, {"b_ids": plain, "b_worker": worker_id, "b_now": now})
    # A running job's payload is only ever written by its holder, so the claimed snapshot is current.
    wiped = [{"b_id": job.id, "b_worker": worker_id, "b_now": now,
              "b_payload": {k: v for k, v in job.payload.items() if k not in wipe}}
             for job, wipe in done if any(k in job.payload for k in wipe)]
    if wiped:
        session.execute(_FINISH_WIPED, wiped)


def fail(session: Session, job: JobView, worker_id: str, error: str, *, backoff: Backoff,
         delay: float | None = None, permanent: bool = False, wipe: tuple[str, ...] = ()) -> str | None:
    """Record a failed attempt: schedule a retry, or give up after max_attempts.

    Returns the job's new status (QUEUED or FAILED), or None when this worker no longer holds it.
    """
    now = utcnow()
    params: dict[str, Any] = {"b_id": job.id, "b_worker": worker_id, "b_error": error[:2000]}
    if permanent or job.attempts >= job.max_attempts:
        status, stmt = FAILED, _GIVE_UP
        params.update(b_now=now, b_payload={k: v for k, v in job.payload.items() if k not in wipe})
    else:
        status, stmt = QUEUED, _RETRY
        wait = delay if delay is not None else backoff.delay(job.attempts)
        params["b_run_after"] = now + timedelta(seconds=wait)
    result = session.execute(stmt, params)
    return status if result.rowcount else None  # type: ignore[attr-defined]


def release_lost_leases(session: Session) -> int:
    """Requeue jobs whose worker died mid-run (their lease ran out)."""
    result = session.execute(
        update(Job).where(Job.status == RUNNING, Job.locked_until < utcnow())
        .values(status=QUEUED, locked_by=None, locked_until=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def release_leases_of(session: Session, holders: Sequence[str]) -> int:
    """Requeue the running jobs of workers known to be dead, without waiting for their leases to run out.

    `holders` are worker id prefixes (`host:pid:`); only a caller that saw those processes end may pass them.
    """
    if not holders:
        return 0
    held_by_dead = or_(*(Job.locked_by.startswith(prefix, autoescape=True) for prefix in holders))
    result = session.execute(
        update(Job).where(Job.status == RUNNING, held_by_dead)
        .values(status=QUEUED, locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
