"""A worker killed after the SMTP server accepted a message re-sends it with the same Message-ID."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from idp_bridge.bootstrap import build, create_app
from idp_bridge.bridge import Bridge
from idp_bridge.models import Job, utcnow
from idp_bridge.services.invites import SEND_EMAIL_JOB
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.helpers import Api, make_key, make_org


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KillingSink:
    """aiosmtpd handler that keeps each message and, when told a pid, SIGKILLs it as the client says QUIT.

    The client sends QUIT only after it has read the 250 for the message: the kill lands exactly between the
    server taking responsibility for the mail and the worker recording the job as done.
    """

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.kill_pid: int | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.content))
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.kill_pid is not None:
            os.kill(self.kill_pid, signal.SIGKILL)
            self.kill_pid = None
        return "221 Bye"


@pytest.fixture
def sink() -> Iterator[tuple[KillingSink, int]]:
    handler = KillingSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def worker_env(overrides: dict[str, Any]) -> dict[str, str]:
    """The settings of this test as IDP_BRIDGE_* variables for a worker process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_BRIDGE_")}
    for name in ("instance_dir", "database_url", "public_url", "secret_key", "mail_transport", "smtp_host",
                 "smtp_port", "mail_from", "support_contact"):
        env[f"IDP_BRIDGE_{name.upper()}"] = str(overrides[name])
    return env


def run_worker_once(env: dict[str, str], sink: KillingSink | None = None) -> subprocess.CompletedProcess[str]:
    """`idp-bridge worker --once` in its own process; with a sink, the sink kills it after the 250."""
    proc = subprocess.Popen([sys.executable, "-m", "idp_bridge.cli", "worker", "--once"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if sink is not None:
        sink.kill_pid = proc.pid
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def message_ids(raw: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]) for m in raw]


def expire_leases(bridge: Bridge) -> None:
    """Let the lease of the killed worker run out, as it would after job_lease_seconds."""
    with transaction(bridge.sessions) as session:
        session.execute(update(Job).where(Job.status == "running")
                        .values(locked_until=utcnow() - timedelta(seconds=1)))


def test_a_worker_killed_after_the_servers_250_resends_with_the_same_message_id_and_a_resend_gets_a_new_one(
        settings_overrides: dict[str, Any], sink: tuple[KillingSink, int]) -> None:
    handler, port = sink
    settings_overrides.update(mail_transport="smtp", smtp_host="127.0.0.1", smtp_port=port,
                              mail_from="Acme Access <access@acme.test>")
    bridge = build(load_settings(overrides=settings_overrides, environ={}))
    env = worker_env(settings_overrides)
    try:
        make_org(bridge)
        api = Api(create_app(bridge=bridge).test_client(), make_key(bridge))
        issued = api.invite("ann@example.com")

        killed = run_worker_once(env, handler)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert len(handler.messages) == 1
        with transaction(bridge.sessions) as session:
            [job] = session.scalars(select(Job).where(Job.kind == SEND_EMAIL_JOB)).all()
            assert job.status == "running"  # the 250 came, the job was never marked done
            job_id = job.id

        expire_leases(bridge)
        again = run_worker_once(env)
        assert again.returncode == 0 and "1 done" in again.stdout, again.stderr
        assert len(handler.messages) == 2
        first, second = message_ids(handler.messages)
        assert first == second == f"<invite.{job_id}@acme.test>"

        resent = api.post(f"/invites/{issued['id']}/resend")
        assert resent.status_code == 200, resent.get_json()
        after_resend = run_worker_once(env)
        assert after_resend.returncode == 0 and "1 done" in after_resend.stdout, after_resend.stderr
        assert len(handler.messages) == 3
        third = message_ids(handler.messages)[2]
        assert third != first and third.endswith("@acme.test>")
    finally:
        bridge.close()
