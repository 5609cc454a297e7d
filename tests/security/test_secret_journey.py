"""A whole journey against a real `idp-bridge serve` with its access log on: no secret it issued or received
appears in any byte of its output, any database row, any mail it should not be in, or /metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from idp_bridge.cli import cli
from idp_bridge.models import Base
from tests.fakes.oidc import FakeOP
from tests.webhooks.receiver import Receiver, free_port

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 60.0
WAIT_TIMEOUT_S = 60.0
ALL_ORG_PERMISSIONS = ["users:read", "users:invite", "users:edit", "users:delete", "webhooks:manage",
                       "audit:read", "orgs:manage"]


class ServedOP:
    """The suite's fake OpenID Provider, answering over real HTTP on loopback so a subprocess can log in."""

    def __init__(self) -> None:
        self.port = free_port()
        self.op = FakeOP(f"http://127.0.0.1:{self.port}")
        routes = self.op.routes()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else None
                url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
                prepared = requests.Request(self.command, url, headers=dict(self.headers.items()),
                                            data=body).prepare()
                handler = routes.get((self.command, url.split("?", 1)[0]))
                status, headers, text = handler(prepared) if handler else (404, {}, "")
                payload = text.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def served_op() -> Iterator[ServedOP]:
    op = ServedOP()
    yield op
    op.stop()


def child_env(tmp_path: Path, database_url: str, op: ServedOP, port: int) -> dict[str, str]:
    config = tmp_path / "idp-bridge.toml"
    config.write_text(
        f'public_url = "http://127.0.0.1:{port}"\n'
        'webhook_allow_networks = ["127.0.0.0/8"]\n'
        "worker_poll_seconds = 0.2\n"
        f'[providers.corp]\ntype = "oidc"\nissuer = "{op.op.issuer}"\n'
        f'client_id = "{op.op.client_id}"\nclient_secret = "{op.op.client_secret}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_BRIDGE_")}
    env.update({"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "instance"),
                "IDP_BRIDGE_DATABASE_URL": database_url, "IDP_BRIDGE_SECRET_KEY": "journey-" + os.urandom(16).hex(),
                "IDP_BRIDGE_MAIL_TRANSPORT": "file",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    return env


def run_cli(env: dict[str, str], *args: str) -> tuple[str, str]:
    # CliRunner adds env to the runner's own environment: clear its IDP_BRIDGE_* (IDP_BRIDGE_TEST_DB …).
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IDP_BRIDGE_")}
    result = CliRunner().invoke(cli, list(args), env={**cleared, **env}, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout, result.stderr


def wait_until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def forms_of(secret: str) -> set[str]:
    """A secret as it may be written: raw, percent-encoded, JSON-escaped."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def database_dump(database_url: str) -> str:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                             for row in conn.execute(select(table)))
    finally:
        engine.dispose()


def test_no_secret_of_a_whole_journey_reaches_logs_rows_mail_or_metrics(
        tmp_path: Path, database_url: str, served_op: ServedOP) -> None:
    from tests.test_cli import console_script

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(tmp_path, database_url, served_op, port)
    run_cli(env, "org", "create", "acme", "--name", "Acme", "--require-invite-code")
    out, err = run_cli(env, "api-key", "create", "--org", "acme",
                       *[a for p in ALL_ORG_PERMISSIONS for a in ("--permission", p)])
    first_key = out.strip().splitlines()[0]
    first_key_id = re.search(r"key id (\S+);", err)
    assert first_key.startswith("ibk_") and first_key_id is not None

    receiver = Receiver()
    receiver.start()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "1", "--threads", "4"], env=env, stdout=log, stderr=log,
                                start_new_session=True)
    try:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {first_key}"
        wait_until(lambda: _up(base), "serve to answer /healthz")

        invite = api.post(f"{base}/api/v1/orgs/acme/invites",
                          json={"identifier": "ada@example.com", "provider": "corp"}).json()
        token = urlsplit(invite["link"]).path.rsplit("/", 1)[1]
        code = invite["code"]
        mail_dir = tmp_path / "instance" / "mail"
        wait_until(lambda: list(mail_dir.glob("*.eml")), "the invitation mail")  # the invitee reads it

        browser = requests.Session()
        landing = browser.get(f"{base}/invite/{token}")
        assert landing.status_code == 200
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', landing.text)
        assert csrf is not None
        assert browser.get(f"{base}/invite/{token}/login", allow_redirects=False).status_code == 303
        begun = browser.post(f"{base}/invite/{token}/login", data={"csrf": csrf.group(1), "code": code},
                             allow_redirects=False)
        assert begun.status_code == 303, begun.text
        callback = served_op.op.authorize(begun.headers["Location"],
                                          {"sub": "ada-sub", "email": "ada@example.com", "email_verified": True})
        done = browser.get(f"{base}/auth/callback/corp", params=callback, allow_redirects=False)
        assert done.status_code in (200, 303), done.text

        endpoint = api.post(f"{base}/api/v1/orgs/acme/webhook-endpoints", json={"url": receiver.url}).json()
        rotated = api.post(f"{base}/api/v1/orgs/acme/webhook-endpoints/{endpoint['id']}/rotate-secret").json()
        receiver.secrets = [rotated["secret"]]
        new_key = api.post(f"{base}/api/v1/orgs/acme/api-keys/{first_key_id.group(1)}/rotate").json()["key"]
        api.headers["Authorization"] = f"Bearer {new_key}"
        assert api.post(f"{base}/api/v1/orgs/acme/invites", json={"identifier": "bob@example.com"}).status_code == 201
        assert api.get(f"{base}/api/v1/orgs/acme/audit-events").status_code == 200

        wait_until(lambda: len(list(mail_dir.glob("*.eml"))) >= 2, "the second invitation mail")
        wait_until(lambda: receiver.accepted, "a signed webhook delivery")
        metrics_text = requests.get(f"{base}/metrics", timeout=10).text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        receiver.stop()

    secrets = {"invite token": token, "invite code": code, "OIDC code": callback["code"],
               "OIDC state": callback["state"], "first API key": first_key, "rotated API key": new_key,
               "first webhook secret": endpoint["secret"], "rotated webhook secret": rotated["secret"]}
    output = log_path.read_text(errors="replace")
    # The access log was on and saw the journey.
    assert "GET /invite/" in output and "POST /invite/" in output and "GET /auth/callback/corp?" in output
    places = {"serve output": output, "database": database_dump(database_url), "metrics": metrics_text}
    mails = {m.name: m.read_text(errors="replace") for m in mail_dir.glob("*.eml")}
    invitation = [name for name, text in mails.items() if token in text]
    assert len(invitation) == 1 and code in mails[invitation[0]]
    for name, text in mails.items():
        # The invitation carries its own link and code to the invitee; nothing else carries any secret.
        places[f"mail {name}"] = text if name not in invitation else text.replace(token, "").replace(code, "")
    leaks = [(what, where) for what, secret in secrets.items() for where, text in places.items()
             if any(form in text for form in forms_of(secret))]
    assert leaks == []
    assert "GET /invite/[redacted] " in output and "POST /invite/[redacted]/login " in output
    assert "/auth/callback/corp?code=[redacted]&state=[redacted]" in output


def _up(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
