"""Inbound events on a served instance whose disk turns read-only: 503 with Retry-After, a bounded log, no busy loop.

`idp-bridge serve` runs on SQLite, bound by file modes (see tests/readonly_disk.py).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from idp_bridge.bridge import Bridge
from idp_bridge.migrate import upgrade
from idp_bridge.worker import Worker
from tests.conftest import BACKEND
from tests.fakes import FakeKeycloak
from tests.helpers import Api
from tests.readonly_disk import child_env, cpu_seconds, free_port, read_only, start, stop, wait_healthy

from .conftest import drain, inbound_count, member_of
from .test_keycloak_events import p2_event, provisioned, signed

REFUSED = 40
RECOVERY_ATTEMPTS = 20


@pytest.fixture
def home(tmp_path: Path) -> Path:
    if BACKEND != "sqlite":
        pytest.skip("the served test makes a SQLite instance directory read-only")
    (tmp_path / "instance").mkdir()
    return tmp_path


@pytest.fixture
def database_url(home: Path) -> str:
    url = f"sqlite:///{home / 'instance' / 'idp-bridge.sqlite3'}"
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], home: Path) -> dict[str, Any]:
    settings_overrides["instance_dir"] = str(home / "instance")
    return settings_overrides


def served_config(home: Path, settings: dict[str, Any]) -> dict[str, str]:
    """The serve child's settings: the test's instance, and only the Keycloak provider (its HMAC checks events)."""
    keycloak = settings["providers"]["keycloak"]
    lines = [f"public_url = {json.dumps(settings['public_url'])}", "[providers.keycloak]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in keycloak.items()]
    config = home / "idp-bridge.toml"
    config.write_text("\n".join(lines) + "\n")
    # Without the access log, what the log holds is what the service itself had to say.
    return {"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": settings["instance_dir"],
            "IDP_BRIDGE_DATABASE_URL": settings["database_url"], "IDP_BRIDGE_SECRET_KEY": settings["secret_key"],
            "IDP_BRIDGE_ACCESS_LOG": "false", "IDP_BRIDGE_MAIL_TRANSPORT": "file"}


def post(base: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"{base}/webhooks/keycloak", data=body, headers=signed(body), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.slow
def test_a_read_only_instance_dir_answers_503_with_retry_after_and_a_bounded_log_then_stores_by_itself(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, keycloak: FakeKeycloak, home: Path,
        settings_overrides: dict[str, Any]) -> None:
    invite, user_id = provisioned(bridge, api, worker, keycloak)
    logins = [p2_event("access.LOGIN", user_id) for _ in range(3)]
    env = child_env(home, served_config(home, settings_overrides))
    log = home / "serve.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--threads", "4",
                  "--no-worker"], env, log)
    try:
        wait_healthy(base, proc, log)
        logged_before = log.stat().st_size
        # Read-only before the first event, as found: not even the writers' lock file can be created.
        with read_only(home / "instance"):
            cpu_before = cpu_seconds(proc.pid)
            answers = []
            for i in range(REFUSED):
                answers.append(post(base, logins[i % len(logins)]))
                time.sleep(0.1)
            cpu = cpu_seconds(proc.pid) - cpu_before
        assert [status for status, _, _ in answers] == [503] * REFUSED
        for _, headers, body in answers:
            assert int(headers["Retry-After"]) >= 1
            assert headers["Content-Type"] == "application/problem+json"
            assert json.loads(body)["code"] == "store_unavailable"
        assert inbound_count(bridge) == 0
        # No busy loop: 40 refused requests cost the server a small, fixed amount of CPU however long they took.
        assert cpu < 4.0, f"serve used {cpu:.1f} s of CPU while the disk was read-only"
        during = log.read_bytes()[logged_before:].decode(errors="replace")
        attempts = [line for line in during.splitlines() if "inbox-writer: writing" in line]
        # A line per backoff step (0.5, 1, 2, 4 … s), none per request; no tracebacks.
        assert 1 <= len(attempts) <= 8, during[-3000:]
        assert "Traceback" not in during and len(during) < 8000, during[-3000:]

        # Writable again: each event, sent again after its Retry-After as the IdP would, is stored.
        for body in logins:
            for _ in range(RECOVERY_ATTEMPTS):
                status, headers, _ = post(base, body)
                if status != 503:
                    break
                time.sleep(int(headers["Retry-After"]))
            assert status == 202
        assert inbound_count(bridge) == len(logins)
        assert log.read_text(errors="replace").count("inbox-writer: writing again") == 1
    finally:
        stop(proc)
    # Applied as well: the worker activates the member.
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "ACTIVE"
