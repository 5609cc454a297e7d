"""Provisioning never loses an invite and never makes a second account: faults, crashes, lost leases."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from idp_bridge import audit
from idp_bridge.bootstrap import job_kinds, make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.inputs import InviteInput
from idp_bridge.jobs import JobView, RetryLater
from idp_bridge.models import Invite, Job
from idp_bridge.provisioning import Provisioning
from idp_bridge.services import invites, orgs
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.fakes import FakeKeycloak, FaultPlan
from tests.helpers import make_org

from .conftest import HANG_S, drain


def invite_many(bridge: Bridge, count: int, provider: str = "keycloak") -> list[str]:
    make_org(bridge, "acme", member_limit=count + 10)
    with transaction(bridge.sessions) as session:
        org = orgs.get(session, "acme")
        return [invites.create(session, bridge, audit.CLI, org,
                               InviteInput(identifier=f"user{i}@example.com", provider=provider,
                                           name=f"User {i}")).invite.id
                for i in range(count)]


def assert_one_account_per_invite(bridge: Bridge, keycloak: FakeKeycloak, ids: list[str]) -> None:
    with bridge.sessions() as session:
        rows = list(session.scalars(select(Invite).where(Invite.id.in_(ids))))
    assert [r.provisioning_state for r in rows] == ["done"] * len(ids)
    assert len(keycloak.users) == len(ids)
    for row in rows:
        user = keycloak.users[row.idp_user_id]
        assert user["email"] == row.identifier
        assert row.idp_user_created
    mailed = {e.user_id for e in keycloak.action_emails}
    assert mailed == set(keycloak.users)


@pytest.fixture
def patient(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    # With 30 % of calls failing, a job needs many attempts; backoff stays in milliseconds.
    settings_overrides["job_max_attempts"] = 60
    settings_overrides["providers"]["keycloak"]["timeout_seconds"] = 0.3
    return settings_overrides


@pytest.mark.slow
def test_thirty_percent_faults_lose_no_invite_and_duplicate_no_account(
        patient: dict[str, Any], bridge: Bridge, worker: Worker, keycloak: FakeKeycloak) -> None:
    keycloak.faults = FaultPlan(p_503=0.1, p_429=0.05, p_timeout=0.1, p_commit_then_fail=0.05,
                                retry_after=0, seed=7, hang_s=0.6)
    ids = invite_many(bridge, 300)

    counts = drain(bridge, worker, time_limit=120)

    assert counts.get("failed", 0) == 0
    assert {kind for kind, _, _ in keycloak.faults.injected} >= {"503", "429", "timeout", "commit_503"}
    assert_one_account_per_invite(bridge, keycloak, ids)


@pytest.mark.parametrize("realm_keeps_attributes", [True, False], ids=["marked", "stock-realm"])
def test_a_worker_killed_after_creating_accounts_leaves_one_account_per_invite(
        realm_keeps_attributes: bool, bridge: Bridge, keycloak: FakeKeycloak) -> None:
    keycloak.unmanaged_attributes = realm_keeps_attributes
    ids = invite_many(bridge, 20)
    # The first worker creates every account, then dies before recording anything (no answer to its create).
    keycloak.faults = FaultPlan(script=["commit_timeout"] * 20, hang_s=HANG_S,
                                applies_to=lambda r: r.method == "POST" and r.path.endswith("/users"))
    doomed = Worker(bridge, job_kinds(bridge), concurrency=2, lease_seconds=0.3)
    claimed = doomed.claim(50)
    assert len(claimed) == 20

    dying = Provisioning(bridge)

    def attempt(job: JobView) -> None:
        with pytest.raises(RetryLater):
            dying.provision(bridge, job)

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(attempt, claimed))
    assert len(keycloak.users) == 20
    with bridge.sessions() as session:
        assert {j.status for j in session.scalars(select(Job).where(Job.kind == "provision_invite"))} == {"running"}
    time.sleep(0.4)  # the dead worker's lease runs out

    drain(bridge, make_worker(bridge, concurrency=2))

    assert keycloak.calls["POST /users"] == 20
    assert_one_account_per_invite(bridge, keycloak, ids)
    assert len(keycloak.action_emails) == 20
