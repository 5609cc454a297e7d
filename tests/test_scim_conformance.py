"""An independent SCIM checker (scim2-tester) against the SCIM endpoint served over HTTP on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from flask import Flask
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server
from werkzeug.serving import make_server

from idp_bridge.bridge import Bridge
from tests.helpers import make_key, make_org

FAILED = (Status.ERROR, Status.CRITICAL)


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    # Groups are served when they map to roles; the checker makes up its own group names.
    return {**settings_overrides, "scim": {"group_roles": {"Admins": "ADMIN"}}}


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_scim2_tester_finds_no_failure_in_discovery_users_and_groups(bridge: Bridge, served: str) -> None:
    # The checker makes up userNames that are not email addresses: an org matching by link takes them.
    make_org(bridge, member_limit=1000, match="link", scim_send_email=False)
    key = make_key(bridge, "acme", ["scim:provision"])
    with httpx2.Client(base_url=f"{served}/scim/v2/acme/", headers={"Authorization": f"Bearer {key}"},
                       timeout=30) as http:
        results = check_server(SyncSCIMClient(http), resource_types=["User", "Group"])
    ran = [r for r in results if r.status != Status.SKIPPED]
    failures = [f"{r.title} [{r.resource_type}]: {r.reason}" for r in ran if r.status in FAILED]
    assert not failures, "\n".join(failures)
    titles = {r.title for r in ran}
    tags = set().union(*(r.tags for r in ran))
    assert {"discovery", "crud:create", "crud:read", "crud:update", "crud:delete"} <= tags, sorted(tags)
    assert len(titles) >= 10
    checked = {r.resource_type for r in ran}
    assert {"User", "Group"} <= checked, sorted(map(str, checked))
