"""Members through the API: list, export, change role, deactivate, reactivate, remove, bulk."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.dbstate import make_active, row_counts
from tests.helpers import Api, make_key, make_org


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    settings_overrides["providers"] = {"google": {"type": "google", "client_id": "x", "client_secret": "y"}}
    return settings_overrides


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, member_limit=50)
    return Api(client, make_key(bridge))


def member(api: Api, identifier: str, bridge: Bridge | None = None, *, active: bool = False,
           **fields: Any) -> str:
    """Invite someone and return the member id; optionally make them ACTIVE."""
    member_id: str = api.invite(identifier, **fields)["member_id"]
    if active:
        assert bridge is not None
        make_active(bridge, member_id)
    return member_id


def ids(api: Api, query: str) -> set[str]:
    resp = api.get(f"/members?{query}")
    assert resp.status_code == 200, resp.get_json()
    return {m["id"] for m in resp.get_json()["items"]}


def test_members_filter_by_status_role_provider_and_text(api: Api, bridge: Bridge) -> None:
    owner = member(api, "olive@example.com", bridge, active=True, role="OWNER", name="Olive Oyl")
    admin = member(api, "adam@example.com", role="ADMIN")
    google = member(api, "gus@corp.example.com", provider="google")
    gone = member(api, "gone@example.com")
    api.delete(f"/members/{gone}")
    assert ids(api, "") == {owner, admin, google}
    assert ids(api, "status=ACTIVE") == {owner}
    assert ids(api, "status=INVITED") == {admin, google}
    assert ids(api, "status=DELETED") == {gone}
    assert ids(api, "role=ADMIN") == {admin}
    assert ids(api, "role=ADMIN,OWNER") == {admin, owner}
    assert ids(api, "provider=google") == {google}
    assert ids(api, "q=oyl") == {owner}
    assert ids(api, "q=CORP.example") == {google}
    assert api.get("/members?status=ZOMBIE").status_code == 422
    assert api.get("/members?status=").status_code == 422


@pytest.mark.parametrize("query", ["sort=", "sort=+identifier", "sort=--identifier", "limit=", "limit=0",
                                   "limit=abc", "cursor=zzz", "status=,"])
def test_malformed_list_parameters_are_422_problems(api: Api, query: str) -> None:
    resp = api.get(f"/members?{query}")
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"


def test_members_sort_and_paginate_without_gaps_or_duplicates(api: Api) -> None:
    made = {member(api, f"m{i:02d}@example.com", role=["ADMIN", "MEMBER"][i % 3 == 0]) for i in range(17)}
    for sort in ("identifier", "-identifier", "role", "-created_at", "status"):
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page = api.get(f"/members?limit=4&sort={sort}" + (f"&cursor={cursor}" if cursor else "")).get_json()
            seen.extend(m["id"] for m in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 17, sort
        assert set(seen) == made
    names = [m["identifier"] for m in api.get("/members?sort=-identifier&limit=100").get_json()["items"]]
    assert names == sorted(names, reverse=True)


def test_csv_export_has_a_header_every_member_and_formula_safe_cells(api: Api) -> None:
    member(api, "eve@example.com", name="=HYPERLINK(\"http://evil\")", attributes={"dept": "+sales"})
    member(api, "bob@example.com", name="@SUM(A1)", attributes={"dept": "-ops"})
    member(api, "joe@example.com", name="Joe")
    resp = api.get("/members?sort=identifier", headers={"Accept": "text/csv"})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    header, data = rows[0], rows[1:]
    assert header[:4] == ["identifier", "name", "role", "provider"] and "dept" in header
    assert [r[0] for r in data] == ["bob@example.com", "eve@example.com", "joe@example.com"]
    by_id = {r[0]: dict(zip(header, r, strict=True)) for r in data}
    assert by_id["eve@example.com"]["name"] == "'=HYPERLINK(\"http://evil\")"
    assert by_id["eve@example.com"]["dept"] == "'+sales"
    assert by_id["bob@example.com"]["name"] == "'@SUM(A1)"
    assert by_id["bob@example.com"]["dept"] == "'-ops"
    assert by_id["joe@example.com"]["name"] == "Joe"


def test_csv_export_honours_filters_and_json_stays_the_default(api: Api) -> None:
    member(api, "a@example.com", role="ADMIN")
    member(api, "m@example.com")
    resp = api.get("/members?role=ADMIN", headers={"Accept": "text/csv"})
    lines = resp.get_data(as_text=True).strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("a@example.com")
    assert api.get("/members").mimetype == "application/json"
    assert api.get("/members?status=NOPE", headers={"Accept": "text/csv"}).status_code == 422


def test_changing_a_role_updates_member_and_pending_invite(api: Api, bridge: Bridge) -> None:
    invite = api.invite("ann@example.com")
    resp = api.patch(f"/members/{invite['member_id']}", {"role": "ADMIN"})
    assert resp.status_code == 200 and resp.get_json()["role"] == "ADMIN"
    assert "users:edit" in resp.get_json()["permissions"]
    assert api.get(f"/invites/{invite['id']}").get_json()["role"] == "ADMIN"
    before = row_counts(bridge)
    bad = api.patch(f"/members/{invite['member_id']}", {"role": "KING"})
    assert bad.status_code == 422 and "role" in bad.get_json()["errors"]
    assert row_counts(bridge) == before


def test_the_last_active_owner_cannot_be_demoted_removed_or_deactivated(api: Api, bridge: Bridge) -> None:
    owner = member(api, "owner@example.com", bridge, active=True, role="OWNER")
    invited_owner = member(api, "later@example.com", role="OWNER")
    before = row_counts(bridge)
    for resp in (api.patch(f"/members/{owner}", {"role": "ADMIN"}), api.delete(f"/members/{owner}"),
                 api.post(f"/members/{owner}/deactivate")):
        assert resp.status_code == 409
        assert resp.get_json()["code"] == "last_owner"
    assert row_counts(bridge) == before
    make_active(bridge, invited_owner)
    assert api.patch(f"/members/{owner}", {"role": "ADMIN"}).status_code == 200
    assert api.patch(f"/members/{invited_owner}", {"role": "MEMBER"}).get_json()["code"] == "last_owner"


def test_deactivate_and_reactivate_check_the_current_state(api: Api, bridge: Bridge) -> None:
    active = member(api, "act@example.com", bridge, active=True)
    invited = member(api, "inv@example.com")
    assert api.post(f"/members/{invited}/deactivate").get_json()["code"] == "invalid_state"
    assert api.post(f"/members/{active}/reactivate").status_code == 409
    resp = api.post(f"/members/{active}/deactivate")
    assert resp.status_code == 200 and resp.get_json()["status"] == "DEACTIVATED"
    assert api.post(f"/members/{active}/deactivate").status_code == 409
    resp = api.post(f"/members/{active}/reactivate")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ACTIVE"


def test_removing_a_member_frees_the_seat_and_revokes_the_pending_invite(api: Api) -> None:
    invite = api.invite("ann@example.com")
    seats = api.get("").get_json()["seats_used"]
    resp = api.delete(f"/members/{invite['member_id']}")
    assert resp.status_code == 200 and resp.get_json()["status"] == "DELETED"
    assert api.get("").get_json()["seats_used"] == seats - 1
    assert api.get(f"/invites/{invite['id']}").get_json()["status"] == "REVOKED"
    assert api.delete(f"/members/{invite['member_id']}").status_code == 409
    assert api.patch(f"/members/{invite['member_id']}", {"role": "ADMIN"}).status_code == 409


def test_deactivated_members_still_hold_their_seat(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, member_limit=1)
    api = Api(client, make_key(bridge))
    only = member(api, "one@example.com", bridge, active=True)
    api.post(f"/members/{only}/deactivate")
    assert api.post("/invites", {"identifier": "two@example.com"}).get_json()["code"] == "seat_limit_reached"


def test_bulk_actions_report_a_result_per_id(api: Api, bridge: Bridge) -> None:
    a = member(api, "a@example.com", bridge, active=True)
    b = member(api, "b@example.com")
    resp = api.post("/members/bulk", {"action": "deactivate", "ids": [a, b, "missing"]})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["summary"] == {"ok": 1, "error": 2}
    results = {r["id"]: r for r in body["results"]}
    assert results[a]["status"] == "ok" and results[a]["member"]["status"] == "DEACTIVATED"
    assert results[b]["error"]["code"] == "invalid_state"
    assert results["missing"]["error"]["status"] == 404

    roles = api.post("/members/bulk", {"action": "change_role", "role": "ADMIN", "ids": [a, b]}).get_json()
    assert roles["summary"] == {"ok": 2, "error": 0}
    assert api.post("/members/bulk", {"action": "change_role", "ids": [a]}).status_code == 422
    removed = api.post("/members/bulk", {"action": "remove", "ids": [a, b]}).get_json()
    assert [r["member"]["status"] for r in removed["results"]] == ["DELETED", "DELETED"]


def test_a_failing_id_in_a_bulk_action_does_not_undo_the_others(api: Api, bridge: Bridge) -> None:
    owner = member(api, "owner@example.com", bridge, active=True, role="OWNER")
    other = member(api, "other@example.com")
    body = api.post("/members/bulk", {"action": "remove", "ids": [owner, other]}).get_json()
    assert [r["status"] for r in body["results"]] == ["error", "ok"]
    assert body["results"][0]["error"]["code"] == "last_owner"
    assert api.get(f"/members/{owner}").get_json()["status"] == "ACTIVE"
    assert api.get(f"/members/{other}").get_json()["status"] == "DELETED"


def test_bulk_remove_needs_users_delete(api: Api, bridge: Bridge, client: FlaskClient) -> None:
    target = member(api, "t@example.com")
    editor = Api(client, make_key(bridge, permissions=["users:read", "users:edit"]))
    before = row_counts(bridge)
    resp = editor.post("/members/bulk", {"action": "remove", "ids": [target]})
    assert resp.status_code == 403 and resp.get_json()["missing_permission"] == "users:delete"
    assert editor.delete(f"/members/{target}").status_code == 403
    assert api.get(f"/members/{target}").get_json()["status"] == "INVITED"
    after = row_counts(bridge)
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"}
    assert editor.post("/members/bulk", {"action": "deactivate", "ids": [target]}).status_code == 200


def test_member_changes_are_audited(api: Api, bridge: Bridge) -> None:
    m = member(api, "a@example.com", bridge, active=True)
    api.patch(f"/members/{m}", {"role": "ADMIN"})
    api.post(f"/members/{m}/deactivate")
    api.post(f"/members/{m}/reactivate")
    api.delete(f"/members/{m}")
    actions = [e["action"] for e in api.get("/audit-events?limit=100").get_json()["items"]]
    for action in ("member.role_changed", "member.deactivated", "member.reactivated", "member.removed"):
        assert action in actions
