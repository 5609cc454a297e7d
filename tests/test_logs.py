"""Logs: text or JSON lines carrying the request id (accepted or generated, echoed, in problem bodies), the
organization and the job; job failures say why."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge import logs
from idp_bridge.bootstrap import build, create_app, make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.models import Job
from idp_bridge.services import api_keys
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.helpers import Api, make_key, make_org

GENERATED = re.compile(r"[0-9a-f]{32}")
ROOT = str(Path(__file__).resolve().parents[1])


class Captured(logging.Handler):
    """A root handler as `serve` installs it (context filter, a formatter), keeping what it writes."""

    def __init__(self, log_format: logs.LogFormat) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.formatter(log_format))
        self.addFilter(logs.ContextFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured("json")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_an_acceptable_x_request_id_is_kept_echoed_and_put_in_problem_bodies(client: FlaskClient) -> None:
    resp = client.get("/api/v1/orgs/acme/members", headers={"X-Request-ID": "abc123"})
    assert resp.status_code == 401
    assert resp.headers["X-Request-ID"] == "abc123"
    assert resp.get_json()["request_id"] == "abc123"


@pytest.mark.parametrize("sent", ["x" * 129, "two words", "semi;colon", "ünïcode", "-leading-dash", ""])
def test_an_unacceptable_x_request_id_is_replaced_by_a_generated_one(client: FlaskClient, sent: str) -> None:
    resp = client.get("/api/v1/orgs/acme/members", headers={"X-Request-ID": sent})
    assert GENERATED.fullmatch(resp.headers["X-Request-ID"])
    assert resp.get_json()["request_id"] == resp.headers["X-Request-ID"]


def test_without_x_request_id_every_response_gets_a_new_one(client: FlaskClient) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")
    assert GENERATED.fullmatch(first.headers["X-Request-ID"]) and GENERATED.fullmatch(second.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_the_inbound_webhooks_answer_with_a_request_id_too(client: FlaskClient) -> None:
    resp = client.get("/webhooks/keycloak", headers={"X-Request-ID": "hook-1"})
    assert resp.status_code == 405 and resp.headers["X-Request-ID"] == "hook-1"


def test_what_a_request_logs_carries_its_request_id_and_organization(
        bridge: Bridge, client: FlaskClient, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    org_id = make_org(bridge)
    api = Api(client, make_key(bridge))
    touch = api_keys.touch

    def touch_and_log(session: Any, key_id: str) -> None:
        logging.getLogger("idp_bridge.test").warning("inside the request")
        touch(session, key_id)

    monkeypatch.setattr(api_keys, "touch", touch_and_log)
    resp = api.post("/invites", {"identifier": "ada@example.com"}, headers={"X-Request-ID": "req-42"})
    assert resp.status_code == 201
    logging.getLogger("idp_bridge.test").warning("after the request")

    inside, after = [e for e in captured.json() if e["logger"] == "idp_bridge.test"]
    assert inside["message"] == "inside the request"
    assert inside["request_id"] == "req-42" and inside["org"] == org_id
    assert "request_id" not in after and "org" not in after


def test_a_json_line_is_one_object_with_time_level_logger_and_message() -> None:
    logger = logging.getLogger("idp_bridge.test")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "two\nlines %s", ("here",), None)
    unbind = logs.bind(job="job-1")
    try:
        logs.ContextFilter().filter(record)
    finally:
        unbind()
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines here" and entry["level"] == "ERROR" and entry["job"] == "job-1"
    assert entry["logger"] == "idp_bridge.test" and entry["time"].endswith("+00:00")
    assert "request_id" not in entry and "org" not in entry


def test_a_text_line_ends_with_the_context_it_knows() -> None:
    logger = logging.getLogger("idp_bridge.test")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "sent", (), None)
    unbind = logs.bind(request_id="r-1", org="acme")
    try:
        logs.ContextFilter().filter(record)
    finally:
        unbind()
    assert logs.TextFormatter().format(record).endswith("INFO idp_bridge.test: sent [request_id=r-1 org=acme]")


def test_an_exception_is_kept_inside_the_json_line() -> None:
    logger = logging.getLogger("idp_bridge.test")
    try:
        raise TimeoutError("slow relay")
    except TimeoutError:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(logs.JsonFormatter().format(record))
    assert "TimeoutError: slow relay" in entry["exception"]


class SilentFailure:
    """A MailTransport whose relay fails with an exception that has no message."""

    def send(self, message: EmailMessage) -> None:
        raise TimeoutError()


def test_a_failed_job_logs_the_exception_type_under_its_job_and_org(
        settings_overrides: dict[str, Any], captured: Captured) -> None:
    bridge = build(load_settings(overrides=settings_overrides, environ={}), mail=SilentFailure())
    try:
        org_id = make_org(bridge)
        invite = Api(create_app(bridge=bridge).test_client(), make_key(bridge)).invite("ada@example.com")
        assert make_worker(bridge, concurrency=1).run_once()["retry"] == 1
        with transaction(bridge.sessions) as session:
            job = session.scalars(select(Job).where(Job.kind == "send_invite_email")).one()
            job_id, last_error = job.id, job.last_error
    finally:
        bridge.close()

    [failure] = [e for e in captured.json() if "attempt 1 failed" in e["message"]]
    assert failure["message"].endswith("attempt 1 failed: TimeoutError")
    assert failure["job"] == job_id and failure["org"] == org_id and failure["level"] == "WARNING"
    assert last_error == "TimeoutError"
    # The invite link (a secret) is in the job's payload, never in its log.
    assert not any(invite["link"] in line for line in captured.lines)


@pytest.mark.parametrize(("host_setup", "expected"), [
    ("", "json"),
    ("logging.basicConfig(format='host %(message)s')", "host"),
])
def test_configure_logs_in_the_format_asked_unless_the_host_program_set_up_logging(
        host_setup: str, expected: str) -> None:
    code = ("import logging; from idp_bridge import logs; " + (host_setup + "; " if host_setup else "")
            + "logs.configure('json'); logs.configure('json'); logging.getLogger('idp_bridge.x').warning('hi')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    if expected == "json":
        assert json.loads(lines[0])["message"] == "hi"
    else:
        assert lines[0] == "host hi"
