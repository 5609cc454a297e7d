"""Invites through the API: create, validate, list, read, resend, revoke, expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.core_jobs import sweep_expired
from idp_bridge.models import Event, Invite, Member
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.conftest import PUBLIC_URL, RecordingMail
from tests.dbstate import age_invite, audit_actions, make_active, row_counts
from tests.helpers import Api, make_key, make_org

ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
PROVIDERS = {
    "entra": {"type": "entra", "client_id": "x", "client_secret": "y"},
    "google": {"type": "google", "client_id": "x", "client_secret": "y"},
    "keycloak": {"type": "keycloak", "server_url": "https://sso.test", "realm": "acme", "client_id": "x",
                 "client_secret": "y"},
}


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    settings_overrides["providers"] = PROVIDERS
    return settings_overrides


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge)
    return Api(client, make_key(bridge))


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def test_creating_an_invite_stores_every_field_and_returns_the_link_once(
        api: Api) -> None:
    body = api.invite("  Ada.Lovelace@Example.COM ", provider="entra", tenant_id=ENTRA_TENANT.upper(),
                      role="ADMIN", name="Ada", attributes={"team": "core"}, ttl_hours=24,
                      notification_email="ada@home.example.com", send_email=False)
    assert body["identifier"] == "Ada.Lovelace@example.com"
    assert body["provider"] == "entra" and body["tenant_id"] == ENTRA_TENANT
    assert body["role"] == "ADMIN" and body["name"] == "Ada" and body["attributes"] == {"team": "core"}
    assert body["notification_email"] == "ada@home.example.com"
    assert body["status"] == "PENDING" and body["send_count"] == 0 and body["code"] is None
    assert body["link"].startswith(PUBLIC_URL + "/invite/")
    again = api.get(f"/invites/{body['id']}").get_json()
    assert "link" not in again and "code" not in again
    assert again["identifier"] == body["identifier"]


def test_an_invite_without_a_role_gets_the_default_role(api: Api) -> None:
    assert api.invite("bo@example.com")["role"] == "MEMBER"


def test_hosted_domain_is_accepted_for_a_google_provider(api: Api) -> None:
    body = api.invite("cy@corp.example.com", provider="google", hosted_domain="Corp.Example.com")
    assert body["hosted_domain"] == "corp.example.com"


def test_keycloak_idp_is_accepted_for_a_keycloak_provider(api: Api) -> None:
    body = api.invite("di@example.com", provider="keycloak", keycloak_idp="github")
    assert body["keycloak_idp"] == "github"


INVALID = [
    ({"identifier": "not-an-email"}, "identifier"),
    ({"identifier": "a@b@c.com"}, "identifier"),
    ({"identifier": ""}, "identifier"),
    ({}, "identifier"),
    ({"identifier": "e@example.com", "provider": "okta"}, "provider"),
    ({"identifier": "e@example.com", "role": "EMPEROR"}, "role"),
    ({"identifier": "e@example.com", "tenant_id": ENTRA_TENANT}, "tenant_id"),
    ({"identifier": "e@example.com", "provider": "google", "tenant_id": ENTRA_TENANT}, "tenant_id"),
    ({"identifier": "e@example.com", "provider": "entra", "tenant_id": "not-a-guid"}, "tenant_id"),
    ({"identifier": "e@example.com", "hosted_domain": "example.com"}, "hosted_domain"),
    ({"identifier": "e@example.com", "provider": "entra", "hosted_domain": "example.com"}, "hosted_domain"),
    ({"identifier": "e@example.com", "provider": "google", "hosted_domain": "not a domain"}, "hosted_domain"),
    ({"identifier": "e@example.com", "keycloak_idp": "github"}, "keycloak_idp"),
    ({"identifier": "e@example.com", "provider": "google", "keycloak_idp": "github"}, "keycloak_idp"),
    ({"identifier": "e@example.com", "ttl_hours": 0}, "ttl_hours"),
    ({"identifier": "e@example.com", "notification_email": "nope"}, "notification_email"),
    ({"identifier": "e@example.com", "surprise": 1}, "surprise"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID, ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID)])
def test_invalid_invite_input_answers_422_naming_the_field_and_writes_nothing(
        api: Api, bridge: Bridge, payload: dict[str, Any], field: str) -> None:
    before = row_counts(bridge)
    resp = api.post("/invites", payload)
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    problem = resp.get_json()
    assert problem["status"] == 422 and problem["code"] == "validation_failed"
    assert field in problem["errors"], problem
    assert row_counts(bridge) == before


def test_malformed_bodies_answer_problems_and_write_nothing(api: Api, bridge: Bridge) -> None:
    before = row_counts(bridge)
    bad_json = api.client.post(api.url("/invites"), data="{not json", headers=api.headers(
        {"Content-Type": "application/json"}))
    assert bad_json.status_code == 400 and bad_json.mimetype == "application/problem+json"
    wrong_type = api.client.post(api.url("/invites"), data="identifier=x", headers=api.headers(
        {"Content-Type": "application/x-www-form-urlencoded"}))
    assert wrong_type.status_code == 415
    not_object = api.post("/invites", ["a@example.com"])
    assert not_object.status_code == 422
    assert row_counts(bridge) == before


def test_a_non_email_identifier_is_allowed_when_the_org_matches_by_link(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "linky", match="link")
    api = Api(client, make_key(bridge, "linky"), org="linky")
    body = api.invite("jdoe", notification_email="jdoe@example.com")
    assert body["identifier"] == "jdoe"


def test_an_unknown_provider_names_the_configured_ones(api: Api) -> None:
    problem = api.post("/invites", {"identifier": "x@example.com", "provider": "okta"}).get_json()
    assert "entra" in problem["errors"]["provider"][0]


def test_a_second_invite_for_the_same_person_points_at_the_pending_invite(api: Api, bridge: Bridge) -> None:
    first = api.invite("ann@example.com")
    before = row_counts(bridge)
    resp = api.post("/invites", {"identifier": "ANN@example.com"})
    assert resp.status_code == 409
    problem = resp.get_json()
    assert problem["code"] == "already_exists"
    assert problem["existing_type"] == "invite" and problem["existing_id"] == first["id"]
    assert row_counts(bridge) == before


def test_inviting_an_existing_member_points_at_the_member(api: Api, bridge: Bridge) -> None:
    first = api.invite("ann@example.com")
    make_active(bridge, first["member_id"])
    problem = api.post("/invites", {"identifier": "ann@example.com"}).get_json()
    assert problem["status"] == 409
    assert problem["existing_type"] == "member" and problem["existing_id"] == first["member_id"]


def test_a_revoked_invite_frees_the_identifier_for_a_new_one(api: Api) -> None:
    first = api.invite("ann@example.com")
    assert api.post(f"/invites/{first['id']}/revoke").status_code == 200
    second = api.invite("ann@example.com")
    assert second["id"] != first["id"]


def test_the_eleventh_invite_is_refused_when_the_seat_limit_is_ten(api: Api, bridge: Bridge) -> None:
    for i in range(10):
        api.invite(f"p{i}@example.com")
    before = row_counts(bridge)
    resp = api.post("/invites", {"identifier": "p10@example.com"})
    assert resp.status_code == 409
    problem = resp.get_json()
    assert problem["code"] == "seat_limit_reached" and problem["member_limit"] == 10
    assert row_counts(bridge) == before


def test_an_invite_code_is_returned_once_and_only_its_hash_is_stored(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "codey", require_invite_code=True)
    api = Api(client, make_key(bridge, "codey"), org="codey")
    body = api.invite("cody@example.com")
    code = body["code"]
    assert code is not None and len(code) == 8 and body["code_required"] is True
    with transaction(bridge.sessions) as session:
        invite = session.get(Invite, body["id"])
        assert invite is not None and invite.code_hash is not None
        assert code not in invite.code_hash
    assert "code" not in api.get(f"/invites/{body['id']}").get_json()


def test_invites_filter_by_status_including_expired_by_time(api: Api,
                                                            bridge: Bridge) -> None:
    pending = api.invite("pen@example.com")
    expired = api.invite("exp@example.com")
    revoked = api.invite("rev@example.com")
    api.post(f"/invites/{revoked['id']}/revoke")
    age_invite(bridge, expired["id"])

    def ids(query: str) -> set[str]:
        resp = api.get(f"/invites?{query}")
        assert resp.status_code == 200, resp.get_json()
        return {i["id"] for i in resp.get_json()["items"]}

    assert ids("status=PENDING") == {pending["id"]}
    assert ids("status=EXPIRED") == {expired["id"]}
    assert ids("status=REVOKED") == {revoked["id"]}
    assert ids("status=PENDING,EXPIRED") == {pending["id"], expired["id"]}
    assert api.get(f"/invites/{expired['id']}").get_json()["status"] == "EXPIRED"
    assert api.get("/invites?status=LOST").status_code == 422


def test_invites_filter_by_provider_and_text(api: Api) -> None:
    google = api.invite("g@corp.example.com", provider="google", name="Grace Hopper")
    entra = api.invite("e@example.com", provider="entra")
    plain = api.invite("plain@example.org")
    items = api.get("/invites?provider=google").get_json()["items"]
    assert [i["id"] for i in items] == [google["id"]]
    assert {i["id"] for i in api.get("/invites?q=HOPPER").get_json()["items"]} == {google["id"]}
    assert {i["id"] for i in api.get("/invites?q=example.com").get_json()["items"]} == {google["id"], entra["id"]}
    assert {i["id"] for i in api.get("/invites?q=example.org").get_json()["items"]} == {plain["id"]}


def test_invites_sort_by_identifier_both_ways(api: Api) -> None:
    for name in ("carl", "alma", "bert"):
        api.invite(f"{name}@example.com")
    up = [i["identifier"] for i in api.get("/invites?sort=identifier").get_json()["items"]]
    down = [i["identifier"] for i in api.get("/invites?sort=-identifier").get_json()["items"]]
    assert up == ["alma@example.com", "bert@example.com", "carl@example.com"]
    assert down == list(reversed(up))
    assert api.get("/invites?sort=shoe_size").status_code == 422


@pytest.mark.parametrize("sort", ["-created_at", "identifier", "status", "-expires_at", "role"])
def test_cursor_pagination_walks_every_invite_once(bridge: Bridge, client: FlaskClient, sort: str) -> None:
    make_org(bridge, member_limit=40)
    api = Api(client, make_key(bridge))
    created = {api.invite(f"user{i:02d}@example.com", role=["ADMIN", "MEMBER"][i % 2])["id"] for i in range(23)}
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = f"/invites?limit=5&sort={sort}" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(query).get_json()
        assert len(page["items"]) <= 5
        seen.extend(i["id"] for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == created


def test_a_tampered_cursor_is_a_problem_not_a_crash(api: Api) -> None:
    resp = api.get("/invites?cursor=garbage!!")
    assert resp.status_code in (400, 422) and resp.mimetype == "application/problem+json"


def test_an_unknown_invite_is_404(api: Api) -> None:
    resp = api.get("/invites/nope")
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"


def test_an_invite_of_another_org_is_not_visible(api: Api, bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "other")
    other = Api(client, make_key(bridge, "other"), org="other").invite("o@example.com")
    assert api.get(f"/invites/{other['id']}").status_code == 404
    assert api.post(f"/invites/{other['id']}/revoke").status_code == 404


def test_resend_rotates_the_link_and_the_old_link_says_a_newer_one_was_sent(
        api: Api, client: FlaskClient, worker: Worker, mail: RecordingMail) -> None:
    first = api.invite("ann@example.com")
    resp = api.post(f"/invites/{first['id']}/resend")
    assert resp.status_code == 200
    second = resp.get_json()
    assert second["link"] != first["link"] and second["send_count"] == 2
    old_page = client.get(f"/invite/{token_of(first['link'])}")
    assert old_page.status_code == 410
    assert "newer invitation" in old_page.get_data(as_text=True)
    assert client.get(f"/invite/{token_of(second['link'])}").status_code == 200
    worker.run_once()
    bodies = [m.get_body(("plain",)).get_content() for m in mail.to("ann@example.com")]
    assert [b for b in bodies if second["link"] in b]
    assert not [b for b in bodies if first["link"] in b]


def test_resending_an_expired_invite_makes_it_pending_again(api: Api, bridge: Bridge) -> None:
    first = api.invite("ann@example.com")
    age_invite(bridge, first["id"])
    assert api.get(f"/invites/{first['id']}").get_json()["status"] == "EXPIRED"
    resp = api.post(f"/invites/{first['id']}/resend")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "PENDING"
    assert api.get(f"/members/{first['member_id']}").get_json()["status"] == "INVITED"
    assert "invite.expired" in audit_actions(bridge)


def test_resending_an_accepted_or_revoked_invite_is_a_409(api: Api, bridge: Bridge) -> None:
    accepted = api.invite("acc@example.com")
    make_active(bridge, accepted["member_id"])
    revoked = api.invite("rev@example.com")
    api.post(f"/invites/{revoked['id']}/revoke")
    before = row_counts(bridge)
    for invite in (accepted, revoked):
        resp = api.post(f"/invites/{invite['id']}/resend")
        assert resp.status_code == 409 and resp.get_json()["code"] == "invalid_state"
    assert row_counts(bridge) == before


def test_revoking_removes_the_invited_member_and_kills_the_link(api: Api, client: FlaskClient) -> None:
    invite = api.invite("ann@example.com")
    resp = api.post(f"/invites/{invite['id']}/revoke")
    assert resp.status_code == 200 and resp.get_json()["status"] == "REVOKED"
    assert api.get(f"/members/{invite['member_id']}").get_json()["status"] == "DELETED"
    assert client.get(f"/invite/{token_of(invite['link'])}").status_code == 404
    again = api.post(f"/invites/{invite['id']}/revoke")
    assert again.status_code == 409


def test_an_expired_link_shows_the_invalid_page_before_any_sweep(api: Api, bridge: Bridge,
                                                                 client: FlaskClient) -> None:
    invite = api.invite("ann@example.com")
    age_invite(bridge, invite["id"])
    assert client.get(f"/invite/{token_of(invite['link'])}").status_code == 404
    assert api.post(f"/invites/{invite['id']}/revoke").status_code == 409


def test_the_worker_sweep_marks_expired_invites_and_emits_invite_expired(
        api: Api, bridge: Bridge, worker: Worker) -> None:
    expiring = api.invite("old@example.com")
    fresh = api.invite("new@example.com")
    age_invite(bridge, expiring["id"])
    worker.run_once()
    with transaction(bridge.sessions) as session:
        assert session.get(Invite, expiring["id"]).status == "EXPIRED"  # type: ignore[union-attr]
        assert session.get(Invite, fresh["id"]).status == "PENDING"  # type: ignore[union-attr]
        assert session.get(Member, expiring["member_id"]).status == "DELETED"  # type: ignore[union-attr]
        types = list(session.scalars(select(Event.type).where(Event.invite_id == expiring["id"])))
    assert "invite.expired" in types
    assert sweep_expired(bridge) == 0


def test_an_expired_invite_frees_its_seat_for_a_new_invite(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, member_limit=1)
    api = Api(client, make_key(bridge))
    old = api.invite("old@example.com")
    assert api.post("/invites", {"identifier": "new@example.com"}).status_code == 409
    age_invite(bridge, old["id"])
    assert api.invite("new@example.com")["status"] == "PENDING"


def test_each_invite_change_leaves_an_audit_event_and_an_outbox_event(api: Api, bridge: Bridge) -> None:
    invite = api.invite("ann@example.com")
    api.post(f"/invites/{invite['id']}/resend")
    api.post(f"/invites/{invite['id']}/revoke")
    actions = audit_actions(bridge)
    for action in ("invite.created", "invite.resent", "invite.revoked"):
        assert action in actions
    with transaction(bridge.sessions) as session:
        types = set(session.scalars(select(Event.type).where(Event.invite_id == invite["id"])))
    assert {"invite.created", "invite.resent", "invite.revoked"} <= types


def test_a_provider_the_org_does_not_allow_is_refused(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, "strict", allowed_providers=["google"])
    api = Api(client, make_key(bridge, "strict"), org="strict")
    before = row_counts(bridge)
    resp = api.post("/invites", {"identifier": "x@example.com", "provider": "entra", "tenant_id": ENTRA_TENANT})
    assert resp.status_code == 422 and "provider" in resp.get_json()["errors"]
    assert row_counts(bridge) == before
    assert api.invite("y@example.com", provider="google")["provider"] == "google"


def test_ttl_hours_overrides_the_org_lifetime(api: Api) -> None:
    body = api.invite("ann@example.com", ttl_hours=2)
    created = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=2) - timedelta(seconds=5) <= expires - created <= timedelta(hours=2)
    default = api.invite("bob@example.com")
    created = datetime.fromisoformat(default["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(default["expires_at"].replace("Z", "+00:00"))
    assert expires - created >= timedelta(hours=336) - timedelta(seconds=5)


def test_resending_an_expired_invite_needs_a_free_seat(bridge: Bridge, client: FlaskClient) -> None:
    make_org(bridge, member_limit=1)
    api = Api(client, make_key(bridge))
    old = api.invite("old@example.com")
    age_invite(bridge, old["id"])
    api.invite("new@example.com")
    before = row_counts(bridge)
    resp = api.post(f"/invites/{old['id']}/resend")
    assert resp.status_code == 409 and resp.get_json()["code"] == "seat_limit_reached"
    assert row_counts(bridge) == before


def test_nul_characters_are_refused_as_input_on_every_database(api: Api, bridge: Bridge) -> None:
    member_id = api.invite("ann@example.com")["member_id"]
    before = row_counts(bridge)
    body = api.post("/invites", {"identifier": "bo@example.com", "name": "B\u0000o"})
    assert body.status_code == 422 and "name" in body.get_json()["errors"]
    nested = api.post("/invites", {"identifier": "bo@example.com", "attributes": {"k": ["\u0000"]}})
    assert nested.status_code == 422 and "attributes.k.0" in nested.get_json()["errors"]
    bulk = api.post("/members/bulk", {"action": "deactivate", "ids": [member_id, "x\u0000"]})
    assert bulk.status_code == 422
    assert api.get("/members/ab%00cd").status_code == 404
    assert api.get("/invites?q=a%00b").status_code == 422
    assert api.client.get("/api/v1/orgs/ac%00me/invites", headers=api.headers()).status_code == 404
    assert row_counts(bridge) == before
