"""The SCIM 2.0 service provider: the request shapes Entra and Okta send, filters, paging, PATCH, bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.models import ApiKey, AuditEvent, Event, Invite, InviteLink, Job, Member
from idp_bridge.services.invites import SEND_EMAIL_JOB
from idp_bridge.store.db import transaction
from tests.helpers import make_key, make_org
from tests.test_api_authorization import snapshot

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class Scim:
    """A directory's SCIM client for one org."""

    def __init__(self, client: FlaskClient, key: str, org: str = "acme") -> None:
        self.client, self.key, self.org = client, key, org

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> Any:
        return self.client.open(f"/scim/v2/{self.org}{path}", method=method,
                                data=None if body is None else json.dumps(body),
                                content_type="application/scim+json",
                                headers={"Authorization": f"Bearer {key or self.key}"})

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.call("POST", "/Users", body)
        assert resp.status_code == 201, resp.get_json()
        out: dict[str, Any] = resp.get_json()
        return out


@pytest.fixture
def scim(bridge: Bridge, client: FlaskClient) -> Scim:
    make_org(bridge, member_limit=5)
    return Scim(client, make_key(bridge, "acme", ["scim:provision"]))


def entra_user(user_name: str = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com",
               external_id: str = "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", active: Any = True) -> dict[str, Any]:
    """Microsoft Entra's documented create request (Develop a SCIM endpoint, 'Create User')."""
    return {
        "schemas": [CORE, ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": active,
        "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@contoso.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
    }


def okta_user(user_name: str = "test.user@acme.com") -> dict[str, Any]:
    """Okta's documented create request (SCIM 2.0 protocol reference, 'Create the user')."""
    return {
        "schemas": [CORE],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }


def rows(bridge: Bridge, model: Any, **where: Any) -> list[Any]:
    with transaction(bridge.sessions) as session:
        found = list(session.scalars(select(model).filter_by(**where)))
        session.expunge_all()
        return found


def assert_scim_error(resp: Any, status: int, scim_type: str | None = None) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/scim+json"
    body = resp.get_json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status) and body["detail"]
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body


def test_entras_create_request_makes_an_invited_member_with_a_mailed_invite(bridge: Bridge, scim: Scim) -> None:
    created = scim.create(entra_user())
    assert created["userName"] == "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com"
    assert created["externalId"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    assert created["active"] is True and created["meta"]["resourceType"] == "User"
    assert created["meta"]["location"].endswith(f"/scim/v2/acme/Users/{created['id']}")
    [member] = rows(bridge, Member, id=created["id"])
    assert member.status == "INVITED" and member.external_id == created["externalId"]
    assert member.name == "givenName familyName" and member.email == "Test_User_fd0ea19b@contoso.com"
    [invite] = rows(bridge, Invite, member_id=member.id)
    assert invite.status == "PENDING" and invite.notification_email == "Test_User_fd0ea19b@contoso.com"
    assert [j.kind for j in rows(bridge, Job, org_id=member.org_id)] == [SEND_EMAIL_JOB]
    [audit_row] = rows(bridge, AuditEvent, action="invite.created")
    assert audit_row.actor.startswith("api_key:")
    assert [e.type for e in rows(bridge, Event, member_id=member.id)] == ["invite.created"]
    again = scim.call("GET", f"/Users/{created['id']}").get_json()
    assert again["name"] == created["name"] and again["emails"] == created["emails"]


def test_oktas_create_request_is_kept_without_its_password(bridge: Bridge, scim: Scim) -> None:
    created = scim.create(okta_user())
    assert "password" not in created and created["displayName"] == "Test User" and created["locale"] == "en-US"
    [member] = rows(bridge, Member, id=created["id"])
    assert "password" not in (member.directory or {}) and "1mz050nq" not in str(member.directory)


def test_an_org_that_turned_scim_mail_off_gets_no_invitation_mail(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, scim_send_email=False)
    scim = Scim(client, make_key(bridge, "acme", ["scim:provision"]))
    created = scim.create(okta_user())
    [member] = rows(bridge, Member, id=created["id"])
    assert rows(bridge, Job, org_id=member.org_id) == []
    assert rows(bridge, Invite, member_id=member.id)[0].send_email is False


def test_a_username_that_is_not_an_email_is_the_identifier_in_an_org_matching_by_link(
        bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, match="link")
    scim = Scim(client, make_key(bridge, "acme", ["scim:provision"]))
    created = scim.create({"schemas": [CORE], "userName": "jdoe", "emails": [{"value": "j@example.com",
                                                                             "type": "work"}]})
    assert created["userName"] == "jdoe"
    assert rows(bridge, Invite, member_id=created["id"])[0].identifier == "jdoe"


def test_a_created_user_that_is_not_active_is_deactivated_at_once(bridge: Bridge, scim: Scim) -> None:
    created = scim.create(entra_user(active="False"))
    assert created["active"] is False
    assert rows(bridge, Member, id=created["id"])[0].status == "DEACTIVATED"


def test_filters_find_users_by_username_external_id_and_work_email(scim: Scim) -> None:
    first = scim.create(entra_user("ann@contoso.com", "ext-ann"))
    scim.create(entra_user("bob@contoso.com", "ext-bob"))
    queries = {
        'userName eq "ANN@contoso.com"': [first["id"]],
        'externalId eq "ext-ann"': [first["id"]],
        'emails[type eq "work"].value eq "test_user_fd0ea19b@contoso.com"': None,
        'userName eq "nobody@contoso.com"': [],
        'name.familyName pr': None,
        'name.givenName eq "givenName" and userName eq "ann@contoso.com"': [first["id"]],
    }
    for flt, wanted in queries.items():
        resp = scim.client.get("/scim/v2/acme/Users", query_string={"filter": flt},
                               headers={"Authorization": f"Bearer {scim.key}"})
        assert resp.status_code == 200, (flt, resp.get_json())
        body = resp.get_json()
        found = [r["id"] for r in body["Resources"]]
        assert body["totalResults"] == len(found)
        if wanted is not None:
            assert found == wanted, flt
        else:
            assert len(found) == 2, flt


def test_paging_walks_every_user_once_with_start_index_and_count(scim: Scim) -> None:
    ids = [scim.create(okta_user(f"user{n}@acme.com"))["id"] for n in range(5)]
    seen: list[str] = []
    for start in (1, 3, 5):
        resp = scim.client.get("/scim/v2/acme/Users", query_string={"startIndex": start, "count": 2},
                               headers={"Authorization": f"Bearer {scim.key}"})
        body = resp.get_json()
        assert body["totalResults"] == 5 and body["startIndex"] == start
        assert body["itemsPerPage"] == len(body["Resources"]) <= 2
        seen += [r["id"] for r in body["Resources"]]
    assert seen == ids
    counted = scim.client.get("/scim/v2/acme/Users", query_string={"count": 0},
                              headers={"Authorization": f"Bearer {scim.key}"}).get_json()
    assert counted["totalResults"] == 5 and counted["Resources"] == []


def test_entras_patch_with_capitalised_op_and_active_as_a_string_deactivates_and_reactivates(
        bridge: Bridge, scim: Scim) -> None:
    created = scim.create(entra_user())
    off = {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
    resp = scim.call("PATCH", f"/Users/{created['id']}", off)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["active"] is False
    assert rows(bridge, Member, id=created["id"])[0].status == "DEACTIVATED"
    on = {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]}
    assert scim.call("PATCH", f"/Users/{created['id']}", on).get_json()["active"] is True
    # Never signed in: back to INVITED, its invite still open.
    assert rows(bridge, Member, id=created["id"])[0].status == "INVITED"
    assert rows(bridge, Invite, member_id=created["id"])[0].status == "PENDING"
    types = [e.type for e in rows(bridge, Event, member_id=created["id"])]
    assert types == ["invite.created", "member.deactivated", "member.reactivated"]


def test_a_member_who_signed_in_returns_to_active(bridge: Bridge, scim: Scim) -> None:
    created = scim.create(okta_user())
    with transaction(bridge.sessions) as session:
        member = session.get(Member, created["id"])
        assert member is not None
        member.status, member.activated_at = "ACTIVE", member.created_at
    okta_off = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert scim.call("PATCH", f"/Users/{created['id']}", okta_off).status_code == 200
    assert rows(bridge, Member, id=created["id"])[0].status == "DEACTIVATED"
    okta_on = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": True}}]}
    assert scim.call("PATCH", f"/Users/{created['id']}", okta_on).status_code == 200
    assert rows(bridge, Member, id=created["id"])[0].status == "ACTIVE"


def test_entras_patch_of_attributes_with_a_path_and_an_unmatched_filter(bridge: Bridge, scim: Scim) -> None:
    created = scim.create(entra_user())
    body = {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": "displayName", "value": "Ann Example"},
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "ann@home.example"},
        {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Sales"},
        {"op": "Add", "path": "externalId", "value": "new-external"},
    ]}
    resp = scim.call("PATCH", f"/Users/{created['id']}", body)
    assert resp.status_code == 200, resp.get_json()
    out = resp.get_json()
    assert out["displayName"] == "Ann Example" and out[ENTERPRISE]["department"] == "Sales"
    assert {"value": "ann@home.example", "type": "home"} in out["emails"]
    [member] = rows(bridge, Member, id=created["id"])
    assert member.name == "Ann Example" and member.external_id == "new-external"
    assert rows(bridge, AuditEvent, action="member.directory_updated")


def test_put_replaces_the_user_and_delete_removes_the_member(bridge: Bridge, scim: Scim) -> None:
    created = scim.create(okta_user())
    replacement = {**okta_user(), "displayName": "Renamed", "active": False}
    resp = scim.call("PUT", f"/Users/{created['id']}", replacement)
    assert resp.status_code == 200 and resp.get_json()["displayName"] == "Renamed"
    assert rows(bridge, Member, id=created["id"])[0].status == "DEACTIVATED"
    assert scim.call("DELETE", f"/Users/{created['id']}").status_code == 204
    assert rows(bridge, Member, id=created["id"])[0].status == "DELETED"
    assert rows(bridge, Invite, member_id=created["id"])[0].status == "REVOKED"
    assert_scim_error(scim.call("GET", f"/Users/{created['id']}"), 404)
    assert_scim_error(scim.call("DELETE", f"/Users/{created['id']}"), 404)
    assert "member.removed" in [e.type for e in rows(bridge, Event, member_id=created["id"])]


def test_the_seat_limit_answers_409_and_writes_nothing(bridge: Bridge, scim: Scim) -> None:
    for n in range(5):
        scim.create(okta_user(f"user{n}@acme.com"))
    before = snapshot(bridge)
    assert_scim_error(scim.call("POST", "/Users", okta_user("one.too.many@acme.com")), 409)
    assert snapshot(bridge) == before


def test_a_duplicate_username_answers_409_uniqueness(scim: Scim) -> None:
    scim.create(okta_user())
    assert_scim_error(scim.call("POST", "/Users", okta_user("TEST.user@acme.com")), 409, "uniqueness")


@pytest.mark.parametrize(("method", "path", "body", "status", "scim_type"), [
    ("GET", '/Users?filter=userName eq', None, 400, "invalidFilter"),
    ("GET", '/Users?filter=favouriteColour eq "blue"', None, 400, "invalidFilter"),
    ("POST", "/Users", {"schemas": [CORE], "userName": "x@example.com", "favouriteColour": "blue"}, 400, None),
    ("POST", "/Users", {"schemas": ["urn:example:wrong"], "userName": "x@example.com"}, 400, None),
    ("POST", "/Users", {"schemas": [CORE]}, 400, None),
    ("POST", "/Users", "not an object", 400, "invalidSyntax"),
    ("PATCH", "/Users/{id}", {"schemas": [PATCH], "Operations": [{"op": "jump", "path": "active"}]}, 400, None),
    ("PATCH", "/Users/{id}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "favouriteColour", "value": "blue"}]}, 400, None),
    ("PUT", "/Users/{id}", {"schemas": [CORE], "userName": "not an email"}, 400, "invalidValue"),
    ("GET", "/Users/00000000-0000-0000-0000-000000000000", None, 404, None),
    ("GET", "/Nothing", None, 404, None),
])
def test_bad_input_answers_a_scim_error_and_changes_nothing(bridge: Bridge, scim: Scim, method: str, path: str,
                                                           body: Any, status: int, scim_type: str | None) -> None:
    created = scim.create(okta_user())
    before = snapshot(bridge)
    assert_scim_error(scim.call(method, path.replace("{id}", created["id"]), body), status, scim_type)
    assert snapshot(bridge) == before


def test_wrong_keys_answer_scim_errors_and_change_nothing(bridge: Bridge, scim: Scim) -> None:
    make_org(bridge, "other")
    created = scim.create(okta_user())
    before = snapshot(bridge)
    wrong = {
        "ibk_" + "A" * 43: 401,
        make_key(bridge, "acme", ["users:read", "users:invite", "users:edit", "users:delete"]): 403,
        make_key(bridge, "other", ["scim:provision"]): 403,
        make_key(bridge, None, ["scim:provision"]): 403,
    }
    before = snapshot(bridge)
    for key, status in wrong.items():
        for method, path, body in (("GET", "/Users", None), ("POST", "/Users", okta_user("new@acme.com")),
                                   ("DELETE", f"/Users/{created['id']}", None), ("GET", "/Schemas", None)):
            assert_scim_error(scim.call(method, path, body, key=key), status)
    resp = scim.client.get("/scim/v2/acme/Users")
    assert_scim_error(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(bridge) == before
    assert rows(bridge, AuditEvent, action="auth.denied")


def test_discovery_describes_users_with_the_enterprise_extension(scim: Scim) -> None:
    config = scim.call("GET", "/ServiceProviderConfig").get_json()
    assert config["patch"]["supported"] is True and config["filter"]["supported"] is True
    assert config["bulk"]["supported"] is False
    types = scim.call("GET", "/ResourceTypes").get_json()
    assert [t["name"] for t in types["Resources"]] == ["User"]
    assert types["Resources"][0]["schemaExtensions"][0]["schema"] == ENTERPRISE
    schemas = scim.call("GET", "/Schemas").get_json()
    assert {s["id"] for s in schemas["Resources"]} == {CORE, ENTERPRISE}
    assert scim.call("GET", f"/Schemas/{CORE}").get_json()["name"] == "User"
    assert scim.call("GET", "/ResourceTypes/User").status_code == 200


def test_a_new_username_renames_the_member_and_its_open_invite_unless_another_member_holds_it(
        bridge: Bridge, scim: Scim) -> None:
    created = scim.create(okta_user())
    scim.create(okta_user("taken@acme.com"))
    renamed = scim.call("PUT", f"/Users/{created['id']}", {**okta_user("Renamed.User@acme.com")})
    assert renamed.status_code == 200 and renamed.get_json()["userName"] == "Renamed.User@acme.com"
    [invite] = rows(bridge, Invite, member_id=created["id"])
    assert invite.identifier == "Renamed.User@acme.com" and invite.identifier_key == "renamed.user@acme.com"
    before = snapshot(bridge)
    taken = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "TAKEN@acme.com"}]}
    assert_scim_error(scim.call("PATCH", f"/Users/{created['id']}", taken), 409, "uniqueness")
    assert snapshot(bridge) == before


def test_users_are_searched_with_a_post_to_dot_search(scim: Scim) -> None:
    first = scim.create(okta_user("ann@acme.com"))
    scim.create(okta_user("bob@acme.com"))
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "ann@acme.com"', "attributes": ["userName"]}
    resp = scim.call("POST", "/Users/.search", body)
    assert resp.status_code == 200, resp.get_json()
    [found] = resp.get_json()["Resources"]
    assert found["id"] == first["id"] and found["userName"] == "ann@acme.com" and "displayName" not in found
    assert_scim_error(scim.call("POST", "/.search", body), 501)


def test_groups_are_not_served_without_a_group_to_role_mapping(scim: Scim) -> None:
    types = scim.call("GET", "/ResourceTypes").get_json()
    assert [t["name"] for t in types["Resources"]] == ["User"]
    assert_scim_error(scim.call("GET", "/Groups"), 404)
    assert_scim_error(scim.call("POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                    "displayName": "Admins"}), 404)


def test_a_scim_create_writes_the_rows_an_api_invite_writes(bridge: Bridge, client: FlaskClient) -> None:
    from tests.test_bulk_invites import PER_INVITE, _columns

    make_org(bridge, member_limit=5)
    key = make_key(bridge, "acme", ["scim:provision", "users:invite"])
    single = client.post("/api/v1/orgs/acme/invites", json={"identifier": "ada@example.com", "name": "Test User"},
                         headers={"Authorization": f"Bearer {key}"}).get_json()
    created = Scim(client, key).create({"schemas": [CORE], "userName": "bob@example.com", "displayName": "Test User",
                                        "emails": [{"value": "bob@example.com", "type": "work"}]})
    kept = {"external_id", "directory"}
    with transaction(bridge.sessions) as session:
        one = session.get(Invite, single["id"])
        many = session.scalar(select(Invite).where(Invite.member_id == created["id"]))
        assert one is not None and many is not None
        assert _columns(one, PER_INVITE) == _columns(many, PER_INVITE)
        assert _columns(one.member, PER_INVITE | kept) == _columns(many.member, PER_INVITE | kept)
        assert many.member.directory == {"displayName": "Test User", "emails": [{"value": "bob@example.com",
                                                                                "type": "work"}]}
        for model, column in ((InviteLink, InviteLink.invite_id), (Event, Event.invite_id), (Job, None),
                              (AuditEvent, AuditEvent.target_id)):
            if column is None:
                rows_of = [next(j for j in session.scalars(select(Job)) if j.payload["invite_id"] == i.id)
                           for i in (one, many)]
            else:
                rows_of = [session.scalar(select(model).where(column == i.id)) for i in (one, many)]
            assert _columns(rows_of[0], PER_INVITE) == _columns(rows_of[1], PER_INVITE), model
        key_row = session.scalar(select(ApiKey))
        assert key_row is not None and key_row.last_used_at is not None


def test_a_user_name_whose_invite_expired_is_created_again(bridge: Bridge, scim: Scim) -> None:
    first = scim.create(okta_user())
    with transaction(bridge.sessions) as session:
        invite = session.scalar(select(Invite).where(Invite.member_id == first["id"]))
        assert invite is not None
        invite.expires_at = invite.created_at - timedelta(hours=1)
    again = scim.create(okta_user())
    assert again["id"] != first["id"]
    assert rows(bridge, Member, id=first["id"])[0].status == "DELETED"
    assert rows(bridge, Invite, member_id=first["id"])[0].status == "EXPIRED"
    assert rows(bridge, Member, id=again["id"])[0].status == "INVITED"


def test_a_create_response_carries_only_the_attributes_asked_for(scim: Scim) -> None:
    resp = scim.client.post("/scim/v2/acme/Users", query_string={"attributes": "userName"},
                            data=json.dumps(okta_user()), content_type="application/scim+json",
                            headers={"Authorization": f"Bearer {scim.key}"})
    assert resp.status_code == 201
    assert set(resp.get_json()) == {"schemas", "id", "userName"}
    assert resp.headers["Location"].endswith(f"/scim/v2/acme/Users/{resp.get_json()['id']}")


def enterprise_user() -> dict[str, Any]:
    """A create with most of what a directory may send: the enterprise extension, several multi-valued
    attributes, a primary flag given as a string and attribute names in other cases."""
    return {
        "schemas": [CORE, ENTERPRISE], "userName": "Ann.Example@Contoso.com", "externalId": "e-1",
        "name": {"givenName": "Ann", "familyName": "Example", "middleName": "Q", "honorificPrefix": "Dr"},
        "DisplayName": "Ann Example", "nickName": "ann", "title": "Engineer", "userType": "Employee",
        "preferredLanguage": "de-DE", "locale": "de-DE", "timezone": "Europe/Berlin", "active": True,
        "emails": [{"value": "ann@contoso.com", "type": "work", "primary": "true"},
                   {"value": "ann@home.example", "type": "home"}],
        "phoneNumbers": [{"value": "+49 30 1234", "type": "mobile"}],
        "addresses": [{"streetAddress": "Main St 1", "locality": "Berlin", "country": "DE", "type": "work"}],
        "roles": [{"value": "dev", "primary": True}],
        ENTERPRISE: {"employeeNumber": "42", "department": "R&D", "costCenter": "7"},
    }


@pytest.mark.parametrize("body", [entra_user(), okta_user(), enterprise_user(),
                                  {"schemas": [CORE], "userName": "plain@example.com"},
                                  {"schemas": [CORE], "userName": "x@example.com", "displayName": "X", "active": "True",
                                   "emails": [{"value": "X@Example.com"}]}],
                         ids=["entra", "okta", "enterprise", "bare", "strings"])
def test_a_create_answers_the_user_as_a_read_of_it_renders_it(bridge: Bridge, app: Any, scim: Scim,
                                                              body: dict[str, Any]) -> None:
    from idp_bridge.web import scim as face

    resp = scim.call("POST", "/Users", body)
    assert resp.status_code == 201, resp.get_json()
    created = resp.get_json()
    with transaction(bridge.sessions) as session, app.test_request_context():
        member = session.get(Member, created["id"])
        assert member is not None
        call = face.ScimCall(session, face.Actor("test"), face.org_service.get(session, "acme"))
        rendered = face._dump(face.resource(call, member))
    assert resp.get_data(as_text=True) == json.dumps(rendered, default=str)
    assert resp.headers["Location"] == rendered["meta"]["location"]


def test_a_seat_freed_by_a_removal_takes_a_new_user_and_the_next_one_is_refused(bridge: Bridge, scim: Scim) -> None:
    created = [scim.create(okta_user(f"user{n}@acme.com")) for n in range(5)]
    assert scim.call("DELETE", f"/Users/{created[0]['id']}").status_code == 204
    # Six member rows for five seats: the org is counted member by member, and one seat is free.
    scim.create(okta_user("sixth@acme.com"))
    before = snapshot(bridge)
    assert_scim_error(scim.call("POST", "/Users", okta_user("seventh@acme.com")), 409)
    assert snapshot(bridge) == before
