"""Protective response headers, generated over the operation registry so a new operation is covered by itself."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp_bridge.bootstrap import create_app
from idp_bridge.bridge import Bridge
from idp_bridge.web.api import OPERATIONS, ROUTE_MODULES, Operation
from idp_bridge.web.headers import carries_secret
from tests.helpers import make_key, make_org

for _module in ROUTE_MODULES:
    importlib.import_module(f"idp_bridge.web.api.{_module}")

# A body each operation accepts, by body model; an operation not listed gets {} (and its 4xx is checked too).
BODIES: dict[str, Any] = {
    "OrgCreate": {"slug": "globex", "name": "Globex"},
    "OrgUpdate": {"name": "Acme Inc"},
    "ApiKeyCreate": {"permissions": ["users:read"]},
    "InviteInput": {"identifier": "new@example.com"},
    "MemberUpdate": {"role": "MEMBER"},
    "EndpointInput": {"url": "http://127.0.0.1:9/in"},
    "EndpointUpdate": {"description": "changed"},
    "BulkInviteBody": {"invites": [{"identifier": "bulk@example.com"}]},
}
# What an issued secret looks like in a body: an API key, a webhook secret, an invite link.
ISSUED_SECRET = re.compile(r'"ibk_[\w-]{20,}"|"whsec_[\w+/=]{20,}"|/invite/[\w-]{20,}')


@dataclass
class World:
    client: FlaskClient
    key: str
    ids: dict[str, str]

    def call(self, op: Operation) -> TestResponse:
        path = "/api/v1" + re.sub(r"\{(\w+)\}", lambda m: self.ids.get(m.group(1), "missing"), op.rule)
        body = BODIES.get(op.body.__name__, {}) if op.body is not None else None
        resp: TestResponse = self.client.open(path, method=op.method, json=body,
                                              headers={"Authorization": f"Bearer {self.key}"})
        return resp


@pytest.fixture(autouse=True)
def local_receivers(settings_overrides: dict[str, Any]) -> None:
    settings_overrides["webhook_allow_networks"] = ["127.0.0.0/8"]


@pytest.fixture
def world(bridge: Bridge) -> World:
    make_org(bridge, "acme")
    client = create_app(bridge=bridge).test_client()
    key = make_key(bridge, None)  # platform-wide, every permission: each operation can succeed
    auth = {"Authorization": f"Bearer {key}"}
    invite = client.post("/api/v1/orgs/acme/invites", json={"identifier": "ada@example.com"}, headers=auth)
    other_key = client.post("/api/v1/orgs/acme/api-keys", json={"permissions": ["users:read"]}, headers=auth)
    endpoint = client.post("/api/v1/orgs/acme/webhook-endpoints", json={"url": "http://127.0.0.1:9/a"},
                           headers=auth)
    assert invite.status_code == other_key.status_code == endpoint.status_code == 201
    ids = {"org": "acme", "invite_id": invite.get_json()["id"], "member_id": invite.get_json()["member_id"],
           "key_id": other_key.get_json()["id"], "endpoint_id": endpoint.get_json()["id"]}
    return World(client, key, ids)


def assert_api_protection(resp: TestResponse) -> None:
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    assert resp.headers.get("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in resp.headers.get("Content-Security-Policy", "")
    assert resp.headers.get("Strict-Transport-Security", "").startswith("max-age=")


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op.method} {op.rule}")
def test_every_api_operation_answers_with_the_protective_headers(world: World, op: Operation) -> None:
    resp = world.call(op)

    assert resp.status_code < 500, resp.get_data(as_text=True)
    assert_api_protection(resp)
    if carries_secret(op.response):
        assert resp.headers.get("Cache-Control") == "no-store", resp.status_code
    if ISSUED_SECRET.search(resp.get_data(as_text=True)):
        # Independent of the schema: whatever actually carries a secret is never stored by a cache.
        assert resp.headers.get("Cache-Control") == "no-store", resp.get_data(as_text=True)


def test_each_operation_that_issues_a_secret_is_found_in_the_registry() -> None:
    issuing = {op.endpoint for op in OPERATIONS if carries_secret(op.response)}

    assert {"create_api_key", "rotate_api_key", "create_endpoint", "rotate_secret", "create_invite",
            "resend_invite", "retry_provisioning"} <= issuing
    assert not {"list_invites", "get_invite", "list_api_keys", "list_endpoints", "list_members"} & issuing


def test_issued_secrets_come_back_with_no_store(world: World) -> None:
    """The registry's secret-carrying operations, each called until it succeeds and really returns a secret."""
    by_name = {op.endpoint: op for op in OPERATIONS}
    for name in ("create_api_key", "rotate_api_key", "create_endpoint", "rotate_secret", "create_invite",
                 "resend_invite"):
        resp = world.call(by_name[name])
        assert resp.status_code in (200, 201), (name, resp.get_json())
        assert ISSUED_SECRET.search(resp.get_data(as_text=True)), name
        assert resp.headers.get("Cache-Control") == "no-store", name


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/api/v1/no-such-thing"])
def test_the_documentation_and_unknown_api_paths_are_protected_too(world: World, path: str) -> None:
    resp = world.client.get(path)

    assert_api_protection(resp)


def test_a_deployment_on_plain_http_sends_no_hsts(settings_overrides: dict[str, Any], bridge: Bridge) -> None:
    from idp_bridge.bootstrap import build
    from idp_bridge.settings import load_settings

    plain = build(load_settings(overrides={**settings_overrides, "public_url": "http://127.0.0.1:8080"},
                                environ={}))
    try:
        resp = create_app(bridge=plain).test_client().get("/openapi.json")
    finally:
        plain.close()

    assert "Strict-Transport-Security" not in resp.headers
    assert resp.headers.get("X-Frame-Options") == "DENY"
