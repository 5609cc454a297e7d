"""Fixtures for provisioning: a Keycloak realm and a Microsoft tenant faked at the HTTP boundary.

The Keycloak fake is served on a loopback port (the admin client talks to it over real keep-alive HTTP);
the Microsoft fake answers through `responses`, as msal and Graph calls go through requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from sqlalchemy import func, select

from idp_bridge.bridge import Bridge
from idp_bridge.jobs import DONE, FAILED, QUEUED, RUNNING
from idp_bridge.models import Job
from idp_bridge.worker import Worker
from tests.fakes import FakeKeycloak, FakeMicrosoft

KEYCLOAK = {"type": "keycloak", "server_url": "https://kc.test", "realm": "acme", "client_id": "idp-bridge",
            "client_secret": "kc-secret", "rate_limit_per_second": 0, "timeout_seconds": 1.0}
# Longer than the client's timeout: a `timeout` fault leaves the client without an answer.
HANG_S = 1.5


MICROSOFT = FakeMicrosoft()
ENTRA = {"type": "entra", "tenant": MICROSOFT.tenant_id, "client_id": MICROSOFT.client_id,
         "client_secret": MICROSOFT.client_secret, "b2b_invite": True, "rate_limit_per_second": 0}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], keycloak: FakeKeycloak) -> dict[str, Any]:
    """Both provisioning providers configured (they connect only when a job needs them)."""
    served = {**KEYCLOAK, "server_url": keycloak.served_url}
    settings_overrides["providers"] = {"keycloak": served, "entra": dict(ENTRA)}
    return settings_overrides


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


class ServedKeycloak(FakeKeycloak):
    """The fake realm plus the loopback URL it is served at."""

    served_url: str = ""


@pytest.fixture
def keycloak(http: responses.RequestsMock) -> Iterator[ServedKeycloak]:
    fake = ServedKeycloak(redirect_uris=("https://join.test/invite/*",))
    with fake.serve() as url:
        fake.served_url = str(url)
        # The token request goes through requests, which `responses` would otherwise refuse.
        http.add_passthru(str(url))
        yield fake


@pytest.fixture
def microsoft(http: responses.RequestsMock) -> FakeMicrosoft:
    fake = FakeMicrosoft()
    fake.install(http)
    return fake


def job_counts(bridge: Bridge) -> dict[str, int]:
    with bridge.sessions() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        return {status: int(n) for status, n in rows}


def drain(bridge: Bridge, worker: Worker, *, time_limit: float = 60.0) -> dict[str, int]:
    """Run the worker until no job is queued or running (retries included), bounded in time."""
    deadline = time.monotonic() + time_limit
    while time.monotonic() < deadline:
        worker.run_once(time_limit=time_limit)
        counts = job_counts(bridge)
        if not counts.get(QUEUED) and not counts.get(RUNNING):
            return counts
        time.sleep(0.01)
    raise AssertionError(f"jobs still pending after {time_limit}s: {job_counts(bridge)}")


__all__ = ["DONE", "FAILED", "drain", "job_counts"]
