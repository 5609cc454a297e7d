"""The worker: runs due outbox jobs with retries, backoff and per-kind pacing; sweeps expiries."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from idp_bridge import audit, jobs
from idp_bridge.bridge import Bridge
from idp_bridge.db import transaction

log = logging.getLogger(__name__)

JOBS_RUN = Counter("idp_bridge_jobs_total", "Outbox jobs run, by kind and outcome", ["kind", "outcome"])


@dataclass(frozen=True)
class JobView:
    """A detached snapshot of a claimed job, handed to handlers."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    org_id: str | None

    @property
    def last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


Handler = Callable[[Bridge, JobView], None]
GiveUp = Callable[[Bridge, JobView, str], None]


@dataclass
class JobKind:
    """How to run one kind of job."""

    run: Handler
    on_give_up: GiveUp | None = None
    # Payload keys that hold secrets (sealed links, codes) and are wiped once the job is done.
    wipe: tuple[str, ...] = ()
    # Token-bucket pacing for this kind (jobs per second), e.g. to respect an SMTP relay or IdP limits.
    rate: Callable[[Bridge], float] | None = None
    concurrency: int | None = None


class TokenBucket:
    """Thread-safe token bucket: `take()` waits until a token is free."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def delay(self) -> float:
        """Reserve a token; returns how long to wait before using it."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def take(self) -> None:
        wait = self.delay()
        if wait > 0:
            time.sleep(wait)


@dataclass
class Worker:
    """Claims and runs jobs; several workers may share one database."""

    bridge: Bridge
    kinds: Mapping[str, JobKind]
    concurrency: int = 4
    lease_seconds: float = 300.0
    periodic: list[Callable[[Bridge], Any]] = field(default_factory=list)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{id(object())}")
    periodic_every: float = 30.0
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _last_periodic: float = 0.0

    def backoff(self) -> jobs.Backoff:
        s = self.bridge.settings
        return jobs.Backoff(base=s.job_backoff_base_seconds, cap=s.job_backoff_max_seconds)

    def _bucket(self, kind: str) -> TokenBucket | None:
        spec = self.kinds.get(kind)
        if spec is None or spec.rate is None:
            return None
        if kind not in self._buckets:
            self._buckets[kind] = TokenBucket(spec.rate(self.bridge))
        return self._buckets[kind]

    def run_periodic(self, force: bool = False) -> None:
        """Housekeeping that is not tied to a job (expiry sweep, renewals)."""
        now = time.monotonic()
        if not force and now - self._last_periodic < self.periodic_every:
            return
        self._last_periodic = now
        for task in self.periodic:
            try:
                task(self.bridge)
            except Exception:
                log.exception("periodic task %s failed", getattr(task, "__name__", task))

    def claim(self, limit: int) -> list[JobView]:
        with transaction(self.bridge.sessions) as session:
            claimed = jobs.claim(session, self.worker_id, limit=limit, lease_seconds=self.lease_seconds,
                                 kinds=list(self.kinds))
            return [JobView(j.id, j.kind, dict(j.payload), j.attempts, j.max_attempts, j.org_id) for j in claimed]

    def run_job(self, job: JobView) -> str:
        """Run one claimed job and record its outcome; returns done, retry or failed."""
        spec = self.kinds[job.kind]
        bucket = self._bucket(job.kind)
        if bucket is not None:
            bucket.take()
        try:
            spec.run(self.bridge, job)
        except jobs.RetryLater as exc:
            return self._record_failure(job, str(exc), delay=exc.delay)
        except jobs.PermanentFailure as exc:
            return self._record_failure(job, str(exc), permanent=True)
        except Exception as exc:
            log.warning("job %s (%s) attempt %d failed: %s", job.id, job.kind, job.attempts, exc)
            return self._record_failure(job, f"{type(exc).__name__}: {exc}")
        with transaction(self.bridge.sessions) as session:
            jobs.finish(session, job.id, self.worker_id, clear_payload_keys=spec.wipe)
        JOBS_RUN.labels(job.kind, "done").inc()
        return "done"

    def _record_failure(self, job: JobView, error: str, *, delay: float | None = None,
                        permanent: bool = False) -> str:
        spec = self.kinds[job.kind]
        with transaction(self.bridge.sessions) as session:
            row = jobs.fail(session, job.id, self.worker_id, error, backoff=self.backoff(), delay=delay,
                            permanent=permanent)
            gave_up = row is not None and row.status == jobs.FAILED
            if gave_up and spec.wipe:
                row_payload = {k: v for k, v in row.payload.items() if k not in spec.wipe}  # type: ignore[union-attr]
                row.payload = row_payload  # type: ignore[union-attr]
            if gave_up:
                audit.record(session, audit.WORKER, "job.failed", org_id=job.org_id, target_type="job",
                             target_id=job.id, details={"kind": job.kind, "error": error[:500],
                                                        "attempts": job.attempts})
        if gave_up and spec.on_give_up is not None:
            try:
                spec.on_give_up(self.bridge, job, error)
            except Exception:
                log.exception("give-up hook of job %s failed", job.id)
        outcome = "failed" if gave_up else "retry"
        JOBS_RUN.labels(job.kind, outcome).inc()
        return outcome

    def run_once(self, *, max_rounds: int = 1000, time_limit: float = 600.0) -> dict[str, int]:
        """Run everything due now (and the periodic tasks), then return counts by outcome."""
        self.run_periodic(force=True)
        counts: dict[str, int] = {"done": 0, "retry": 0, "failed": 0}
        deadline = time.monotonic() + time_limit
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="job") as pool:
            for _ in range(max_rounds):
                if time.monotonic() > deadline:
                    break
                batch = self.claim(self.concurrency * 4)
                if not batch:
                    break
                for outcome in pool.map(self.run_job, batch):
                    counts[outcome] += 1
        return counts

    def run_forever(self, stop: threading.Event) -> None:
        """Poll for due jobs until stop is set."""
        poll = self.bridge.settings.worker_poll_seconds
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="job") as pool:
            while not stop.is_set():
                self.run_periodic()
                try:
                    batch = self.claim(self.concurrency * 4)
                except Exception:
                    log.exception("claiming jobs failed")
                    stop.wait(poll)
                    continue
                if not batch:
                    stop.wait(poll)
                    continue
                list(pool.map(self.run_job, batch))

