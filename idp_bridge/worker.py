"""The worker: runs due outbox jobs with retries, backoff and per-kind pacing; sweeps expiries."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from idp_bridge import audit, jobs, logs
from idp_bridge.bridge import Bridge
from idp_bridge.jobs import JobView as JobView  # re-exported: job handlers import it from here
from idp_bridge.jobs import Recorder
from idp_bridge.metrics import JOBS_RUN
from idp_bridge.store.db import transaction

log = logging.getLogger(__name__)


Handler = Callable[[Bridge, JobView], Recorder | None]
GiveUp = Callable[[Bridge, JobView, str], None]
Prefetch = Callable[[Session, list[JobView]], Mapping[str, Any]]


@dataclass
class JobKind:
    """How to run one kind of job.

    `run` may return a Recorder: the worker applies it in the transaction that marks the job done, so a
    job's result and its completion commit together (and several jobs' in one transaction). Recorders
    whose class has a static `record_all(session, recorders)` are applied together, one call per group.
    `RetryLater` and `PermanentFailure` may carry a Recorder too, applied with the failed attempt.
    """

    run: Handler
    on_give_up: GiveUp | None = None
    # Payload keys that hold secrets (sealed links, codes) and are wiped once the job is done.
    wipe: tuple[str, ...] = ()
    # Token-bucket pacing for this kind (jobs per second), e.g. to respect an SMTP relay or IdP limits.
    rate: Callable[[Bridge], float] | None = None
    concurrency: int | None = None
    # Reads what a batch of claimed jobs needs, in the claiming transaction (one query for the batch
    # instead of one per job); a job's entry reaches its handler as `job.context`.
    prefetch: Prefetch | None = None


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
class RunOutcome:
    """How one run of a job ended, waiting to be recorded."""

    job: JobView
    error: str | None = None
    delay: float | None = None
    permanent: bool = False
    record: Recorder | None = None


def reason(exc: BaseException) -> str:
    """Why a run failed, for the log and the job's last error: the exception's type, and its message if any.

    Handlers put no secrets in exception messages (sealed links and codes stay in the payload).
    """
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def worker_id_prefix(pid: int) -> str:
    """How the ids of the workers in process `pid` on this host begin."""
    return f"{socket.gethostname()}:{pid}:"


@dataclass
class Worker:
    """Claims and runs jobs; several workers may share one database."""

    bridge: Bridge
    kinds: Mapping[str, JobKind]
    concurrency: int = 4
    lease_seconds: float = 300.0
    periodic: list[Callable[[Bridge], Any]] = field(default_factory=list)
    worker_id: str = field(default_factory=lambda: f"{worker_id_prefix(os.getpid())}{id(object())}")
    periodic_every: float = 30.0
    # Finished runs wait at most this long to be recorded together with others.
    record_every: float = 0.05
    # With nothing more due at the last look, how often to look again while jobs are still running.
    reclaim_every: float = 0.25
    # Called on every turn of the loop while running forever (see supervisor.Heartbeat): proof of progress.
    heartbeat: Callable[[], None] | None = None
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _last_periodic: float = 0.0

    def backoff(self) -> jobs.Backoff:
        s = self.bridge.settings
        return jobs.Backoff(base=s.job_backoff_base_seconds, cap=s.job_backoff_max_seconds)

    def _bucket(self, kind: str) -> TokenBucket | None:
        spec = self.kinds.get(kind)
        if spec is None or spec.rate is None:
            return None
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets.setdefault(kind, TokenBucket(spec.rate(self.bridge)))
        return bucket

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
            return self._claim(session, limit)

    def _claim(self, session: Session, limit: int) -> list[JobView]:
        claimed = jobs.claim(session, self.worker_id, limit=limit, lease_seconds=self.lease_seconds,
                             kinds=list(self.kinds))
        by_kind: dict[str, list[JobView]] = {}
        for job in claimed:
            if self.kinds[job.kind].prefetch is not None:
                by_kind.setdefault(job.kind, []).append(job)
        if not by_kind:
            return claimed
        contexts: dict[str, Any] = {}
        for kind, batch in by_kind.items():
            prefetch = self.kinds[kind].prefetch
            assert prefetch is not None
            try:
                # A savepoint: a failing read must not cost the claim (the handlers then read for themselves).
                with session.begin_nested():
                    contexts.update(prefetch(session, batch))
            except Exception:
                log.exception("prefetching %d %s jobs failed", len(batch), kind)
        return [replace(job, context=contexts[job.id]) if job.id in contexts else job for job in claimed]

    def execute(self, job: JobView) -> RunOutcome:
        """Run one claimed job's handler (pacing included), logging under the job's id; nothing is recorded yet."""
        unbind = logs.bind(job=job.id, org=job.org_id)
        try:
            return self._run(job)
        finally:
            unbind()

    def _run(self, job: JobView) -> RunOutcome:
        spec = self.kinds[job.kind]
        bucket = self._bucket(job.kind)
        if bucket is not None:
            bucket.take()
        try:
            record = spec.run(self.bridge, job)
        except jobs.RetryLater as exc:
            log.info("job %s (%s) attempt %d will be retried: %s", job.id, job.kind, job.attempts, reason(exc))
            return RunOutcome(job, str(exc), delay=exc.delay, record=exc.record)
        except jobs.PermanentFailure as exc:
            log.warning("job %s (%s) attempt %d cannot succeed: %s", job.id, job.kind, job.attempts, reason(exc))
            return RunOutcome(job, str(exc), permanent=True, record=exc.record)
        except Exception as exc:
            log.warning("job %s (%s) attempt %d failed: %s", job.id, job.kind, job.attempts, reason(exc))
            return RunOutcome(job, reason(exc))
        return RunOutcome(job, record=record if callable(record) else None)

    def run_job(self, job: JobView) -> str:
        """Run one claimed job and record its outcome; returns done, retry or failed."""
        [outcome] = self.record([self.execute(job)])
        return outcome

    def record(self, outcomes: list[RunOutcome]) -> list[str]:
        """Record finished runs in one transaction; returns done, retry or failed for each."""
        return self._sync(outcomes, 0)[0]

    def _sync(self, outcomes: list[RunOutcome], want: int) -> tuple[list[str], list[JobView]]:
        """Record finished runs and lease up to `want` more jobs, in one transaction when all goes well."""
        try:
            with transaction(self.bridge.sessions) as session:
                results = self._apply(session, outcomes)
                claimed = self._claim(session, want) if want else []
        except Exception:
            if not outcomes:
                raise
            log.exception("recording %d job outcomes together failed; recording them one by one", len(outcomes))
            results = [self._record_alone(outcome) for outcome in outcomes]
            try:
                claimed = self.claim(want) if want else []
            except Exception:
                log.exception("claiming jobs failed")
                claimed = []
        self._after(outcomes, results)
        return results, claimed

    def _record_alone(self, outcome: RunOutcome) -> str:
        try:
            with transaction(self.bridge.sessions) as session:
                return self._apply(session, [outcome])[0]
        except Exception as exc:
            if outcome.record is None and outcome.error is not None:
                # Its lease runs out and another run picks it up.
                log.exception("recording the outcome of job %s failed", outcome.job.id)
                return "retry"
            # The result could not be written: the run counts as a failed attempt.
            log.exception("recording the result of job %s failed", outcome.job.id)
            failed = RunOutcome(outcome.job, f"recording the result failed: {type(exc).__name__}: {exc}")
            return self._record_alone(failed)

    def _apply(self, session: Session, outcomes: list[RunOutcome]) -> list[str]:
        results: list[str] = []
        done: list[tuple[JobView, tuple[str, ...]]] = []
        together: dict[Callable[[Session, list[Any]], None], list[Recorder]] = {}
        for outcome in outcomes:
            job, spec = outcome.job, self.kinds[outcome.job.kind]
            if outcome.record is not None:
                # Recorders whose class offers record_all write the whole group's results together.
                record_all = getattr(type(outcome.record), "record_all", None)
                if record_all is not None:
                    together.setdefault(record_all, []).append(outcome.record)
                else:
                    outcome.record(session)
            if outcome.error is None:
                done.append((job, spec.wipe))
                results.append("done")
                continue
            status = jobs.fail(session, job, self.worker_id, outcome.error, backoff=self.backoff(),
                               delay=outcome.delay, permanent=outcome.permanent, wipe=spec.wipe)
            if status == jobs.FAILED:
                log.error("job %s (%s) failed after %d attempts: %s", job.id, job.kind, job.attempts, outcome.error,
                          extra={"job": job.id, "org": job.org_id})
                audit.record(session, audit.WORKER, "job.failed", org_id=job.org_id, target_type="job",
                             target_id=job.id,
                             details={"kind": job.kind, "error": outcome.error[:500], "attempts": job.attempts})
            results.append("failed" if status == jobs.FAILED else "retry")
        for record_all, recorders in together.items():
            record_all(session, recorders)
        if done:
            jobs.finish_many(session, self.worker_id, done)
        return results

    def _after(self, outcomes: list[RunOutcome], results: list[str]) -> None:
        for outcome, result in zip(outcomes, results, strict=True):
            job = outcome.job
            spec = self.kinds[job.kind]
            if result == "failed" and spec.on_give_up is not None:
                try:
                    spec.on_give_up(self.bridge, job, outcome.error or "")
                except Exception:
                    log.exception("give-up hook of job %s failed", job.id)
            JOBS_RUN.labels(job.kind, result).inc()

    def _pump(self, pool: ThreadPoolExecutor, counts: dict[str, int], *, deadline: float, max_claims: int,
              stop: threading.Event | None = None) -> None:
        """Keep `concurrency` jobs running until nothing is due; returns once idle.

        Results are written in groups: every transaction records the runs finished since the last one
        and, when the queue runs short, leases the next jobs.
        """
        backlog: deque[JobView] = deque()
        running: set[Future[RunOutcome]] = set()
        finished: list[RunOutcome] = []
        claims = 0
        drained = False  # the last claim found fewer jobs than asked for: ask again only now and then
        last_sync = last_claim = time.monotonic()
        while True:
            if self.heartbeat is not None:
                self.heartbeat()
            now = time.monotonic()
            halted = (stop is not None and stop.is_set()) or now > deadline or claims >= max_claims
            idle = not running and not backlog
            want = 0
            if not halted and len(backlog) < self.concurrency and (
                    not drained or idle or now - last_claim >= self.reclaim_every):
                want = 2 * self.concurrency - len(backlog)
            if want or (finished and (not running or now - last_sync >= self.record_every
                                      or len(finished) >= self.concurrency)):
                try:
                    results, claimed = self._sync(finished, want)
                except Exception:
                    if not running:
                        raise
                    # Only claiming failed (outcomes are recorded one by one then): finish what runs.
                    log.exception("claiming jobs failed")
                    results, claimed = [], []
                for result in results:
                    counts[result] = counts.get(result, 0) + 1
                finished, last_sync = [], now
                if want:
                    claims += 1
                    drained, last_claim = len(claimed) < want, now
                    backlog.extend(claimed)
                if stop is not None:
                    self.run_periodic()
            while backlog and len(running) < self.concurrency:
                running.add(pool.submit(self.execute, backlog.popleft()))
            if not running:
                if finished:
                    continue
                if not backlog and (halted or (want and drained)):
                    return
                continue
            done, running = wait(running, timeout=self.record_every, return_when=FIRST_COMPLETED)
            finished.extend(future.result() for future in done)

    def run_once(self, *, max_rounds: int = 1000, time_limit: float = 600.0) -> dict[str, int]:
        """Run everything due now (and the periodic tasks), then return counts by outcome."""
        self.run_periodic(force=True)
        counts: dict[str, int] = {"done": 0, "retry": 0, "failed": 0}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="job") as pool:
            self._pump(pool, counts, deadline=time.monotonic() + time_limit, max_claims=max_rounds)
        return counts

    def run_forever(self, stop: threading.Event) -> None:
        """Poll for due jobs until stop is set."""
        poll = self.bridge.settings.worker_poll_seconds
        counts: dict[str, int] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="job") as pool:
            while not stop.is_set():
                if self.heartbeat is not None:
                    self.heartbeat()
                self.run_periodic()
                try:
                    self._pump(pool, counts, deadline=float("inf"), max_claims=1 << 62, stop=stop)
                except Exception:
                    log.exception("claiming or recording jobs failed")
                stop.wait(poll)
