"""Prometheus metrics of one deployment, added up over its processes, and the /metrics exposition.

`idp-bridge serve` runs several gunicorn worker processes and the job worker as a process of its own; each
counts what it does. The console script's `serve` and `worker` put every process in prometheus_client's
multiprocess mode: values live in small files under PROMETHEUS_MULTIPROC_DIR (default: `metrics/` in the
instance directory) and /metrics adds them up, so whichever web worker answers a scrape reports the whole
deployment, the job worker's counters included. Embedded in another server (create_app), a process reports
its own values unless PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is imported.

Queue figures are read from the database when scraped, so they are right whichever process answers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from idp_bridge.models import Job, utcnow

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The environ key under which the app names the handler of a request (a bounded label, never the raw path).
HANDLER_KEY = "idp_bridge.handler"
UNMATCHED = "unmatched"

HTTP_REQUESTS = Counter("idp_bridge_http_requests_total", "HTTP requests answered, by handler, method and status",
                        ["handler", "method", "status"])
HTTP_SECONDS = Histogram("idp_bridge_http_request_duration_seconds",
                         "Time to produce a response (from the WSGI call to the response body), by handler",
                         ["handler"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                               2.5, 5.0, 10.0))
LOGINS = Counter("idp_bridge_logins_total",
                 "Invitee logins finished at the callback, by provider, outcome and (for refusals) reason",
                 ["provider", "outcome", "reason"])
INBOUND_WEBHOOKS = Counter("idp_bridge_inbound_webhooks_total",
                           "Inbound IdP webhook requests, by endpoint and the status answered",
                           ["endpoint", "status"])
DELIVERIES = Counter("idp_bridge_webhook_deliveries_total",
                     "Outbound webhook delivery attempts, by outcome (succeeded; retrying; failed: no attempt follows)",
                     ["outcome"])
JOBS_RUN = Counter("idp_bridge_jobs_total", "Outbox jobs run, by kind and outcome", ["kind", "outcome"])

# Set by the console script: only its own processes switch the library to files (see share_between_processes).
_console = False


def console_script() -> None:
    """Called by the `idp-bridge` entry point: its serve and worker processes share their metrics."""
    global _console
    _console = True


def share_between_processes(instance_dir: Path, *, sweep: bool) -> Path | None:
    """Put this process (and the processes it starts or forks) in multiprocess mode; returns the directory.

    `sweep`: forget the files of processes that no longer run (at `serve` start: counters of an earlier run
    start again from zero, as a restarted process's do). Only in the console script's processes: a test or an
    embedding server calling the CLI in-process keeps its metrics as they are.
    """
    if not _console:
        return None
    directory = Path(os.environ.get(MULTIPROC_ENV) or instance_dir / "metrics").resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if sweep:
            for path in directory.glob("*.db"):
                if not _alive(_pid_of(path)):
                    path.unlink(missing_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"{directory} is not writable")
    except OSError as exc:
        log.warning("metrics stay per process (each answers /metrics with its own): %s", exc)
        return None
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks where values live when it is first imported, which was before the directory was
    # known; pick again. Every metric here is labelled, so its values are made at first use, after this.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def _pid_of(path: Path) -> int:
    try:
        return int(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_exited(pid: int) -> None:
    """gunicorn's child_exit hook: drop the live-gauge files of a web worker that exited."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _ThisProcess(Collector):
    """This process's own metrics (no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class QueueCollector(Collector):
    """Outbox figures read from the database at scrape time."""

    def __init__(self, bridge: Any, kinds: Iterable[str] = ()) -> None:
        self.bridge = bridge
        # Every job kind gets its series, at 0 when none is waiting, so alerts and rates see them from the start.
        self.kinds = sorted(kinds)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("idp_bridge_database_up", "Whether the database answered this scrape")
        queued = GaugeMetricFamily("idp_bridge_jobs_queued", "Outbox jobs waiting to run, by kind", labels=["kind"])
        failed = GaugeMetricFamily("idp_bridge_jobs_failed", "Outbox jobs that gave up, by kind", labels=["kind"])
        lag = GaugeMetricFamily("idp_bridge_jobs_oldest_due_seconds",
                                "How long the oldest job that is due has been waiting (0 when none is)")
        try:
            with self.bridge.engine.connect() as conn:
                counts = conn.execute(select(Job.kind, Job.status, func.count()).where(
                    Job.status.in_(("queued", "failed"))).group_by(Job.kind, Job.status)).all()
                oldest = conn.scalar(select(func.min(Job.run_after)).where(Job.status == "queued",
                                                                           Job.run_after <= utcnow()))
        except Exception as exc:
            log.warning("metrics: the database did not answer: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        found = {(kind, status): count for kind, status, count in counts}
        for kind in sorted(set(self.kinds) | {kind for kind, _ in found}):
            queued.add_metric([kind], found.get((kind, "queued"), 0))
            failed.add_metric([kind], found.get((kind, "failed"), 0))
        lag.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0)
        yield from (up, queued, failed, lag)


def exposition(bridge: Any, kinds: Iterable[str] = ()) -> bytes:
    """The text exposition of every process's metrics (or this process's) and the queue figures by job kind."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(QueueCollector(bridge, kinds))
    return generate_latest(registry)


def serve_this_process(bridge: Any, kinds: Iterable[str], host: str, port: int) -> Any:
    """Serve this process's metrics and the queue figures on host:port from a daemon thread (a standalone
    worker's `--metrics-port`); returns the server. OSError when the port cannot be bound."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ThisProcess())
    registry.register(QueueCollector(bridge, kinds))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


StartResponse = Callable[..., Any]


class RequestMetrics:
    """WSGI middleware counting every request by the handler that answered it, with its duration.

    The handler label is what the app put under HANDLER_KEY in the environ (a Flask endpoint name, or the
    inbound webhook endpoint), so paths carrying tokens never become label values.
    """

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["500"]

        def start(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = line[:3]
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            handler = environ.get(HANDLER_KEY) or UNMATCHED
            HTTP_REQUESTS.labels(handler, _method(environ), status[0]).inc()
            HTTP_SECONDS.labels(handler).observe(time.perf_counter() - started)


_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def _method(environ: dict[str, Any]) -> str:
    method = environ.get("REQUEST_METHOD", "")
    return method if method in _METHODS else "other"


def count_login(provider: str, outcome: str, reason: str | None = None) -> None:
    LOGINS.labels(provider, outcome, reason or "").inc()
