"""Who may call the SCIM endpoints: every registered SCIM operation against every kind of caller.

SCIM is not part of the JSON API's registry (its answers are SCIM, not problem+json, and it is described by its
own discovery endpoints, not by /openapi.json): its operations register in `web.scim.SCIM_OPERATIONS`, and this
matrix walks them with the same callers as the API's matrix. Only an org-scoped key holding `scim:provision`,
of the org in the URL, gets past authorization; refusals are audited in the caller's own trail and change nothing.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.permissions import SCIM_PROVISION
from idp_bridge.web.scim import SCIM_OPERATIONS, ScimOperation
from tests.helpers import make_key, make_org
from tests.test_api_authorization import Caller, denials, make_callers, snapshot

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATH_PARAM = re.compile(r"\{(\w+)\}")
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    # As in the API's matrix: hundreds of failed authentications from one address; Groups served.
    return {**settings_overrides, "api_auth_failure_rate_limit": "100000/minute",
            "webhook_allow_networks": ["127.0.0.0/8"], "scim": {"group_roles": {"Admins": "ADMIN"}}}


def allowed(caller: Caller) -> bool:
    return (caller.permissions is not None and not caller.platform and not caller.foreign
            and SCIM_PROVISION in caller.permissions)


def user(n: int) -> dict[str, Any]:
    return {"schemas": [CORE], "userName": f"scim{n}@acme.com", "displayName": f"Scim {n}"}


def body_for(op: ScimOperation, n: int, values: dict[str, str]) -> Any:
    if op.method == "POST" and op.rule == "/Users":
        return user(n)
    if op.method == "POST" and op.rule == "/Groups":
        return {"schemas": [GROUP], "displayName": f"Group {n}", "members": [{"value": values["member_id"]}]}
    if op.method == "PUT" and op.rule.startswith("/Groups"):
        return {"schemas": [GROUP], "displayName": f"Renamed {n}", "members": [{"value": values["member_id"]}]}
    if op.method == "PUT":
        return {**user(n), "userName": values["userName"]}
    if op.method == "PATCH":
        return {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "displayName", "value": f"P {n}"}]}
    if op.method == "POST":
        return {"schemas": [SEARCH], "filter": 'userName pr'}
    return None


def test_every_scim_operation_answers_every_kind_of_caller_as_documented(
        app: Flask, bridge: Bridge, client: FlaskClient) -> None:
    acme_id = make_org(bridge, member_limit=100_000)
    other_id = make_org(bridge, "other")
    callers = make_callers(bridge, client, acme_id, other_id)
    provisioner = {"Authorization": f"Bearer {make_key(bridge, 'acme', [SCIM_PROVISION])}"}
    counter = itertools.count(1000)
    routed = {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.rule.startswith("/scim/")
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    registered = {(op.method, "/scim/v2/<org>" + re.sub(r"\{(\w+)\}", r"<\1>", op.rule)) for op in SCIM_OPERATIONS}
    assert routed == registered, "every SCIM route is a registered SCIM operation"

    def fresh() -> dict[str, str]:
        n = next(counter)
        resp = client.post("/scim/v2/acme/Users", data=json.dumps(user(n)), content_type="application/scim+json",
                           headers=provisioner)
        assert resp.status_code == 201, resp.get_json()
        member_id = resp.get_json()["id"]
        group = client.post("/scim/v2/acme/Groups", data=json.dumps({"schemas": [GROUP], "displayName": f"G {n}"}),
                            content_type="application/scim+json", headers=provisioner)
        assert group.status_code == 201, group.get_json()
        return {"org": "acme", "member_id": member_id, "userName": f"scim{n}@acme.com", "name": "User",
                "schema_id": CORE, "group_id": group.get_json()["id"]}

    def call(op: ScimOperation, caller: Caller, values: dict[str, str]) -> Any:
        url = "/scim/v2/acme" + PATH_PARAM.sub(lambda m: values[m.group(1)], op.rule)
        body = body_for(op, next(counter), values)
        return client.open(url, method=op.method, data=None if body is None else json.dumps(body),
                           content_type="application/scim+json", headers=caller.headers)

    shared = fresh()
    mismatches: list[str] = []
    before = snapshot(bridge)
    for op, caller in itertools.product(SCIM_OPERATIONS, callers):
        if allowed(caller):
            continue
        seen = {event.id for event in denials(bridge)}
        resp = call(op, caller, shared)
        new = [event for event in denials(bridge) if event.id not in seen]
        status = 401 if caller.permissions is None else 403
        body = resp.get_json(silent=True) or {}
        where = f"{op.route} as {caller.name}: {resp.status_code} {resp.get_data(as_text=True)[:200]}"
        if resp.status_code != status or body.get("status") != str(status) or resp.mimetype != "application/scim+json":
            mismatches.append(f"expected a SCIM {status}: {where}")
        elif len(new) != 1 or new[0].org_id != caller.org_id or new[0].target_id != op.route:
            mismatches.append(f"expected one denial, in the caller's own trail: {where}")
    assert snapshot(bridge) == before, "refused calls change nothing but the audit trail"

    for op, caller in itertools.product(SCIM_OPERATIONS, callers):
        if not allowed(caller):
            continue
        seen = {event.id for event in denials(bridge)}
        resp = call(op, caller, fresh())
        where = f"{op.route} as {caller.name}: {resp.status_code} {resp.get_data(as_text=True)[:200]}"
        if any(event.id not in seen for event in denials(bridge)) or resp.status_code in (401, 403):
            mismatches.append(f"refused although allowed: {where}")
        elif resp.status_code != (501 if op.rule == "/.search" else resp.status_code) or (
                resp.status_code >= 400 and op.rule != "/.search"):
            # A search across resource types is the one documented refusal (501 Not Implemented).
            mismatches.append(f"failed although allowed: {where}")
    assert not mismatches, "\n".join(mismatches)
    assert sum(allowed(c) for c in callers) >= 2 and len(SCIM_OPERATIONS) >= 18
