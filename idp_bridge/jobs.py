"""The job outbox: enqueue in the caller's transaction; claim, finish and retry for workers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from idp_bridge.models import Job, utcnow

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"


class RetryLater(Exception):
    """A job asks to run again later; `delay` overrides the backoff (e.g. Retry-After)."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentFailure(Exception):
    """A job cannot succeed by retrying; it fails at once."""


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
    job = Job(kind=kind, payload=payload or {}, org_id=org_id, run_after=run_after or utcnow(),
              dedupe_key=dedupe_key, max_attempts=max_attempts, status=QUEUED)
    session.add(job)
    return job


def claim(session: Session, worker_id: str, *, limit: int, lease_seconds: float,
          kinds: list[str] | None = None) -> list[Job]:
    """Lease up to `limit` due jobs to this worker (expired leases of crashed workers count as due)."""
    now = utcnow()
    due = or_(
        (Job.status == QUEUED) & (Job.run_after <= now),
        (Job.status == RUNNING) & (Job.locked_until < now),
    )
    stmt = select(Job).where(due).order_by(Job.run_after).limit(limit)
    if kinds:
        stmt = stmt.where(Job.kind.in_(kinds))
    if session.get_bind().dialect.name == "postgresql":
        # Several workers can claim side by side without waiting on each other's rows.
        stmt = stmt.with_for_update(skip_locked=True)
    jobs = list(session.scalars(stmt))
    until = now + timedelta(seconds=lease_seconds)
    for job in jobs:
        job.status = RUNNING
        job.locked_by = worker_id
        job.locked_until = until
        job.attempts += 1
    session.flush()
    return jobs


def finish(session: Session, job_id: str, worker_id: str, *, clear_payload_keys: tuple[str, ...] = ()) -> bool:
    """Mark a job done if this worker still holds it; returns False when its lease was lost."""
    job = session.get(Job, job_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if job is None or job.locked_by != worker_id or job.status != RUNNING:
        return False
    job.status = DONE
    job.finished_at = utcnow()
    job.locked_until = None
    job.dedupe_key = None
    if clear_payload_keys:
        job.payload = {k: v for k, v in job.payload.items() if k not in clear_payload_keys}
    return True


def fail(session: Session, job_id: str, worker_id: str, error: str, *, backoff: Backoff,
         delay: float | None = None, permanent: bool = False) -> Job | None:
    """Record a failed attempt: schedule a retry, or give up after max_attempts. Returns the job."""
    job = session.get(Job, job_id)
    if job is None or job.locked_by != worker_id:
        return None
    job.last_error = error[:2000]
    job.locked_until = None
    if permanent or job.attempts >= job.max_attempts:
        job.status = FAILED
        job.finished_at = utcnow()
        job.dedupe_key = None
    else:
        job.status = QUEUED
        wait = delay if delay is not None else backoff.delay(job.attempts)
        job.run_after = utcnow() + timedelta(seconds=wait)
    return job


def release_lost_leases(session: Session) -> int:
    """Requeue jobs whose worker died mid-run (their lease ran out)."""
    result = session.execute(
        update(Job).where(Job.status == RUNNING, Job.locked_until < utcnow())
        .values(status=QUEUED, locked_by=None, locked_until=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
