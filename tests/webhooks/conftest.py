"""Fixtures for IdP events: providers configured, their HTTP faked at the boundary, a drained worker.

The Keycloak fake is served on a loopback port (the admin client talks to it over real keep-alive HTTP);
the Microsoft and Google fakes answer through `responses`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
import responses
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp_bridge.bridge import Bridge
from idp_bridge.jobs import QUEUED, RUNNING
from idp_bridge.models import Event, InboundEvent, Invite, Job, Member
from idp_bridge.worker import Worker
from tests.fakes import FakeKeycloak, FakeMicrosoft
from tests.helpers import Api, make_key, make_org

KEYCLOAK_WEBHOOK_SECRET = "kc-webhook-secret"
GRAPH_CLIENT_STATE = "graph-client-state-secret"
GOOGLE_CLIENT_ID = "1234-abc.apps.googleusercontent.com"
MICROSOFT = FakeMicrosoft()
PROVIDERS: dict[str, dict[str, Any]] = {
    "keycloak": {"type": "keycloak", "server_url": "https://kc.test", "realm": "acme", "client_id": "idp-bridge",
                 "client_secret": "kc-secret", "rate_limit_per_second": 0,
                 "webhook_secret": KEYCLOAK_WEBHOOK_SECRET, "webhook_username": "kc-hook",
                 "webhook_password": "kc-hook-password"},
    "entra": {"type": "entra", "tenant": MICROSOFT.tenant_id, "client_id": MICROSOFT.client_id,
              "client_secret": MICROSOFT.client_secret, "b2b_invite": True, "rate_limit_per_second": 0,
              "graph_client_state": GRAPH_CLIENT_STATE},
    "google": {"type": "google", "client_id": GOOGLE_CLIENT_ID, "client_secret": "google-secret"},
}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], keycloak: ServedKeycloak) -> dict[str, Any]:
    settings_overrides["providers"] = {name: dict(options) for name, options in PROVIDERS.items()}
    settings_overrides["providers"]["keycloak"]["server_url"] = keycloak.served_url
    return settings_overrides


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # Peers served on loopback (the Keycloak fake, webhook receivers) are reached for real.
        rsps.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+/"))
        yield rsps


class ServedKeycloak(FakeKeycloak):
    """The fake realm plus the loopback URL it is served at (its issuer is built from that URL, as Keycloak's)."""

    served_url: str = ""

    @property
    def issuer(self) -> str:
        return f"{self.served_url or self.base_url}/realms/{self.realm}"


K = TypeVar("K", bound=ServedKeycloak)


def serve_keycloak(fake: K) -> Iterator[K]:
    with fake.serve() as url:
        fake.served_url = str(url).rstrip("/")
        yield fake


@pytest.fixture
def keycloak(http: responses.RequestsMock) -> Iterator[ServedKeycloak]:
    yield from serve_keycloak(ServedKeycloak(redirect_uris=("https://join.test/invite/*",)))


@pytest.fixture
def microsoft(http: responses.RequestsMock) -> FakeMicrosoft:
    fake = FakeMicrosoft()
    fake.install(http)
    return fake


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", member_limit=100)
    return Api(client, make_key(bridge))


def drain(bridge: Bridge, worker: Worker, *, time_limit: float = 60.0) -> None:
    """Run the worker until no job is queued or running, bounded in time."""
    deadline = time.monotonic() + time_limit
    while time.monotonic() < deadline:
        worker.run_once(time_limit=time_limit)
        with bridge.sessions() as session:
            live = session.scalar(select(func.count()).select_from(Job).where(Job.status.in_([QUEUED, RUNNING])))
        if not live:
            return
        time.sleep(0.01)
    raise AssertionError(f"jobs still pending after {time_limit}s")


def member_of(bridge: Bridge, member_id: str) -> Member:
    with bridge.sessions() as session:
        member = session.get(Member, member_id)
        assert member is not None
        session.expunge(member)
        return member


def invite_of(bridge: Bridge, invite_id: str) -> Invite:
    with bridge.sessions() as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        session.expunge(invite)
        return invite


def event_types(bridge: Bridge, member_id: str) -> list[str]:
    with bridge.sessions() as session:
        return list(session.scalars(select(Event.type).where(Event.member_id == member_id)
                                    .order_by(Event.sequence)))


def inbound_count(bridge: Bridge) -> int:
    with bridge.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(InboundEvent)) or 0)
