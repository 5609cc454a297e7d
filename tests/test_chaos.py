"""Chaos: the job worker is killed mid-run and the disk turns read-only for a while; nothing is lost or left over.

A real `serve --no-worker` and standalone `idp-bridge worker` processes share one SQLite database. Invitations are
queued through the API; the first worker is SIGKILLed while it mails them; the instance directory then turns
read-only (tests/readonly_disk.py) while webhooks keep arriving; once it is writable again a new worker finishes
the run. Every invite gets its mail, a mail is sent twice only for a job the killed worker had leased (and the two
copies are identical, so a receiver can drop one), no job is left queued, running or failed, the events refused
during the outage are stored when sent again, and the processes' logs stay small.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from idp_bridge.bootstrap import build
from idp_bridge.bridge import Bridge
from idp_bridge.inbox import PROCESS_JOB
from idp_bridge.jobs import DONE, RUNNING
from idp_bridge.migrate import upgrade
from idp_bridge.models import InboundEvent, Job
from idp_bridge.settings import load_settings
from tests.conftest import BACKEND
from tests.helpers import make_key, make_org
from tests.readonly_disk import child_env, free_port, read_only, start, stop, wait_healthy

INVITES = 60
KILL_AFTER_MAILS = 10
WEBHOOK_SECRET = "chaos-webhook-secret"
LEASE_SECONDS = 8  # long enough that the second worker never loses a lease it holds, on a loaded machine too
POLLS = 600  # 0.2 s apart: any wait below is bounded in count
pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path) -> Path:
    if BACKEND != "sqlite":
        pytest.skip("the chaos run makes a SQLite instance directory read-only")
    instance = tmp_path / "instance"
    instance.mkdir()
    engine = create_engine(f"sqlite:///{instance / 'idp-bridge.sqlite3'}", poolclass=NullPool)
    upgrade(engine)
    engine.dispose()
    return tmp_path


@pytest.fixture
def settings_env(home: Path) -> dict[str, str]:
    """The deployment's settings, shared by the test's own view of the database and every child."""
    config = home / "idp-bridge.toml"
    # A Keycloak provider for its HMAC-signed events; nothing here calls its (closed) server.
    config.write_text('public_url = "https://join.test"\n'
                      "[providers.keycloak]\n"
                      'type = "keycloak"\nserver_url = "http://127.0.0.1:9"\nrealm = "acme"\n'
                      'client_id = "idp-bridge"\nclient_secret = "kc-secret"\n'
                      f'webhook_secret = "{WEBHOOK_SECRET}"\n')
    instance = home / "instance"
    return {"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(instance),
            "IDP_BRIDGE_DATABASE_URL": f"sqlite:///{instance / 'idp-bridge.sqlite3'}",
            "IDP_BRIDGE_SECRET_KEY": "chaos-secret-key-" + uuid.uuid4().hex,
            "IDP_BRIDGE_JOB_LEASE_SECONDS": str(LEASE_SECONDS), "IDP_BRIDGE_JOB_BACKOFF_BASE_SECONDS": "0.2",
            "IDP_BRIDGE_JOB_BACKOFF_MAX_SECONDS": "1", "IDP_BRIDGE_ACCESS_LOG": "false"}


@pytest.fixture
def deployment(settings_env: dict[str, str]) -> Iterator[Bridge]:
    """The test's own connection to the deployment's database (it reads state; the children do the work)."""
    bridge = build(load_settings(environ=settings_env))
    yield bridge
    bridge.close()


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def keycloak_event(base: str, body: bytes) -> tuple[int, dict[str, str]]:
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return call(f"{base}/webhooks/keycloak", body, {"Content-Type": "application/json",
                                                     "X-Keycloak-Signature": signature})


def login_event() -> bytes:
    """A LOGIN of an account idp-bridge never bound: stored, then processed as a no-op."""
    user = str(uuid.uuid4())
    return json.dumps({"time": int(time.time() * 1000), "realmId": "acme", "uid": str(uuid.uuid4()),
                       "type": "access.LOGIN", "details": {},
                       "authDetails": {"realmId": "acme", "clientId": "idp-bridge", "userId": user}}).encode()


def mails(instance: Path) -> list[Message]:
    return [message_from_bytes(path.read_bytes()) for path in sorted((instance / "mail").glob("*.eml"))]


def jobs_by_status(bridge: Bridge) -> dict[str, int]:
    with bridge.sessions() as session:
        return {status: count for status, count in
                session.execute(select(Job.status, func.count()).group_by(Job.status))}


def running_invites(bridge: Bridge) -> set[str]:
    with bridge.sessions() as session:
        payloads = session.scalars(select(Job.payload).where(Job.status == RUNNING))
        return {str(p["invite_id"]) for p in payloads if "invite_id" in p}


def invite_ids_by_email(bridge: Bridge) -> dict[str, str]:
    from idp_bridge.models import Invite

    with bridge.sessions() as session:
        return {identifier: invite_id for identifier, invite_id in session.execute(select(Invite.identifier,
                                                                                         Invite.id))}


def poll(condition: object, what: str) -> None:
    for _ in range(POLLS):
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_and_a_read_only_disk_lose_no_job_and_no_event_and_keep_the_logs_small(
        home: Path, settings_env: dict[str, str], deployment: Bridge) -> None:
    instance = home / "instance"
    make_org(deployment, member_limit=1000)
    key = make_key(deployment, permissions=["users:invite", "users:read"])
    env = child_env(home, settings_env)
    logs = {name: home / f"{name}.log" for name in ("serve", "worker-1", "worker-2")}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = start(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--threads", "4",
                   "--no-worker"], env, logs["serve"])
    children: list[subprocess.Popen[bytes]] = [serve]
    try:
        wait_healthy(base, serve, logs["serve"])
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for i in range(INVITES):
            status, _ = call(f"{base}/api/v1/orgs/acme/invites",
                             json.dumps({"identifier": f"chaos{i}@example.com"}).encode(), auth)
            assert status == 201

        first = start(["worker", "--concurrency", "4"], env, logs["worker-1"])
        children.append(first)
        poll(lambda: len(mails(instance)) >= KILL_AFTER_MAILS, "the first worker's mails")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        # What it held when it died: mailed but not yet marked done, or not yet mailed.
        leased = running_invites(deployment)
        mailed_before = len(mails(instance))
        assert mailed_before < INVITES, "the first worker finished before it could be killed"

        events = [login_event() for _ in range(5)]
        with read_only(instance):
            refused = [keycloak_event(base, body) for body in events]
            listed, _ = call(f"{base}/api/v1/orgs/acme/invites", headers=auth)
            time.sleep(2)
        assert [status for status, _ in refused] == [503] * len(events)
        assert all(int(headers["Retry-After"]) >= 1 for _, headers in refused)
        assert listed == 200  # reading needs no write

        # Writable again: the IdP sends its events again (after Retry-After), a new worker finishes the run.
        for body in events:
            for _ in range(20):
                status, headers = keycloak_event(base, body)
                if status != 503:
                    break
                time.sleep(int(headers["Retry-After"]))
            assert status == 202
        second = start(["worker", "--concurrency", "4"], env, logs["worker-2"])
        children.append(second)
        poll(lambda: set(jobs_by_status(deployment)) == {DONE}
             and sum(jobs_by_status(deployment).values()) == INVITES + len(events), "every job to be done")
    finally:
        for child in reversed(children):
            stop(child)

    sent = mails(instance)
    per_address = Counter(str(m["To"]) for m in sent)
    addresses = {f"chaos{i}@example.com" for i in range(INVITES)}
    assert set(per_address) == addresses  # every invite got its mail
    ids = invite_ids_by_email(deployment)
    twice = {address for address, count in per_address.items() if count > 1}
    assert all(per_address[a] == 2 for a in twice)
    # Only a job the killed worker held can have been mailed twice, and both copies carry the same invitation.
    assert {ids[a] for a in twice} <= leased
    for address in twice:
        first_copy, second_copy = (m.get_payload(0).get_payload(decode=True) for m in sent if m["To"] == address)
        assert first_copy == second_copy
    with deployment.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == len(events)
        assert session.scalar(select(func.count()).select_from(Job).where(Job.kind == PROCESS_JOB)) == len(events)
    assert jobs_by_status(deployment) == {DONE: INVITES + len(events)}
    # Bounded: a handful of lines per process, not one per attempt, request or poll.
    text = {name: path.read_text(errors="replace") for name, path in logs.items()}
    assert sum(len(t) for t in text.values()) < 20_000, text
    assert all(t.count("Traceback") <= 1 for t in text.values()), text
