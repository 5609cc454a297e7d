"""A real `idp-bridge worker` process killed with SIGKILL mid-run, then restarted: one account per invite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from sqlalchemy import func, select

from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite

from .conftest import ServedKeycloak
from .test_provisioning_resilience import assert_one_account_per_invite, invite_many

INVITES = 60
# Each admin call waits this long at the fake, so the run lasts long enough to be killed in the middle.
FAKE_LATENCY_S = 0.05
LEASE_S = 2


@pytest.fixture
def keycloak(http: responses.RequestsMock) -> Iterator[ServedKeycloak]:
    """The fake realm, answering slowly."""
    fake = ServedKeycloak(redirect_uris=("https://join.test/invite/*",))
    with fake.serve(FAKE_LATENCY_S) as url:
        fake.served_url = str(url)
        http.add_passthru(str(url))
        yield fake


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value))


def write_config(path: Path, settings: dict[str, Any]) -> None:
    """The test's settings as a TOML file, so the worker process runs on the same instance."""
    lines = [f"{k} = {_toml(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for name, table in settings.get("providers", {}).items():
        lines.append(f"\n[providers.{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("idp-bridge")
    command = [str(script)] if script.exists() else [shutil.which("idp-bridge") or "idp-bridge"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_BRIDGE_")}
    env["IDP_BRIDGE_CONFIG"] = str(config)
    with log.open("ab") as out:
        return subprocess.Popen([*command, "worker", "--concurrency", "4"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def provisioned(bridge: Bridge) -> int:
    with bridge.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Invite)
                                  .where(Invite.provisioning_state == "done")) or 0)


def wait_for(predicate: Any, *, limit: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"not reached within {limit} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_a_worker_process_killed_mid_run_and_restarted_leaves_one_account_per_invite(
        settings_overrides: dict[str, Any], bridge: Bridge, keycloak: ServedKeycloak, tmp_path: Path) -> None:
    settings_overrides["job_lease_seconds"] = LEASE_S
    config = tmp_path / "worker.toml"
    write_config(config, settings_overrides)
    log = tmp_path / "worker.log"
    ids = invite_many(bridge, INVITES)

    first = start_worker(config, log)
    try:
        # Kill it while accounts are being made: some exist, not every invite is recorded as done.
        wait_for(lambda: len(keycloak.users) >= INVITES // 4, limit=60, proc=first, log=log)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert provisioned(bridge) < INVITES

    second = start_worker(config, log)
    try:
        wait_for(lambda: provisioned(bridge) == INVITES, limit=90, proc=second, log=log)
    finally:
        second.terminate()
        second.wait(20)

    # Every invite has one account and its setup mail (a mail may go twice when the kill fell between
    # Keycloak sending it and the worker recording it; an account never does).
    assert_one_account_per_invite(bridge, keycloak, ids)
