"""The `idp-bridge` command: org and key creation, the worker, serve, and clear configuration errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from idp_bridge.bootstrap import build, create_app
from idp_bridge.cli import cli
from idp_bridge.models import ApiKey
from idp_bridge.security import token_hash
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from tests.dbstate import make_active
from tests.helpers import Api

ALL_USER_PERMISSIONS = ["users:invite", "users:read", "users:edit", "users:delete"]


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str | None]:
    """IDP_BRIDGE_* variables for a temp instance dir on the test database (and none of the test runner's)."""
    config = tmp_path / "idp-bridge.toml"
    config.write_text('public_url = "http://127.0.0.1:8080"\n')
    # An explicit key and mail transport: on PostgreSQL serve and worker refuse to run on a key each would
    # generate for itself, or to write mail as files by default.
    return {"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "instance"),
            "IDP_BRIDGE_DATABASE_URL": database_url, "IDP_BRIDGE_SECRET_KEY": "cli-test-secret-key-0123456789",
            "IDP_BRIDGE_MAIL_TRANSPORT": "file",
            "IDP_BRIDGE_TEST_DB": None,
            "IDP_BRIDGE_TEST_PG_ADMIN": None}


def invoke(env: dict[str, str | None], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_the_readme_walkthrough_works_from_the_command_line(env: dict[str, str | None]) -> None:
    code, out, _ = invoke(env, "org", "create", "acme", "--name", "Acme")
    assert code == 0 and "created organization acme" in out
    args = [a for p in ALL_USER_PERMISSIONS for a in ("--permission", p)]
    code, out, err = invoke(env, "api-key", "create", "--org", "acme", *args)
    assert code == 0, err
    key = out.strip().splitlines()[0]
    assert key.startswith("ibk_") and "not shown again" in err

    settings = load_settings(environ={k: v for k, v in env.items() if v is not None})
    bridge = build(settings)
    try:
        with transaction(bridge.sessions) as session:
            stored = session.scalars(select(ApiKey)).one()
            assert stored.key_hash == token_hash(key) and key not in stored.key_hash
        api = Api(create_app(bridge=bridge).test_client(), key)
        ada = api.invite("ada@example.com", role="ADMIN", name="Ada")
        bob = api.invite("bob@example.com")
        assert {i["id"] for i in api.get("/invites").get_json()["items"]} == {ada["id"], bob["id"]}
        resent = api.post(f"/invites/{ada['id']}/resend").get_json()
        assert api.post(f"/invites/{bob['id']}/revoke").status_code == 200

        code, out, err = invoke(env, "worker", "--once")
        assert code == 0 and "0 failed" in out, err
        mails = list((settings.instance_dir / "mail").glob("*.eml"))
        # Bob's invite was revoked and Ada's first link superseded before the worker ran: one mail.
        assert len(mails) == 1
        assert resent["link"].encode() in mails[0].read_bytes()
        assert b"ada@example.com" in mails[0].read_bytes()

        make_active(bridge, ada["member_id"])
        m = f"/members/{ada['member_id']}"
        assert api.get("/members").status_code == 200
        assert api.patch(m, {"role": "MEMBER"}).get_json()["role"] == "MEMBER"
        assert api.post(f"{m}/deactivate").get_json()["status"] == "DEACTIVATED"
        assert api.post(f"{m}/reactivate").get_json()["status"] == "ACTIVE"
        assert api.delete(m).get_json()["status"] == "DELETED"
    finally:
        bridge.close()


def test_a_platform_key_needs_platform_and_not_org(env: dict[str, str | None]) -> None:
    assert invoke(env, "api-key", "create", "--permission", "users:read")[0] == 2
    code, out, _ = invoke(env, "api-key", "create", "--platform", "--permission", "orgs:manage")
    assert code == 0 and out.startswith("ibk_")


def test_cli_input_errors_are_one_clear_line(env: dict[str, str | None]) -> None:
    code, _, err = invoke(env, "org", "create", "Not A Slug", "--name", "X")
    assert code == 2 and "slug" in err and "Traceback" not in err
    invoke(env, "org", "create", "acme", "--name", "Acme")
    code, _, err = invoke(env, "org", "create", "acme", "--name", "Acme")
    assert code == 1 and "already exists" in err
    code, _, err = invoke(env, "api-key", "create", "--org", "ghost", "--permission", "users:read")
    assert code == 1 and "ghost" in err


@pytest.mark.parametrize(("variable", "value", "setting"), [
    ("IDP_BRIDGE_PROVIDERS__CORP__TYPE", "okta", "providers.corp.type"),
    ("IDP_BRIDGE_MAIL_TRANSPORT", "pigeon", "mail_transport"),
])
def test_a_configuration_error_stops_the_cli_naming_the_setting(env: dict[str, str | None], variable: str,
                                                                 value: str, setting: str) -> None:
    code, _, err = invoke({**env, variable: value}, "org", "create", "acme", "--name", "Acme")
    assert code == 2
    assert err.startswith("Error: configuration:") and setting in err and "Traceback" not in err


def test_a_missing_client_secret_stops_serve_with_a_clear_message(env: dict[str, str | None]) -> None:
    bad = {**env, "IDP_BRIDGE_PROVIDERS__CORP__TYPE": "google", "IDP_BRIDGE_PROVIDERS__CORP__CLIENT_ID": "x"}
    code, _, err = invoke(bad, "serve", "--no-worker")
    assert code == 2 and "providers.corp.client_secret" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("idp-bridge")
    return [str(script)] if script.exists() else [shutil.which("idp-bridge") or "idp-bridge"]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.mark.slow
def test_serve_starts_the_service_on_loopback(env: dict[str, str | None]) -> None:
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_BRIDGE_")}
    child_env |= {k: v for k, v in env.items() if v is not None}
    proc = subprocess.Popen([*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--threads", "2", "--no-worker"],
                            env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        status = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    status = resp.status
                    break
            except OSError:
                time.sleep(0.2)
        assert status == 200, proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as resp:
            assert resp.status == 200
    finally:
        stop(proc)


@pytest.mark.slow
def test_metrics_add_up_every_web_worker_and_the_job_worker(env: dict[str, str | None]) -> None:
    """Two gunicorn workers and the job worker count separately; /metrics, from whichever worker, has them all."""
    from prometheus_client.parser import text_string_to_metric_families

    invoke(env, "org", "create", "acme", "--name", "Acme")
    code, out, err = invoke(env, "api-key", "create", "--org", "acme", "--permission", "users:invite")
    assert code == 0, err
    key = out.strip().splitlines()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_BRIDGE_", "PROMETHEUS_"))}
    child_env |= {k: v for k, v in env.items() if v is not None}
    proc = subprocess.Popen([*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2", "--threads", "2"],
                            env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def get(path: str) -> str:
        # A new connection each time: the kernel spreads them over both workers' sockets (SO_REUSEPORT). The
        # timeout is generous: a request the server counted must not be given up on by the client.
        with urllib.request.urlopen(f"{base}{path}", timeout=30) as resp:
            return resp.read().decode()

    def sample(text: str, name: str, **labels: str) -> float:
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    try:
        up = False
        deadline = time.monotonic() + 60
        while not up and time.monotonic() < deadline and proc.poll() is None:
            try:
                get("/healthz")
                up = True
            except OSError:
                time.sleep(0.2)
        assert up, "serve did not come up"
        # Counted from here on: what the probing above cost is whatever /metrics says it was.
        healthz = sample(get("/metrics"), "idp_bridge_http_requests_total", handler="ops.healthz")
        assert healthz >= 1
        for _ in range(30):
            get("/healthz")
            healthz += 1
        invite = urllib.request.Request(f"{base}/api/v1/orgs/acme/invites", method="POST",
                                        data=json.dumps({"identifier": "ada@example.com"}).encode(),
                                        headers={"Authorization": f"Bearer {key}",
                                                 "Content-Type": "application/json"})
        with urllib.request.urlopen(invite, timeout=10) as resp:
            assert resp.status == 201
        mailed = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not mailed:
            text = get("/metrics")
            mailed = sample(text, "idp_bridge_jobs_total", kind="send_invite_email", outcome="done")
            if not mailed:
                time.sleep(0.5)
        assert mailed == 1, "the job worker's run did not show on /metrics"
        for _ in range(6):
            text = get("/metrics")
            assert sample(text, "idp_bridge_http_requests_total", handler="ops.healthz") == healthz
            assert sample(text, "idp_bridge_http_requests_total", handler="api.create_invite", status="201") == 1
        files = {path.name.split("_")[0] for path in Path(env["IDP_BRIDGE_INSTANCE_DIR"] or "").glob("metrics/*.db")}
        assert "counter" in files and "histogram" in files
    finally:
        stop(proc)


def test_serve_refuses_to_start_on_a_bad_config_with_a_non_zero_exit(env: dict[str, str | None]) -> None:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_BRIDGE_")}
    child_env |= {k: v for k, v in env.items() if v is not None}
    child_env["IDP_BRIDGE_PROVIDERS__CORP__TYPE"] = "okta"
    done = subprocess.run([*console_script(), "serve", "--no-worker"], env=child_env, capture_output=True,
                          timeout=60, text=True)
    assert done.returncode == 2
    assert "providers.corp.type" in done.stderr and "Traceback" not in done.stderr


def serve_env(env: dict[str, str | None], **settings: str) -> dict[str, str]:
    """The environment of a `serve` child: the test's instance and database, none of the runner's settings."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_BRIDGE_", "PROMETHEUS_"))}
    child_env |= {k: v for k, v in env.items() if v is not None}
    return child_env | {f"IDP_BRIDGE_{name.upper()}": value for name, value in settings.items()}


def status_of(url: str) -> int:
    """One GET on a new connection (urllib never reuses one), answered with its status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real Redis on a loopback port, for the rate-limit storage of several instances."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("redis-server did not come up")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["default", "redis"])
def test_a_page_rate_limit_holds_for_the_whole_deployment_across_web_workers(
        env: dict[str, str | None], storage: str, request: pytest.FixtureRequest) -> None:
    limit, requests_sent = 20, 60
    settings = {"invite_page_rate_limit": f"{limit}/minute"}
    if storage == "redis":
        settings["rate_limit_storage_url"] = request.getfixturevalue("redis_url")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2", "--threads", "2", "--no-worker"],
                            env=serve_env(env, **settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        up = False
        deadline = time.monotonic() + 60
        while not up and time.monotonic() < deadline and proc.poll() is None:
            try:
                up = status_of(f"{base}/healthz") == 200
            except OSError:
                time.sleep(0.2)
        assert up, proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else "serve did not come up"

        statuses = [status_of(f"{base}/invite/no-such-token") for _ in range(requests_sent)]

        assert statuses.count(404) == limit
        assert statuses.count(429) == requests_sent - limit
    finally:
        stop(proc)


def test_serve_stops_naming_the_setting_when_the_rate_limit_storage_scheme_is_unknown(
        env: dict[str, str | None]) -> None:
    code, _, err = invoke({**env, "IDP_BRIDGE_RATE_LIMIT_STORAGE_URL": "bogus://limits.example"}, "serve",
                          "--no-worker")

    assert code == 2
    assert err.startswith("Error: configuration:") and "rate_limit_storage_url" in err and "Traceback" not in err


def test_serve_stops_naming_the_setting_and_the_extra_when_the_redis_package_is_missing(
        env: dict[str, str | None], tmp_path: Path) -> None:
    # A `redis` package that cannot be imported, found before the installed one: as if it were not installed.
    shadow = tmp_path / "without-redis" / "redis"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("No module named \'redis\'")\n')
    child_env = serve_env(env, rate_limit_storage_url="redis://127.0.0.1:6379/0")
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in [str(shadow.parent), os.environ.get("PYTHONPATH")] if p)

    done = subprocess.run([*console_script(), "serve", "--no-worker"], env=child_env, capture_output=True,
                          timeout=60, text=True)

    assert done.returncode == 2, done.stderr
    assert "rate_limit_storage_url" in done.stderr and "idp-bridge[redis]" in done.stderr
    assert "Traceback" not in done.stderr
