"""SCIM Groups: served when `[scim.group_roles]` maps them to roles; membership gives members their role."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.models import Event, Member
from tests.helpers import make_key, make_org
from tests.test_api_authorization import snapshot
from tests.test_scim import PATCH, Scim, assert_scim_error, okta_user, rows

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "scim": {"group_roles": {"Owners": "OWNER", "Admins": "ADMIN"}}}


@pytest.fixture
def scim(bridge: Bridge, client: FlaskClient) -> Scim:
    make_org(bridge, member_limit=20)
    return Scim(client, make_key(bridge, "acme", ["scim:provision"]))


def role_of(bridge: Bridge, member_id: str) -> str:
    return str(rows(bridge, Member, id=member_id)[0].role)


def test_group_membership_gives_the_mapped_role_and_leaving_gives_the_default_back(
        bridge: Bridge, scim: Scim) -> None:
    ann = scim.create(okta_user("ann@acme.com"))["id"]
    bob = scim.create(okta_user("bob@acme.com"))["id"]
    resp = scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Admins", "externalId": "g-1",
                                         "members": [{"value": ann}]})
    assert resp.status_code == 201, resp.get_json()
    group = resp.get_json()
    assert [m["value"] for m in group["members"]] == [ann] and group["externalId"] == "g-1"
    assert role_of(bridge, ann) == "ADMIN" and role_of(bridge, bob) == "MEMBER"
    # Entra adds with a capitalised op, Okta removes with a path filter.
    add = {"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members", "value": [{"value": bob}]}]}
    assert scim.call("PATCH", f"/Groups/{group['id']}", add).status_code == 200
    assert role_of(bridge, bob) == "ADMIN"
    remove = {"schemas": [PATCH], "Operations": [{"op": "remove", "path": f'members[value eq "{ann}"]'}]}
    out = scim.call("PATCH", f"/Groups/{group['id']}", remove)
    assert out.status_code == 200 and [m["value"] for m in out.get_json()["members"]] == [bob]
    assert role_of(bridge, ann) == "MEMBER"
    changes = [e.payload["data"] for e in rows(bridge, Event, member_id=ann, type="member.role_changed")]
    assert [c["previous_role"] for c in changes] == ["MEMBER", "ADMIN"]
    assert scim.call("DELETE", f"/Groups/{group['id']}").status_code == 204
    assert role_of(bridge, bob) == "MEMBER"
    assert_scim_error(scim.call("GET", f"/Groups/{group['id']}"), 404)


def test_the_first_mapped_group_listed_wins_and_unmapped_groups_give_nothing(bridge: Bridge, scim: Scim) -> None:
    ann = scim.create(okta_user("ann@acme.com"))["id"]
    for name in ("Sales", "Admins", "Owners"):
        assert scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": name,
                                             "members": [{"value": ann}]}).status_code == 201
    assert role_of(bridge, ann) == "OWNER"
    listed = scim.client.get("/scim/v2/acme/Groups", query_string={"filter": 'displayName eq "Sales"'},
                             headers={"Authorization": f"Bearer {scim.key}"}).get_json()
    assert listed["totalResults"] == 1 and listed["Resources"][0]["displayName"] == "Sales"


def test_bad_group_requests_answer_scim_errors_and_change_nothing(bridge: Bridge, scim: Scim) -> None:
    ann = scim.create(okta_user("ann@acme.com"))["id"]
    scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Admins"})
    before = snapshot(bridge)
    assert_scim_error(scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Admins"}), 409, "uniqueness")
    assert_scim_error(scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "X",
                                                    "members": [{"value": "no-such-user"}]}), 400)
    assert_scim_error(scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Y", "colour": 1}), 400)
    assert snapshot(bridge) == before
    assert role_of(bridge, ann) == "MEMBER"


def test_discovery_lists_groups_only_when_they_map_to_roles(scim: Scim) -> None:
    types = scim.call("GET", "/ResourceTypes").get_json()
    assert sorted(t["name"] for t in types["Resources"]) == ["Group", "User"]
    assert GROUP in {s["id"] for s in scim.call("GET", "/Schemas").get_json()["Resources"]}


def test_a_members_display_is_kept_as_the_directory_sent_it_and_changes_with_it(bridge: Bridge, scim: Scim) -> None:
    ann = scim.create(okta_user("ann@acme.com"))["id"]
    bob = scim.create(okta_user("bob@acme.com"))["id"]
    resp = scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Admins",
                                         "members": [{"value": ann, "display": "Ann A."}, {"value": bob}]})
    assert resp.status_code == 201, resp.get_json()
    group = resp.get_json()
    assert [(m["value"], m.get("display")) for m in group["members"]] == [(ann, "Ann A."), (bob, None)]
    replace = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "members",
                                                   "value": [{"value": ann, "display": "Ann Admin"}]}]}
    out = scim.call("PATCH", f"/Groups/{group['id']}", replace).get_json()
    assert [(m["value"], m.get("display")) for m in out["members"]] == [(ann, "Ann Admin")]
    read = scim.call("GET", f"/Groups/{group['id']}").get_json()
    assert read["members"] == out["members"]
    too_long = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members",
                                                    "value": [{"value": bob, "display": "b" * 257}]}]}
    assert_scim_error(scim.call("PATCH", f"/Groups/{group['id']}", too_long), 400)
    assert scim.call("GET", f"/Groups/{group['id']}").get_json()["members"] == out["members"]
