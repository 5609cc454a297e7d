"""What a real `serve` does with the environment it is given: Kubernetes service links, JSON logs with request
ids, links that follow --port, and no silent file mail on a shared database."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from tests.test_cli import console_script, free_port, invoke, serve_env, stop
from tests.test_serve_port import instance_env

# What Kubernetes injects into every pod of the namespace for a Service named idp-bridge.
SERVICE_LINKS = {"IDP_BRIDGE_PORT": "tcp://10.0.0.1:8080", "IDP_BRIDGE_PORT_8080_TCP": "tcp://10.0.0.1:8080",
                 "IDP_BRIDGE_PORT_8080_TCP_ADDR": "10.0.0.1", "IDP_BRIDGE_PORT_8080_TCP_PORT": "8080",
                 "IDP_BRIDGE_PORT_8080_TCP_PROTO": "tcp", "IDP_BRIDGE_SERVICE_HOST": "10.0.0.1",
                 "IDP_BRIDGE_SERVICE_PORT": "8080"}


class Output:
    """Collects a child's stream line by line on a thread, so a full pipe never blocks it."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[str], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status), dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), dict(exc.headers), exc.read()


def serve(env: dict[str, str], port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--threads", "2", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_serve_starts_beside_kubernetes_service_links_and_logs_json_lines_with_the_request_id(
        tmp_path: Path, database_url: str) -> None:
    env = serve_env(instance_env(tmp_path, database_url, "first")) | SERVICE_LINKS | {"IDP_BRIDGE_LOG_FORMAT": "json"}
    port = free_port()
    proc = serve(env, port, "--no-worker")
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Output(proc.stdout), Output(proc.stderr)
    try:
        assert wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, proc), "\n".join(err.lines)
        status, headers, body = get(f"http://127.0.0.1:{port}/api/v1/orgs/acme/members",
                                    headers={"X-Request-ID": "abc123"})
        assert status == 401 and headers["X-Request-ID"] == "abc123"
        assert json.loads(body)["request_id"] == "abc123"
        assert wait_for(lambda: any(e.get("request_id") == "abc123" for e in out.json()), proc, 20)
    finally:
        stop(proc)

    [access] = [e for e in out.json() if e.get("request_id") == "abc123"]
    assert access["logger"] == "gunicorn.access" and access["level"] == "INFO"
    assert "GET /api/v1/orgs/acme/members" in access["message"] and access["time"]
    # Every line is one JSON object; the service links are named once, their values never.
    entries = err.json()
    warnings = [e["message"] for e in entries if "name no setting" in e["message"]]
    assert warnings and all(name in warnings[0] for name in SERVICE_LINKS)
    assert not any("10.0.0.1" in e["message"] for e in entries)


@pytest.mark.slow
def test_without_public_url_the_mailed_link_and_openapi_follow_the_port_serve_listens_on(
        tmp_path: Path, database_url: str) -> None:
    env = instance_env(tmp_path, database_url, "first")
    Path(env["IDP_BRIDGE_CONFIG"] or "").write_text("")  # no public_url
    assert invoke(env, "org", "create", "acme", "--name", "Acme")[0] == 0
    code, out, err = invoke(env, "api-key", "create", "--org", "acme", "--permission", "users:invite")
    assert code == 0, err
    key = out.strip().splitlines()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(serve_env(env), port)
    assert proc.stdout is not None and proc.stderr is not None
    stderr = Output(proc.stderr)
    Output(proc.stdout)
    mail_dir = Path(env["IDP_BRIDGE_INSTANCE_DIR"] or "") / "mail"
    try:
        assert wait_for(lambda: get(f"{base}/healthz")[0] == 200, proc), "\n".join(stderr.lines)
        servers = json.loads(get(f"{base}/openapi.json")[2])["servers"]
        assert servers == [{"url": base}]
        request = urllib.request.Request(f"{base}/api/v1/orgs/acme/invites", method="POST",
                                         data=json.dumps({"identifier": "ada@example.com"}).encode(),
                                         headers={"Authorization": f"Bearer {key}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            link = json.loads(resp.read())["link"]
        assert link.startswith(f"{base}/invite/")
        assert wait_for(lambda: any(mail_dir.glob("*.eml")), proc), "\n".join(stderr.lines)
    finally:
        stop(proc)
    [mail] = mail_dir.glob("*.eml")
    assert link.encode() in mail.read_bytes()
    assert b"127.0.0.1:8080" not in mail.read_bytes()


SHARED_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/never_connected"


@pytest.mark.parametrize("command", [["serve", "--no-worker"], ["worker", "--once"]])
def test_on_a_shared_database_serve_and_worker_refuse_the_default_file_mail_transport(
        tmp_path: Path, command: list[str]) -> None:
    env: dict[str, str | None] = {
           "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "inst"), "IDP_BRIDGE_DATABASE_URL": SHARED_DATABASE,
           "IDP_BRIDGE_SECRET_KEY": "k" * 40, "IDP_BRIDGE_CONFIG": str(tmp_path / "empty.toml"),
           "IDP_BRIDGE_SMTP_HOST": "smtp.example.com", "IDP_BRIDGE_TEST_DB": None, "IDP_BRIDGE_TEST_PG_ADMIN": None}
    (tmp_path / "empty.toml").write_text("")

    code, _, err = invoke(env, *command)

    assert code == 2
    assert err.startswith("Error: configuration: setting mail_transport:")
    assert 'mail_transport = "smtp"' in err and 'mail_transport = "file"' in err
    assert "Traceback" not in err


def test_the_embedded_database_keeps_the_file_mail_transport_by_default(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
           "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "inst"), "IDP_BRIDGE_CONFIG": str(tmp_path / "empty.toml"),
           "IDP_BRIDGE_DATABASE_URL": None, "IDP_BRIDGE_TEST_DB": None, "IDP_BRIDGE_TEST_PG_ADMIN": None}
    (tmp_path / "empty.toml").write_text("")
    code, out, err = invoke(env, "worker", "--once")
    assert code == 0, err
    assert "0 failed" in out


@pytest.mark.postgres
@pytest.mark.parametrize(("transport", "exit_code"), [(None, 2), ("file", 0)])
def test_on_postgresql_the_worker_runs_only_with_a_mail_transport_set_explicitly(
        tmp_path: Path, database_url: str, transport: str | None, exit_code: int) -> None:
    env = instance_env(tmp_path, database_url, "first") | {"IDP_BRIDGE_MAIL_TRANSPORT": transport}

    code, out, err = invoke(env, "worker", "--once")

    assert code == exit_code, err
    if exit_code:
        assert "mail_transport" in err
    else:
        assert "0 failed" in out
