"""`serve` on a port that is already taken stops with a clear error, and the server already there keeps its traffic."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import console_script, free_port, invoke, stop

ROOT = str(Path(__file__).resolve().parents[1])


def serve_env(env: dict[str, str | None]) -> dict[str, str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_BRIDGE_", "PROMETHEUS_"))}
    return child | {k: v for k, v in env.items() if v is not None}


def instance_env(tmp_path: Path, database_url: str, name: str) -> dict[str, str | None]:
    """Settings of a second, separate instance (its own instance dir and SQLite database)."""
    config = tmp_path / f"{name}.toml"
    config.write_text('public_url = "http://127.0.0.1:8080"\n')
    url = database_url if name == "first" else f"sqlite:///{tmp_path / (name + '.sqlite3')}"
    return {"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / name),
            "IDP_BRIDGE_DATABASE_URL": url, "IDP_BRIDGE_TEST_DB": None, "IDP_BRIDGE_TEST_PG_ADMIN": None,
            # A shared database (PostgreSQL) needs an explicit key; every instance of a test shares this one.
            "IDP_BRIDGE_SECRET_KEY": "test-secret-key-of-the-serve-port-tests",
            # ... and an explicit mail transport.
            "IDP_BRIDGE_MAIL_TRANSPORT": "file"}


def serve_command(port: int) -> list[str]:
    return [*console_script(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--threads", "2", "--no-worker"]


def second_serve(env: dict[str, str | None], port: int) -> subprocess.CompletedProcess[str]:
    """Start `serve` on the port and wait for it to give up (bounded)."""
    return subprocess.run(serve_command(port), env=serve_env(env), capture_output=True, text=True, timeout=90)


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[int]:
    """Another program listening on a loopback port, with or without SO_REUSEPORT."""
    sock = socket.socket()
    if request.param == "reuse_port":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield int(sock.getsockname()[1])
    sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("listener", ["plain", "reuse_port"], indirect=True)
def test_serve_on_a_port_another_program_listens_on_exits_non_zero_naming_the_address(
        tmp_path: Path, database_url: str, listener: int) -> None:
    done = second_serve(instance_env(tmp_path, database_url, "first"), listener)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{listener}: the address is already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_second_serve_on_the_port_of_a_running_one_exits_and_the_first_keeps_every_request(
        tmp_path: Path, database_url: str) -> None:
    first_env = instance_env(tmp_path, database_url, "first")
    invoke(first_env, "org", "create", "acme", "--name", "Acme")
    code, out, err = invoke(first_env, "api-key", "create", "--org", "acme", "--permission", "users:read")
    assert code == 0, err
    key = out.strip().splitlines()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = subprocess.Popen(serve_command(port), env=serve_env(first_env), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)

    def members_status() -> int:
        # A fresh connection each time: with SO_REUSEPORT the kernel spreads them over every listening socket.
        request = urllib.request.Request(f"{base}/api/v1/orgs/acme/members",
                                         headers={"Authorization": f"Bearer {key}", "Connection": "close"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                json.loads(resp.read())
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    try:
        up = False
        deadline = time.monotonic() + 60
        while not up and time.monotonic() < deadline and first.poll() is None:
            try:
                up = members_status() == 200
            except OSError:
                time.sleep(0.2)
        assert up, "the first serve did not come up"

        # The second instance has its own database, where the first one's key does not exist.
        other_env = instance_env(tmp_path, database_url, "second")
        done = second_serve(other_env, port)
        assert done.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in done.stderr
        assert [members_status() for _ in range(40)] == [200] * 40
        assert first.poll() is None
    finally:
        stop(first)


def test_the_port_check_holds_the_address_for_the_running_server(tmp_path: Path) -> None:
    """While one process holds the claim, a claim on the same address from another process fails at once."""
    port = free_port()
    code = ("import sys, time; from idp_bridge.cli import claim_address; "
            f"held = claim_address('127.0.0.1', {port}); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # Nothing listens yet (the web workers are not up): the claim alone must keep a second server out.
        done = subprocess.run([sys.executable, "-c", f"from idp_bridge.cli import claim_address; "
                               f"claim_address('127.0.0.1', {port})"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": ROOT})
        assert done.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in done.stderr
    finally:
        holder.kill()
        holder.wait(10)
