"""The Members page: table, search, filters, seat usage, per-row and bulk actions, each confirmed and audited."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from tests.console.conftest import (
    BASE,
    MEMBER,
    Org,
    audit_actions,
    get,
    location,
    member_row,
    post,
    sign_in,
    table,
)
from tests.pages.conftest import OPs


def test_the_members_table_shows_each_member_and_the_seat_usage(owner: FlaskClient, acme: Org) -> None:
    acme.api.invite("pending@example.com", provider="oidc")

    body = get(owner, "/console/acme/members").get_data(as_text=True)

    assert "4 of 10 members" in body
    for email in ("owner@example.com", "admin@example.com", "member@example.com", "pending@example.com"):
        assert email in body
    assert ">Invited<" in body and ">Active<" in body


def test_search_and_the_status_filter_narrow_the_table(owner: FlaskClient, acme: Org) -> None:
    acme.api.invite("pending@example.com", provider="oidc")

    searched = table(get(owner, "/console/acme/members?q=admin").get_data(as_text=True))
    invited = table(get(owner, "/console/acme/members?status=INVITED").get_data(as_text=True))

    assert "admin@example.com" in searched and "member@example.com" not in searched
    assert "pending@example.com" in invited and "owner@example.com" not in invited


def test_sorting_by_a_column_orders_the_rows(owner: FlaskClient, acme: Org) -> None:
    ascending = table(get(owner, "/console/acme/members?sort=identifier").get_data(as_text=True))
    descending = table(get(owner, "/console/acme/members?sort=-identifier").get_data(as_text=True))

    assert ascending.index("admin@example.com") < ascending.index("owner@example.com")
    assert descending.index("owner@example.com") < descending.index("admin@example.com")


def test_an_unknown_filter_value_is_a_clear_error_not_a_crash(owner: FlaskClient, acme: Org) -> None:
    resp = get(owner, "/console/acme/members?status=NOPE")

    assert resp.status_code == 400 and "must be among" in resp.get_data(as_text=True)


def test_change_role_goes_through_a_confirmation_then_changes_and_audits_with_the_member_as_actor(
        owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    target = acme.ids["MEMBER"]
    confirm = get(owner, f"/console/acme/members/{target}/role")
    assert confirm.status_code == 200 and ">Confirm</button>" in confirm.get_data(as_text=True)
    assert member_row(bridge, target).role == "MEMBER"

    done = post(owner, f"/console/acme/members/{target}/role", {"role": "ADMIN"})

    assert done.status_code == 303 and location(done) == "/console/acme/members"
    assert member_row(bridge, target).role == "ADMIN"
    changed = [e for e in audit_actions(bridge) if e.action == "member.role_changed"][-1]
    assert changed.actor == f"member:{acme.ids['OWNER']}"
    assert changed.details["actor"]["email"] == "owner@example.com"


def test_deactivate_and_reactivate_a_member(owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    target = acme.ids["ADMIN"]

    assert post(owner, f"/console/acme/members/{target}/deactivate").status_code == 303
    assert member_row(bridge, target).status == "DEACTIVATED"
    assert "Reactivate admin@example.com" in get(owner, "/console/acme/members").get_data(as_text=True)
    assert post(owner, f"/console/acme/members/{target}/reactivate").status_code == 303
    assert member_row(bridge, target).status == "ACTIVE"


def test_removing_the_last_owner_is_refused_with_the_reason_and_nothing_changes(
        owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    before = len(audit_actions(bridge))

    resp = post(owner, f"/console/acme/members/{acme.ids['OWNER']}/remove")

    assert resp.status_code == 409
    assert "owner" in resp.get_data(as_text=True).lower() and 'role="alert"' in resp.get_data(as_text=True)
    assert member_row(bridge, acme.ids["OWNER"]).status == "ACTIVE"
    assert [e.action for e in audit_actions(bridge)[before:]] == []


def test_a_form_posted_without_its_csrf_token_answers_400_and_changes_nothing(
        owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    target = acme.ids["MEMBER"]

    resp = post(owner, f"/console/acme/members/{target}/remove", csrf=False)
    wrong = owner.post(f"/console/acme/members/{target}/remove", data={"csrf_token": "0" * 64}, base_url=BASE)

    assert resp.status_code == 400 and wrong.status_code == 400
    assert "Nothing was changed" in resp.get_data(as_text=True)
    assert member_row(bridge, target).status == "ACTIVE"


def test_bulk_change_role_confirms_the_selection_then_changes_every_selected_member(
        owner: FlaskClient, acme: Org, bridge: Bridge) -> None:
    chosen = [acme.ids["ADMIN"], acme.ids["MEMBER"]]
    form: dict[str, Any] = {"action": "change_role", "role": "OWNER", "ids": chosen}

    confirm = post(owner, "/console/acme/members/bulk", form)
    assert confirm.status_code == 200 and "admin@example.com" in confirm.get_data(as_text=True)
    assert member_row(bridge, chosen[0]).role == "ADMIN"

    done = post(owner, "/console/acme/members/bulk", {**form, "confirmed": "1"})

    assert done.status_code == 303
    assert [member_row(bridge, i).role for i in chosen] == ["OWNER", "OWNER"]


def test_bulk_remove_names_each_refused_member_with_the_reason(owner: FlaskClient, acme: Org,
                                                                bridge: Bridge) -> None:
    form = {"action": "remove", "ids": [acme.ids["OWNER"], acme.ids["MEMBER"]], "confirmed": "1"}

    resp = post(owner, "/console/acme/members/bulk", form)

    assert resp.status_code == 409
    assert "owner@example.com" in resp.get_data(as_text=True)
    assert member_row(bridge, acme.ids["OWNER"]).status == "ACTIVE"


def test_export_csv_returns_the_filtered_members(owner: FlaskClient, acme: Org) -> None:
    resp = get(owner, "/console/acme/members.csv?q=admin")

    text = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "admin@example.com" in text and "member@example.com" not in text


def test_a_member_role_sees_the_table_without_any_control_it_may_not_use(
        ops: OPs, client: FlaskClient, acme: Org) -> None:
    sign_in(client, ops.oidc, MEMBER)

    body = get(client, "/console/acme/members").get_data(as_text=True)

    assert "owner@example.com" in body
    for control in ("Invite people", "Change role", "Deactivate", "Remove", "Selected members"):
        assert f">{control}<" not in body, control
    denied = get(client, "/console/acme/invites/new")
    assert denied.status_code == 403 and "users:invite" in denied.get_data(as_text=True)
