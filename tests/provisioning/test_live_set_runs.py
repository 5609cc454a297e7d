"""The opt-in live Keycloak tests stay runnable: here they run against the Keycloak fake served over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import FakeKeycloak

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_live_keycloak_tests_pass_against_a_keycloak_served_over_http() -> None:
    fake = FakeKeycloak(client_id="live-check", client_secret="live-check-secret", realm="acme")
    with fake.serve() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYCLOAK_", "PYTEST_"))}
        env |= {"KEYCLOAK_URL": str(url), "KEYCLOAK_REALM": "acme", "KEYCLOAK_CLIENT_ID": "live-check",
                "KEYCLOAK_CLIENT_SECRET": "live-check-secret"}
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "live",
                               "tests/provisioning/test_keycloak_live.py"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
    # They really made accounts there (two by the bridge, two set up as pre-existing) and removed them after.
    assert fake.calls["POST /users"] == 4, dict(fake.calls)
    assert fake.users == {}
