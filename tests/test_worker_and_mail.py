"""The worker and invitation mail: retries, backoff, giving up, SMTP and the .eml outbox; no secret at rest."""

from __future__ import annotations

import base64
import email
import email.policy
import random
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp_bridge.bootstrap import build, create_app, make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.jobs import Backoff
from idp_bridge.models import AuditEvent, InviteLink, Job, utcnow
from idp_bridge.security import token_hash
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.conftest import RecordingMail
from tests.dbstate import dump_all_text
from tests.helpers import Api, make_key, make_org


class FailingMail:
    """A MailTransport whose relay is down for the first `failures` messages."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.sent: list[EmailMessage] = []
        self.lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise ConnectionRefusedError("relay unreachable")
            self.sent.append(message)


def bridge_with(settings_overrides: dict[str, Any], **kw: Any) -> Bridge:
    return build(load_settings(overrides=settings_overrides, environ={}), **kw)


def the_job(bridge: Bridge) -> Job:
    with transaction(bridge.sessions) as session:
        job = session.scalars(select(Job).where(Job.kind == "send_invite_email")).one()
        session.expunge(job)
        return job


def make_due(bridge: Bridge) -> None:
    """Skip the backoff wait by moving run_after into the past (no sleeping in tests)."""
    with transaction(bridge.sessions) as session:
        session.execute(update(Job).where(Job.status == "queued").values(run_after=utcnow()))


@pytest.fixture
def failing_setup(settings_overrides: dict[str, Any]) -> Iterator[tuple[Bridge, FailingMail, Api]]:
    settings_overrides["job_max_attempts"] = 3
    settings_overrides["job_backoff_base_seconds"] = 60
    settings_overrides["job_backoff_max_seconds"] = 600
    transport = FailingMail(failures=2)
    b = bridge_with(settings_overrides, mail=transport)
    make_org(b)
    api = Api(create_app(bridge=b).test_client(), make_key(b))
    yield b, transport, api
    b.close()


def test_a_failed_send_is_retried_after_a_backoff_and_then_delivered(
        failing_setup: tuple[Bridge, FailingMail, Api]) -> None:
    b, transport, api = failing_setup
    api.invite("ann@example.com")
    worker = make_worker(b, concurrency=1)
    assert worker.run_once() == {"done": 0, "retry": 1, "failed": 0}
    job = the_job(b)
    assert job.status == "queued" and job.attempts == 1 and "relay unreachable" in (job.last_error or "")
    assert job.run_after >= utcnow()
    assert worker.run_once() == {"done": 0, "retry": 0, "failed": 0}
    make_due(b)
    assert worker.run_once()["retry"] == 1
    second_wait = the_job(b).run_after
    make_due(b)
    assert worker.run_once()["done"] == 1
    assert the_job(b).status == "done" and len(transport.sent) == 1
    assert second_wait > utcnow()


def test_the_worker_gives_up_after_job_max_attempts_and_wipes_the_sealed_link(
        failing_setup: tuple[Bridge, FailingMail, Api]) -> None:
    b, transport, api = failing_setup
    transport.failures = 100
    api.invite("ann@example.com")
    worker = make_worker(b, concurrency=1)
    outcomes = []
    for _ in range(5):
        make_due(b)
        outcomes.append(worker.run_once())
    assert [o["failed"] for o in outcomes] == [0, 0, 1, 0, 0]
    job = the_job(b)
    assert job.status == "failed" and job.attempts == 3
    assert transport.calls == 3
    assert "link" not in job.payload and "code" not in job.payload
    with transaction(b.sessions) as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "job.failed")).first() is not None


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    backoff = Backoff(base=2.0, cap=60.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (30, 60.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempt


def test_tokens_carry_256_bits_and_only_their_hashes_are_stored_even_after_mailing(
        bridge: Bridge, client: FlaskClient, mail: RecordingMail) -> None:
    make_org(bridge, require_invite_code=True)
    api = Api(client, make_key(bridge))
    issued = api.invite("ann@example.com")
    token = issued["link"].rsplit("/", 1)[1]
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) >= 32  # 256 random bits
    resent = api.post(f"/invites/{issued['id']}/resend").get_json()
    new_token = resent["link"].rsplit("/", 1)[1]
    with transaction(bridge.sessions) as session:
        hashes = set(session.scalars(select(InviteLink.token_hash).where(InviteLink.invite_id == issued["id"])))
    assert hashes == {token_hash(token), token_hash(new_token)}
    stored = dump_all_text(bridge)
    for secret in (token, new_token, issued["code"], resent["code"]):
        assert secret not in stored
    make_worker(bridge).run_once()
    assert mail.to("ann@example.com")
    stored = dump_all_text(bridge)
    for secret in (token, new_token, resent["code"]):
        assert secret not in stored
    with transaction(bridge.sessions) as session:
        payloads = [j.payload for j in session.scalars(select(Job).where(Job.kind == "send_invite_email"))]
    assert payloads and all("link" not in p and "code" not in p for p in payloads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


def test_the_invitation_is_delivered_over_smtp_with_html_and_text(
        settings_overrides: dict[str, Any], smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    settings_overrides.update(mail_transport="smtp", smtp_host="127.0.0.1", smtp_port=port,
                              mail_from="Acme Access <access@acme.test>")
    b = bridge_with(settings_overrides)
    try:
        make_org(b, require_invite_code=True)
        api = Api(create_app(bridge=b).test_client(), make_key(b))
        issued = api.invite("ann@example.com", role="ADMIN", name="Ann")
        assert make_worker(b).run_once()["done"] == 1
    finally:
        b.close()
    [(rcpts, raw)] = sink.messages
    assert rcpts == ["ann@example.com"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Acme" in str(message["Subject"])
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for part in (text, html):
        assert "Acme" in part and "Admin" in part
        assert issued["link"] in part and issued["code"] in part
        assert "help@acme.test" in part
        assert "An admin of Acme" in part
        assert issued["expires_at"][:4] in part
    assert "<a " in html


def test_the_file_transport_writes_eml_files_under_instance_mail(settings_overrides: dict[str, Any]) -> None:
    settings_overrides["mail_transport"] = "file"
    b = bridge_with(settings_overrides)
    try:
        make_org(b)
        api = Api(create_app(bridge=b).test_client(), make_key(b))
        issued = api.invite("ann@example.com")
        make_worker(b).run_once()
        files = list(b.settings.mail_dir.glob("*.eml"))
    finally:
        b.close()
    assert b.settings.mail_dir == b.settings.instance_dir / "mail"
    [path] = files
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ann@example.com"
    assert issued["link"] in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert not list(b.settings.mail_dir.glob("*.tmp"))


def test_a_revoked_invite_is_not_mailed(bridge: Bridge, client: FlaskClient, mail: RecordingMail) -> None:
    make_org(bridge)
    api = Api(client, make_key(bridge))
    issued = api.invite("ann@example.com")
    api.post(f"/invites/{issued['id']}/revoke")
    make_worker(bridge).run_once()
    assert mail.sent == []


def test_send_email_false_queues_no_mail(bridge: Bridge, client: FlaskClient, mail: RecordingMail) -> None:
    make_org(bridge)
    Api(client, make_key(bridge)).invite("ann@example.com", send_email=False)
    assert make_worker(bridge).run_once()["done"] == 0
    assert mail.sent == []
