"""Keycloak provisioning through the outbox, against a stateful fake of the Admin REST API."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from idp_bridge.bridge import Bridge
from idp_bridge.models import Invite
from idp_bridge.worker import Worker
from tests.fakes import FakeKeycloak, FaultPlan
from tests.helpers import Api, make_key, make_org

from .conftest import drain


def invite_row(bridge: Bridge, invite_id: str) -> Invite:
    with bridge.sessions() as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        session.expunge(invite)
        return invite


def setup_api(bridge: Bridge, client: FlaskClient, **org: Any) -> Api:
    make_org(bridge, "acme", member_limit=1000, **org)
    return Api(client, make_key(bridge))


def test_a_new_email_gets_one_account_with_setup_actions_and_one_keycloak_email(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak, mail: Any) -> None:
    api = setup_api(bridge, client)
    body = api.invite("ada@example.com", provider="keycloak", name="Ada Lovelace")

    drain(bridge, worker)

    user = keycloak.find_by_email("ada@example.com")
    assert user is not None and len(keycloak.users) == 1
    assert user["username"] == "ada@example.com"
    assert (user["firstName"], user["lastName"], user["enabled"]) == ("Ada", "Lovelace", True)
    assert set(user["requiredActions"]) == {"UPDATE_PASSWORD", "VERIFY_EMAIL"}
    [sent] = keycloak.action_emails
    assert sent.user_id == user["id"]
    assert set(sent.actions) == {"UPDATE_PASSWORD", "VERIFY_EMAIL"}
    assert sent.client_id == "idp-bridge"
    assert sent.redirect_uri == body["link"]
    assert 336 * 3600 - 120 <= sent.lifespan <= 336 * 3600
    assert mail.sent == []  # Keycloak's mail is the only one by default
    row = invite_row(bridge, body["id"])
    assert (row.provisioning_state, row.idp_user_id, row.idp_user_created) == ("done", user["id"], True)
    shown = api.get(f"/invites/{body['id']}").get_json()["provisioning"]
    assert shown == {"state": "done", "attempts": 1, "last_error": None}


def test_an_existing_account_is_bound_without_any_password_action(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak, mail: Any) -> None:
    existing = keycloak.add_user("grace", email="grace@example.com")
    api = setup_api(bridge, client)
    body = api.invite("Grace@Example.com", provider="keycloak")

    drain(bridge, worker)

    assert len(keycloak.users) == 1
    assert keycloak.action_emails == []
    assert keycloak.users[existing]["requiredActions"] == []
    assert keycloak.calls["POST /users"] == 0
    row = invite_row(bridge, body["id"])
    assert (row.idp_user_id, row.idp_user_created, row.provisioning_state) == (existing, False, "done")
    assert len(mail.to("grace@example.com")) == len(mail.sent) == 1  # ours, since Keycloak sent nothing


def test_an_existing_account_whose_email_only_looks_like_the_invited_one_is_never_bound(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    # Keycloak lower-cases emails with Java's Unicode rules, so its exact search for the Kelvin sign finds kate.
    existing = keycloak.add_user("kate", email="kate@example.com")
    api = setup_api(bridge, client)
    body = api.invite("\u212aate@example.com", provider="keycloak")

    drain(bridge, worker)

    row = invite_row(bridge, body["id"])
    assert row.idp_user_id is None and row.provisioning_state == "failed"
    assert keycloak.action_emails == []
    assert keycloak.users[existing]["requiredActions"] == []
    assert "another email" in (api.get(f"/invites/{body['id']}").get_json()["provisioning"]["last_error"] or "")


def test_a_create_that_races_into_409_binds_the_account_that_won(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    api = setup_api(bridge, client)
    body = api.invite("lin@example.com", provider="keycloak")
    # Another admin creates the account between our search and our create.
    original = keycloak._list_users

    def search_then_someone_creates(request: Any, realm: str) -> Any:
        answer = original(request, realm)
        if not keycloak.users:
            keycloak.add_user("lin.other", email="lin@example.com")
        return answer

    keycloak._routes = [r if r.key != "GET /users" else type(r)(r.method, r.pattern, r.key,
                                                                   search_then_someone_creates)
                        for r in keycloak.routes()]

    drain(bridge, worker)

    assert len(keycloak.users) == 1
    assert keycloak.calls["POST /users"] == 1
    [winner] = keycloak.users.values()
    row = invite_row(bridge, body["id"])
    assert (row.idp_user_id, row.idp_user_created, row.provisioning_state) == (winner["id"], False, "done")
    assert keycloak.action_emails == []


def test_org_choosing_both_mails_gets_keycloaks_and_ours(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak, mail: Any) -> None:
    api = setup_api(bridge, client, keycloak_email="both")
    api.invite("both@example.com", provider="keycloak")
    drain(bridge, worker)
    assert len(keycloak.action_emails) == 1
    assert len(mail.to("both@example.com")) == 1


def test_org_choosing_our_mail_gets_no_keycloak_email(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak, mail: Any) -> None:
    api = setup_api(bridge, client, keycloak_email="ours")
    api.invite("ours@example.com", provider="keycloak")
    drain(bridge, worker)
    assert len(keycloak.users) == 1
    assert keycloak.action_emails == []
    assert len(mail.to("ours@example.com")) == 1


def test_a_brokered_idp_alias_is_kept_for_kc_idp_hint(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    api = setup_api(bridge, client)
    body = api.invite("hint@example.com", provider="keycloak", keycloak_idp="google")
    drain(bridge, worker)
    row = invite_row(bridge, body["id"])
    assert row.keycloak_idp == "google"
    assert row.idp_data["kc_idp_hint"] == "google"


def test_a_create_committed_then_failing_is_not_created_twice_on_retry(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    keycloak.faults = FaultPlan(script=["ok", "ok", "commit_503"], retry_after=0)  # token, search, create
    api = setup_api(bridge, client)
    body = api.invite("crash@example.com", provider="keycloak")

    drain(bridge, worker)

    assert len(keycloak.users) == 1
    assert keycloak.calls["POST /users"] == 1
    assert len(keycloak.action_emails) == 1
    row = invite_row(bridge, body["id"])
    assert (row.provisioning_state, row.provisioning_attempts, row.idp_user_created) == ("done", 2, True)


def test_a_permanent_keycloak_error_fails_provisioning_with_its_message_and_an_event(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    keycloak.clients["idp-bridge"].redirect_uris = ("https://elsewhere.test/*",)
    api = setup_api(bridge, client)
    body = api.invite("bad@example.com", provider="keycloak")

    drain(bridge, worker)

    shown = api.get(f"/invites/{body['id']}").get_json()["provisioning"]
    assert shown["state"] == "failed"
    assert "Invalid redirect uri" in shown["last_error"]
    with bridge.sessions() as session:
        from idp_bridge.models import Event

        types = [e.type for e in session.query(Event).all()]
    assert "invite.provisioning_failed" in types


def test_an_admin_can_retry_failed_provisioning(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    keycloak.clients["idp-bridge"].redirect_uris = ("https://elsewhere.test/*",)
    api = setup_api(bridge, client)
    body = api.invite("again@example.com", provider="keycloak")
    drain(bridge, worker)
    keycloak.clients["idp-bridge"].redirect_uris = ("https://join.test/invite/*",)

    resp = api.post(f"/invites/{body['id']}/retry-provisioning")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["provisioning"]["state"] == "pending"
    drain(bridge, worker)

    assert api.get(f"/invites/{body['id']}").get_json()["provisioning"]["state"] == "done"
    assert len(keycloak.users) == 1
    [sent] = keycloak.action_emails
    assert sent.redirect_uri == resp.get_json()["link"]
    assert api.post(f"/invites/{body['id']}/retry-provisioning").status_code == 409


def test_revoking_deletes_an_account_we_created_that_never_finished_setup(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    api = setup_api(bridge, client)
    body = api.invite("gone@example.com", provider="keycloak")
    drain(bridge, worker)
    assert len(keycloak.users) == 1

    assert api.post(f"/invites/{body['id']}/revoke").status_code == 200
    drain(bridge, worker)

    assert keycloak.users == {}
    assert invite_row(bridge, body["id"]).idp_user_id is None


def test_revoking_keeps_an_account_that_already_set_its_password(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    api = setup_api(bridge, client)
    body = api.invite("used@example.com", provider="keycloak")
    drain(bridge, worker)
    [user] = keycloak.users.values()
    user["requiredActions"] = []

    api.post(f"/invites/{body['id']}/revoke")
    drain(bridge, worker)

    assert list(keycloak.users) == [user["id"]]


def test_revoking_never_deletes_a_pre_existing_account(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    existing = keycloak.add_user("old", email="old@example.com", required_actions=["UPDATE_PASSWORD"])
    api = setup_api(bridge, client)
    body = api.invite("old@example.com", provider="keycloak")
    drain(bridge, worker)

    api.post(f"/invites/{body['id']}/revoke")
    drain(bridge, worker)

    assert list(keycloak.users) == [existing]
    assert keycloak.calls["DELETE /users/{id}"] == 0


def redeem_directly(bridge: Bridge, invite_id: str) -> str:
    """Stand-in for the login flow: the invite is accepted and its member active."""
    from idp_bridge.models import InviteStatus, MemberStatus

    with bridge.sessions.begin() as session:
        invite = session.get(Invite, invite_id)
        assert invite is not None
        invite.status = InviteStatus.ACCEPTED.value
        invite.member.status = MemberStatus.ACTIVE.value
        return invite.member_id


def test_deactivating_and_reactivating_a_member_disables_and_enables_its_account_with_a_full_put(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    api = setup_api(bridge, client)
    body = api.invite("dee@example.com", provider="keycloak", name="Dee Active")
    drain(bridge, worker)
    member_id = redeem_directly(bridge, body["id"])
    [user] = keycloak.users.values()

    assert api.post(f"/members/{member_id}/deactivate").status_code == 200
    drain(bridge, worker)
    assert user["enabled"] is False
    put = [r for r in keycloak.requests if r.method == "PUT" and r.path.endswith(user["id"])][-1].json()
    assert put["enabled"] is False
    assert (put["username"], put["email"], put["firstName"]) == ("dee@example.com", "dee@example.com", "Dee")
    assert set(put["requiredActions"]) == {"UPDATE_PASSWORD", "VERIFY_EMAIL"}

    assert api.post(f"/members/{member_id}/reactivate").status_code == 200
    drain(bridge, worker)
    assert user["enabled"] is True


def test_removing_a_member_never_deletes_its_pre_existing_account(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    existing = keycloak.add_user("kept", email="kept@example.com", required_actions=["UPDATE_PASSWORD"])
    api = setup_api(bridge, client)
    body = api.invite("kept@example.com", provider="keycloak")
    drain(bridge, worker)
    member_id = invite_row(bridge, body["id"]).member_id

    removed = api.delete(f"/members/{member_id}")
    assert removed.status_code == 200 and removed.get_json()["status"] == "DELETED"
    drain(bridge, worker)

    assert list(keycloak.users) == [existing]
    assert keycloak.users[existing]["enabled"] is True


def test_resending_while_provisioning_still_retries_keeps_one_job_carrying_the_new_link(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    from sqlalchemy import select

    from idp_bridge.models import Job

    keycloak.faults = FaultPlan(script=["429"], retry_after=1, applies_to=lambda r: "/admin/" in r.path)
    api = setup_api(bridge, client)
    body = api.invite("resend@example.com", provider="keycloak")
    worker.run_once()  # the first attempt meets the 429 and waits out its Retry-After
    with bridge.sessions() as session:
        assert [j.status for j in session.scalars(select(Job).where(Job.kind == "provision_invite"))] == ["queued"]

    resent = api.post(f"/invites/{body['id']}/resend")
    assert resent.status_code == 200, resent.get_json()
    drain(bridge, worker)

    with bridge.sessions() as session:
        kinds = [(j.kind, j.status) for j in session.scalars(select(Job).where(Job.kind == "provision_invite"))]
    assert sorted(kinds) == [("provision_invite", "done"), ("provision_invite", "done")]
    assert len(keycloak.users) == 1
    [sent] = keycloak.action_emails
    assert sent.redirect_uri == resent.get_json()["link"]


def test_a_token_endpoint_429_schedules_the_retry_after_its_retry_after(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    from sqlalchemy import select

    from idp_bridge.models import Job, utcnow

    keycloak.faults = FaultPlan(script=["429"], retry_after=120, applies_to=lambda r: r.path.endswith("/token"))
    api = setup_api(bridge, client)
    body = api.invite("slow@example.com", provider="keycloak")

    before = utcnow()
    assert worker.run_once() == {"done": 0, "retry": 1, "failed": 0}

    with bridge.sessions() as session:
        [job] = session.scalars(select(Job).where(Job.kind == "provision_invite"))
    assert job.status == "queued"
    assert (job.run_after - before).total_seconds() >= 119
    assert keycloak.calls["POST /token"] == 1 and keycloak.calls["GET /users"] == 0
    shown = api.get(f"/invites/{body['id']}").get_json()["provisioning"]
    assert shown["state"] == "pending" and "HTTP 429" in shown["last_error"]


def test_a_resend_while_provisioning_is_at_keycloak_still_sends_the_new_link(
        bridge: Bridge, client: FlaskClient, worker: Worker, keycloak: FakeKeycloak) -> None:
    api = setup_api(bridge, client)
    body = api.invite("race@example.com", provider="keycloak")
    [running] = worker.claim(10)  # the first job is mid-run with the first link...

    resent = api.post(f"/invites/{body['id']}/resend")  # ...when an admin resends the invite
    assert resent.status_code == 200, resent.get_json()
    assert worker.run_job(running) == "done"
    drain(bridge, worker)

    assert len(keycloak.users) == 1
    assert [e.redirect_uri for e in keycloak.action_emails] == [body["link"], resent.get_json()["link"]]
    row = invite_row(bridge, body["id"])
    assert (row.provisioning_state, row.idp_user_created) == ("done", True)
