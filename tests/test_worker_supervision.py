"""The job worker that `serve` runs is restarted when it dies, and /readyz tells when no worker runs or the
database refuses writes."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from idp_bridge import jobs
from idp_bridge.bootstrap import build, create_app
from idp_bridge.bridge import Bridge
from idp_bridge.models import Job, utcnow
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from idp_bridge.supervisor import Heartbeat, WorkerSupervisor, heartbeat_path
from tests.conftest import BACKEND, PG_ADMIN_URL
from tests.test_cli import console_script, free_port, invoke, stop
from tests.test_serve_port import instance_env, serve_env

STARTED = re.compile(r"job worker started \(pid (\d+)\)")


class Lines:
    """Collects a process's stderr lines from a reader thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)

    def worker_pids(self) -> list[int]:
        return [int(m.group(1)) for line in list(self.lines) if (m := STARTED.search(line))]

    def matching(self, needle: str) -> list[str]:
        return [line for line in list(self.lines) if needle in line]


def get(url: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Connection": "close", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"null")


def post_invite(base: str, key: str, email: str) -> int:
    request = urllib.request.Request(f"{base}/api/v1/orgs/acme/invites", method="POST",
                                     data=json.dumps({"identifier": email}).encode(),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=40) as resp:
        return int(resp.status)


def poll_until(check: Any, seconds: float = 60.0, every: float = 0.1) -> Any:
    """Call `check` until it returns something true, at most `seconds`; returns its last answer."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(every)


@pytest.mark.slow
def test_a_killed_job_worker_is_restarted_with_a_log_line_readyz_is_503_meanwhile_and_queued_jobs_get_done(
        tmp_path: Path, database_url: str) -> None:
    env = instance_env(tmp_path, database_url, "first")
    invoke(env, "org", "create", "acme", "--name", "Acme")
    code, out, err = invoke(env, "api-key", "create", "--org", "acme", "--permission", "users:invite")
    assert code == 0, err
    key = out.strip().splitlines()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mail_dir = Path(env["IDP_BRIDGE_INSTANCE_DIR"] or "") / "mail"
    proc = subprocess.Popen([*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--threads", "4"],
                            env=serve_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = Lines(proc)

    def readyz() -> int:
        try:
            return get(f"{base}/readyz")[0]
        except OSError:
            return 0

    try:
        assert poll_until(lambda: readyz() == 200), "".join(log.lines)
        [first_pid] = log.worker_pids()

        # Frozen, the worker cannot take the invitations mailed next: they wait in the outbox when it dies.
        os.kill(first_pid, signal.SIGSTOP)
        with ThreadPoolExecutor(3) as pool:
            posted = [pool.submit(post_invite, base, key, f"user{n}@example.com") for n in range(3)]
            # Should the worker have frozen inside an SQLite write, the kill below frees the database for them.
            wait(posted, timeout=3)
            os.kill(first_pid, signal.SIGKILL)
            assert [f.result() for f in posted] == [201, 201, 201]

        seen: list[int] = []

        def restarted() -> bool:
            seen.append(readyz())
            return len(log.worker_pids()) == 2 and seen[-1] == 200

        assert poll_until(restarted), "".join(log.lines)
        second_pid = log.worker_pids()[1]
        assert second_pid != first_pid
        assert log.matching(f"job worker (pid {first_pid}) was killed by SIGKILL; starting a new one in 1 s")
        assert 503 in seen
        assert poll_until(lambda: len(list(mail_dir.glob("*.eml"))) == 3), "queued invitations were not mailed"
        # One line about the death, one about the new worker: nothing repeats while the new one runs.
        assert len(log.matching("job worker")) == 3
        assert proc.poll() is None
    finally:
        stop(proc)


def test_a_worker_that_keeps_dying_is_restarted_after_pauses_that_double_up_to_a_cap(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="idp_bridge.supervisor")
    now = [0.0]
    beat = tmp_path / "worker.heartbeat"
    beat.write_text("1\n")
    supervisor = WorkerSupervisor([sys.executable, "-c", "raise SystemExit(3)"], beat, min_backoff=1.0,
                                  max_backoff=8.0, healthy_after=60.0, clock=lambda: now[0])
    try:
        supervisor.start()
        for pause in (1.0, 2.0, 4.0, 8.0, 8.0, 8.0):
            assert supervisor.proc is not None
            supervisor.proc.wait(30)
            died_at = now[0]
            pid = supervisor.pid
            supervisor.poll()
            assert supervisor.proc is None and not beat.exists()
            # Polled again and again before the pause is over: nothing starts, nothing more is logged.
            for step in range(10):
                now[0] = died_at + pause * step / 10
                supervisor.poll()
                assert supervisor.proc is None
            now[0] = died_at + pause
            supervisor.poll()
            assert supervisor.proc is not None and supervisor.pid != pid
        deaths = [r for r in caplog.records if "exited with status 3; starting a new one" in r.getMessage()]
        assert len(deaths) == 6

        # A worker that ran for a while before dying is restarted after the shortest pause again.
        assert supervisor.proc is not None
        supervisor.proc.wait(30)
        now[0] += 60.0
        supervisor.poll()
        now[0] += 1.0
        supervisor.poll()
        assert supervisor.proc is not None
    finally:
        supervisor.stop()
    assert supervisor.proc is None
    supervisor.poll()
    assert supervisor.proc is None  # stopped means stopped: no restart


def test_readyz_where_serve_runs_a_job_worker_answers_503_without_a_fresh_heartbeat(
        settings_overrides: dict[str, Any]) -> None:
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        app = create_app(bridge=bridge)
        client = app.test_client()
        assert client.get("/readyz").status_code == 200  # no worker expected (serve --no-worker, tests)
        app.config["READYZ_JOB_WORKER"] = True
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.get_json()["detail"] == "no job worker is running"
        path = heartbeat_path(bridge.settings.instance_dir)
        Heartbeat(path)()
        assert client.get("/readyz").status_code == 200
        # A heartbeat last touched long ago: the worker hangs or died without its supervisor noticing.
        old = path.stat().st_mtime - 3600
        os.utime(path, (old, old))
        assert client.get("/readyz").status_code == 503
    finally:
        bridge.close()


def read_only_database(database_url: str) -> str:
    """The same database, opened so that it refuses every write."""
    if BACKEND != "postgres":
        path = make_url(database_url).database
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    name = make_url(database_url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    admin.dispose()
    return database_url


def test_readyz_answers_503_while_the_database_refuses_writes(settings_overrides: dict[str, Any]) -> None:
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        assert create_app(bridge=bridge).test_client().get("/readyz").status_code == 200
    finally:
        bridge.close()
    settings_overrides["database_url"] = read_only_database(settings_overrides["database_url"])
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    try:
        answer = create_app(bridge=bridge).test_client().get("/readyz")
        assert answer.status_code == 503
        assert answer.get_json()["detail"].startswith("the database refuses writes")
    finally:
        bridge.close()


def test_a_heartbeat_that_cannot_be_removed_does_not_stop_the_supervisor(tmp_path: Path) -> None:
    now = [0.0]
    beat = tmp_path / "worker.heartbeat"
    beat.mkdir()  # unlink() fails on it, as on a read-only instance dir for an unprivileged user
    supervisor = WorkerSupervisor([sys.executable, "-c", "raise SystemExit(1)"], beat, clock=lambda: now[0])
    try:
        supervisor.start()
        assert supervisor.proc is not None
        supervisor.proc.wait(30)
        supervisor.poll()
        assert supervisor.proc is None
        now[0] += 1.0
        supervisor.poll()
        assert supervisor.proc is not None
    finally:
        supervisor.stop()


class StallingSink:
    """aiosmtpd handler that keeps every message it is sent and leaves the first one waiting for its answer."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.stalled = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.content))
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.sleep(30)
            return "451 Try again later"
        return "250 OK"


@pytest.mark.slow
def test_the_job_a_killed_worker_was_running_is_taken_up_by_its_successor_at_once_with_the_same_message_id(
        tmp_path: Path, database_url: str) -> None:
    sink = StallingSink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = instance_env(tmp_path, database_url, "first") | {
        "IDP_BRIDGE_MAIL_TRANSPORT": "smtp", "IDP_BRIDGE_SMTP_HOST": "127.0.0.1",
        "IDP_BRIDGE_SMTP_PORT": str(smtp_port), "IDP_BRIDGE_MAIL_FROM": "access@acme.test"}
    invoke(env, "org", "create", "acme", "--name", "Acme")
    code, out, err = invoke(env, "api-key", "create", "--org", "acme", "--permission", "users:invite")
    assert code == 0, err
    key = out.strip().splitlines()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--threads", "2"],
                            env=serve_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = Lines(proc)
    try:
        assert poll_until(lambda: log.worker_pids()), "".join(log.lines)
        [first_pid] = log.worker_pids()
        assert poll_until(lambda: _up(base)), "".join(log.lines)
        assert post_invite(base, key, "ann@example.com") == 201
        assert sink.stalled.wait(60), "the worker did not start mailing"
        os.kill(first_pid, signal.SIGKILL)

        # Well before the job's lease (job_lease_seconds, 300 s) would have run out.
        assert poll_until(lambda: len(sink.messages) == 2, seconds=60), "".join(log.lines)
        assert log.matching(f"requeued 1 jobs the worker that died (pid {first_pid}) was running")
        stalled, delivered = message_ids_of(sink.messages)
        assert stalled == delivered
    finally:
        stop(proc)
        controller.stop()


def _up(base: str) -> bool:
    try:
        return get(f"{base}/healthz")[0] == 200
    except OSError:
        return False


def message_ids_of(raw: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]) for m in raw]


def test_only_the_jobs_of_the_worker_that_died_are_requeued(bridge: Bridge) -> None:
    with transaction(bridge.sessions) as session:
        for holder in ("web-1:123:1", "web-1:1234:1", "web-2:123:1", "web%1:123:1"):
            job = jobs.enqueue(session, "send_invite_email", {"holder": holder})
            job.status, job.locked_by, job.locked_until = jobs.RUNNING, holder, utcnow() + timedelta(minutes=5)
    with transaction(bridge.sessions) as session:
        assert jobs.release_leases_of(session, ["web-1:123:"]) == 1
    with transaction(bridge.sessions) as session:
        states = {j.payload["holder"]: (j.status, j.locked_by) for j in session.scalars(select(Job))}
    assert states == {"web-1:123:1": ("queued", None), "web-1:1234:1": ("running", "web-1:1234:1"),
                      "web-2:123:1": ("running", "web-2:123:1"), "web%1:123:1": ("running", "web%1:123:1")}
