"""Shared fixtures: a real database per test (SQLite, or PostgreSQL with IDP_BRIDGE_TEST_DB=postgres)."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from idp_bridge.bootstrap import build, create_app, make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.migrate import upgrade
from idp_bridge.settings import load_settings
from idp_bridge.worker import Worker
from tests.dnsserver import LoopbackDNS

PG_ADMIN_URL = os.environ.get("IDP_BRIDGE_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKEND = os.environ.get("IDP_BRIDGE_TEST_DB", "sqlite")
PUBLIC_URL = "https://join.test"


def pytest_report_header() -> str:
    return f"idp-bridge test database: {BACKEND}"


def pg_available() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`postgres` tests run only in the PostgreSQL pass; there a missing server is a failure, not a skip."""
    skip = pytest.mark.skip(reason="PostgreSQL-only test; runs with IDP_BRIDGE_TEST_DB=postgres")
    for item in items:
        if "postgres" in item.keywords and BACKEND != "postgres":
            item.add_marker(skip)


class RecordingMail:
    """A MailTransport that keeps messages in memory (a fake of our own interface)."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self.lock:
            self.sent.append(message)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.sent if str(m["To"]).lower() == address.lower()]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """On PostgreSQL: a migrated template database that each test copies (fast CREATE DATABASE … TEMPLATE)."""
    if BACKEND != "postgres":
        yield None
        return
    assert pg_available(), "IDP_BRIDGE_TEST_DB=postgres but nothing listens on 127.0.0.1:5432"
    name = f"idpb_tpl_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path, pg_template: str | None) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    if pg_template is None:
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
        engine = create_engine(url, poolclass=NullPool)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    name = f"idpb_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _loopback_dns() -> Iterator[LoopbackDNS]:
    server = LoopbackDNS().start()
    yield server
    server.stop()


@pytest.fixture
def dns_server(_loopback_dns: LoopbackDNS) -> LoopbackDNS:
    """The DNS server tests resolve through (never the system's): names a test does not list do not exist."""
    with _loopback_dns.lock:
        _loopback_dns.answers.clear()
        _loopback_dns.txt.clear()
        _loopback_dns.queries.clear()
        _loopback_dns.default = None
        _loopback_dns.on_txt = None
    return _loopback_dns


@pytest.fixture
def settings_overrides(tmp_path: Path, database_url: str, dns_server: LoopbackDNS) -> dict[str, Any]:
    """Settings for this test; tests may add to the dict before `bridge` is built."""
    return {
        # Test peers (webhook receivers, fakes) listen on loopback; tests of the policy itself empty this.
        "webhook_allow_networks": ["127.0.0.0/8", "::1/128"],
        "dns_nameservers": [dns_server.address],
        "instance_dir": str(tmp_path / "instance"),
        "database_url": database_url,
        "public_url": PUBLIC_URL,
        "secret_key": "test-secret-key-" + uuid.uuid4().hex,
        "redirect_allowlist": ["https://app.test/"],
        "support_contact": "help@acme.test",
        # Explicit, as a PostgreSQL deployment must have it (tests that mail for real set smtp).
        "mail_transport": "file",
        "job_backoff_base_seconds": 0.01,
        "job_backoff_max_seconds": 0.05,
        "email_rate_per_second": 1000.0,
    }


@pytest.fixture
def mail() -> RecordingMail:
    return RecordingMail()


@pytest.fixture
def bridge(settings_overrides: dict[str, Any], mail: RecordingMail) -> Iterator[Bridge]:
    settings = load_settings(overrides=settings_overrides, environ={})
    b = build(settings, mail=mail)
    yield b
    b.close()


@pytest.fixture
def app(bridge: Bridge) -> Flask:
    app = create_app(bridge=bridge)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def worker(bridge: Bridge) -> Worker:
    return make_worker(bridge, concurrency=2)
