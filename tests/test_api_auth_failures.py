"""Failed API authentication: limited per client address, and refused calls never write attacker text into audit."""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.errors import ConfigError
from idp_bridge.models import AuditEvent
from idp_bridge.permissions import ALL_PERMISSIONS
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction
from idp_bridge.web.api import OPERATIONS, Operation
from tests.dbstate import row_counts
from tests.helpers import make_key, make_org

PATH_PARAM = re.compile(r"\{(\w+)\}")
BAD = {"Authorization": "Bearer ibk_this-key-was-never-issued"}
ATTACKER = {"REMOTE_ADDR": "203.0.113.7"}
NEIGHBOUR = {"REMOTE_ADDR": "203.0.113.8"}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "api_auth_failure_rate_limit": "3/minute"}


def invites(client: FlaskClient, headers: dict[str, str], environ: dict[str, str] = ATTACKER) -> Any:
    return client.get("/api/v1/orgs/acme/invites", headers=headers, environ_base=environ)


def test_failed_authentication_past_the_limit_gets_a_429_problem_with_retry_after(
        bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)

    statuses = [invites(client, headers).status_code for headers in ({}, BAD, {"Authorization": "Basic eDp5"})]
    refused = invites(client, BAD)

    assert statuses == [401, 401, 401]
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    problem = refused.get_json()
    assert problem["status"] == 429 and problem["code"] == "too_many_auth_failures"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Counted per client address: another client is not affected.
    assert invites(client, BAD, NEIGHBOUR).status_code == 401
    documented = client.get("/openapi.json").get_json()["paths"]
    assert all("429" in item[op]["responses"] for item in documented.values() for op in item)


def test_past_the_limit_a_valid_key_from_that_address_is_refused_too_until_the_window_ends(
        bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    key = {"Authorization": f"Bearer {make_key(bridge)}"}
    for _ in range(3):
        invites(client, BAD)
    audited = row_counts(bridge)["audit_events"]

    assert invites(client, key).status_code == 429
    assert invites(client, BAD).status_code == 429
    # Refusals past the limit cost no audit row each.
    assert row_counts(bridge)["audit_events"] == audited
    assert invites(client, key, NEIGHBOUR).status_code == 200


def test_successful_requests_do_not_count_against_the_failure_limit(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    key = {"Authorization": f"Bearer {make_key(bridge)}"}

    ok = [invites(client, key).status_code for _ in range(10)]
    failed = [invites(client, BAD).status_code for _ in range(4)]

    assert ok == [200] * 10
    assert failed == [401, 401, 401, 429]


def test_refusals_for_scope_do_not_count_as_failed_authentication(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    reader = {"Authorization": f"Bearer {make_key(bridge, permissions=['users:read'])}"}

    forbidden = [client.post("/api/v1/orgs/acme/invites", json={"identifier": f"a{n}@example.com"},
                             headers=reader, environ_base=ATTACKER).status_code for n in range(5)]

    assert forbidden == [403] * 5
    assert invites(client, BAD).status_code == 401


def test_the_failure_counters_live_in_the_invite_pages_rate_limit_storage(
        app: Flask, bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge)
    for _ in range(3):
        invites(client, BAD)
    assert invites(client, BAD).status_code == 429

    # One storage for both (rate_limit_storage_url): clearing the pages' limiter clears the API's counters.
    app.extensions["idp_bridge_limiter"].reset()

    assert invites(client, BAD).status_code == 401


def test_a_malformed_failure_limit_names_the_setting(settings_overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as failed:
        load_settings(overrides={**settings_overrides, "api_auth_failure_rate_limit": "lots"}, environ={})
    assert failed.value.setting == "api_auth_failure_rate_limit"


MARK = "zqattackerqz"
JUNK = [
    "A" * 5000,
    "ünïcødé-☃-\U0001d518\U0001d52b-\u202eevil\u200b",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "line\r\nInjected: header",
    "' OR 1=1 --",
    "%00%ff",
]


def audit_text(bridge: Bridge) -> list[str]:
    """Every audit row, all columns, as text."""
    with transaction(bridge.sessions) as session:
        return [" ".join(str(getattr(row, c.key)) for c in AuditEvent.__table__.columns)
                for row in session.scalars(select(AuditEvent))]


def urls_with(op: Operation, junk: str) -> list[str]:
    """The operation's URL with the junk in the org segment, and with a real org and junk in every other one."""
    names = PATH_PARAM.findall(op.rule)
    quoted = quote(junk, safe="")
    variants = [{n: quoted for n in names}]
    if "org" in names and len(names) > 1:
        variants.append({n: ("acme" if n == "org" else quoted) for n in names})
    return ["/api/v1" + PATH_PARAM.sub(lambda m, v=v: v[m.group(1)], op.rule) for v in variants]


def test_no_attacker_chosen_text_ever_becomes_part_of_an_audit_row(bridge: Bridge, client: FlaskClient) -> None:
    acme_id = make_org(bridge)
    make_org(bridge, "other")
    callers = {
        "no key": {},
        "bad key": BAD,
        "another org's key": {"Authorization": f"Bearer {make_key(bridge, 'other', sorted(ALL_PERMISSIONS))}"},
        "own key without the permission": {"Authorization": f"Bearer {make_key(bridge, permissions=['audit:read'])}"},
        "platform key": {"Authorization": f"Bearer {make_key(bridge, None)}"},
    }

    # Each request from its own address, so the failure limit does not cut the refusals short.
    addresses = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))

    def attack(junk: str) -> None:
        """Every operation, every caller, with the junk in the path and in headers."""
        header_value = quote(junk[:200], safe="")
        for op in OPERATIONS:
            for url in urls_with(op, junk):
                for name, headers in callers.items():
                    resp = client.open(url, method=op.method, json={} if op.body else None,
                                       headers={**headers, "X-Forwarded-For": header_value,
                                                "User-Agent": header_value, "X-Request-Id": header_value},
                                       environ_base={"REMOTE_ADDR": next(addresses)})
                    assert resp.status_code < 500, (op.route, name, resp.get_data(as_text=True)[:300])
        assert not [row for row in audit_text(bridge) if MARK in row]

    for junk in JUNK:
        attack(MARK + junk)

    @settings(max_examples=6, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(text=st.text(min_size=1, max_size=300))
    def generated(text: str) -> None:
        attack(MARK + text + MARK)

    generated()
    with transaction(bridge.sessions) as session:
        denied = session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied")).all()
        routes = {op.route for op in OPERATIONS}
        assert denied and all(event.target_id in routes for event in denied)
        # Only acme's own key writes into acme's trail; the stranger's refusals stay in its own org's.
        acme_denials = {event.actor for event in denied if event.org_id == acme_id}
        assert len(acme_denials) == 1

