"""The fakes speak what python-keycloak, msal, requests and httpx expect from the real vendors."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import msal
import pytest
import requests
import responses
from keycloak import (
    KeycloakAdmin,
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakGetError,
    KeycloakOpenIDConnection,
    KeycloakPostError,
    KeycloakPutError,
)

from .http import FakeRequest, FakeResponse, FaultPlan, install, on, serve
from .keycloak import FakeKeycloak
from .microsoft import FakeMicrosoft, ValidationReply

GRAPH = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
INVITE_PAGE = "https://bridge.example/invite/abc"


def _admin(fake: FakeKeycloak, server_url: str | None = None, secret: str | None = None) -> KeycloakAdmin:
    connection = KeycloakOpenIDConnection(
        server_url=server_url or fake.base_url,
        realm_name=fake.realm,
        client_id=fake.client_id,
        client_secret_key=secret or fake.client_secret,
        timeout=5,
    )
    return KeycloakAdmin(connection=connection)


def _graph_token(microsoft: FakeMicrosoft, login_url: str | None = None) -> str:
    answer = requests.post(
        f"{login_url or microsoft.login_url}/{microsoft.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": microsoft.client_id,
            "client_secret": microsoft.client_secret,
            "scope": GRAPH_SCOPE[0],
        },
        timeout=5,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def _invite(token: str, email: str, base: str = GRAPH) -> requests.Response:
    return requests.post(
        f"{base}/invitations",
        json={"invitedUserEmailAddress": email, "inviteRedirectUrl": INVITE_PAGE, "sendInvitationMessage": False},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def _in(minutes: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).isoformat()


class TestKeycloakWithPythonKeycloak:
    def test_admin_client_authenticates_with_client_credentials_and_creates_a_user(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        user_id = kc_admin.create_user(
            {
                "username": "Alice@Example.COM",
                "email": "Alice@Example.COM",
                "enabled": True,
                "requiredActions": ["UPDATE_PASSWORD", "VERIFY_EMAIL"],
                "attributes": {"invite_id": ["inv_1"]},
            }
        )

        stored = keycloak.users[user_id]
        assert stored["username"] == "alice@example.com"
        assert stored["email"] == "alice@example.com"
        assert stored["requiredActions"] == ["UPDATE_PASSWORD", "VERIFY_EMAIL"]
        assert stored["attributes"] == {"invite_id": ["inv_1"]}
        assert keycloak.calls["POST /token"] == 1
        assert keycloak.calls["POST /users"] == 1

    def test_creating_a_user_whose_username_exists_raises_post_error_409(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        keycloak.add_user("bob", email="bob@example.com")

        with pytest.raises(KeycloakPostError) as caught:
            kc_admin.create_user({"username": "BOB", "email": "other@example.com"})

        assert caught.value.response_code == 409
        assert caught.value.response_body == b'{"errorMessage":"User exists with same username"}'
        assert len(keycloak.users) == 1

    def test_creating_a_user_whose_email_exists_answers_409_same_email(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        keycloak.add_user("bob", email="bob@example.com")

        with pytest.raises(KeycloakPostError) as caught:
            kc_admin.create_user({"username": "bobby", "email": "BOB@example.com"})

        assert caught.value.response_code == 409
        assert b"User exists with same email" in (caught.value.response_body or b"")

    def test_a_user_without_username_or_with_a_bad_email_is_rejected_with_400(self, kc_admin: KeycloakAdmin) -> None:
        with pytest.raises(KeycloakPostError) as missing:
            kc_admin.create_user({"email": "carol@example.com"})
        with pytest.raises(KeycloakPostError) as bad_email:
            kc_admin.create_user({"username": "carol", "email": "not-an-email"})

        assert missing.value.response_code == 400
        assert missing.value.response_body == b'{"errorMessage":"User name is missing"}'
        assert bad_email.value.response_code == 400
        assert b"error-invalid-email" in (bad_email.value.response_body or b"")

    def test_exact_email_search_finds_only_that_user_while_plain_search_is_a_substring(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        dana = keycloak.add_user("dana", email="dana@example.com")
        keycloak.add_user("xdana", email="xdana@example.com")

        exact = kc_admin.get_users({"email": "DANA@example.com", "exact": True})
        loose = kc_admin.get_users({"email": "dana@example.com"})

        assert [u["id"] for u in exact] == [dana]
        assert len(loose) == 2
        assert kc_admin.users_count({"email": "dana@example.com"}) == 2

    def test_search_is_a_prefix_match_with_wildcards_and_ignores_exact(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        keycloak.add_user("full-user", email="f@example.com")

        assert len(kc_admin.get_users({"search": "full", "exact": True})) == 1
        assert kc_admin.get_users({"search": "user"}) == []
        assert len(kc_admin.get_users({"search": "*user"})) == 1
        assert len(kc_admin.get_users({"search": '"full-user"'})) == 1

    def test_listing_pages_with_first_and_max_and_brief_drops_legacy_fields(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        for n in range(5):
            keycloak.add_user(f"user{n}", email=f"user{n}@example.com")

        page = kc_admin.get_users({"first": 2, "max": 2, "briefRepresentation": True})

        assert [u["username"] for u in page] == ["user2", "user3"]
        assert "requiredActions" not in page[0]
        assert "requiredActions" in kc_admin.get_users({"max": 1})[0]

    def test_execute_actions_email_records_actions_lifespan_client_and_redirect(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        user_id = kc_admin.create_user({"username": "erin@example.com", "email": "erin@example.com", "enabled": True})

        kc_admin.send_update_account(
            user_id,
            ["UPDATE_PASSWORD", "VERIFY_EMAIL"],
            client_id=keycloak.client_id,
            lifespan=3600,
            redirect_uri=INVITE_PAGE,
        )

        (sent,) = keycloak.action_emails
        assert sent.user_id == user_id
        assert sent.email == "erin@example.com"
        assert sent.actions == ("UPDATE_PASSWORD", "VERIFY_EMAIL")
        assert (sent.client_id, sent.redirect_uri, sent.lifespan) == (keycloak.client_id, INVITE_PAGE, 3600)
        assert keycloak.calls["PUT /users/{id}/execute-actions-email"] == 1

    def test_execute_actions_email_is_refused_without_email_bad_redirect_or_unknown_action(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        no_email = keycloak.add_user("frank")
        has_email = keycloak.add_user("gina", email="gina@example.com")
        keycloak.clients[keycloak.client_id].redirect_uris = ("https://bridge.example/invite/*",)

        with pytest.raises(KeycloakPutError) as missing:
            kc_admin.send_update_account(no_email, ["UPDATE_PASSWORD"])
        with pytest.raises(KeycloakPutError) as no_client:
            kc_admin.send_update_account(has_email, ["UPDATE_PASSWORD"], redirect_uri=INVITE_PAGE)
        with pytest.raises(KeycloakPutError) as bad_redirect:
            kc_admin.send_update_account(
                has_email, ["UPDATE_PASSWORD"], client_id=keycloak.client_id, redirect_uri="https://evil.example/"
            )
        with pytest.raises(KeycloakPutError) as bad_action:
            kc_admin.send_update_account(has_email, ["MAKE_COFFEE"])

        assert missing.value.response_body == b'{"errorMessage":"User email missing"}'
        assert no_client.value.response_body == b'{"errorMessage":"Client id missing"}'
        assert bad_redirect.value.response_body == b'{"errorMessage":"Invalid redirect uri."}'
        assert bad_action.value.response_body == b'{"errorMessage":"Provided invalid required actions"}'
        assert keycloak.action_emails == []

    def test_update_merges_fields_keeps_attributes_and_disable_turns_the_account_off(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        user_id = keycloak.add_user("hana", email="hana@example.com", attributes={"org": ["acme"]})

        kc_admin.update_user(user_id, {"firstName": "Hana", "requiredActions": []})
        kc_admin.disable_user(user_id)

        fetched = kc_admin.get_user(user_id)
        assert fetched["firstName"] == "Hana"
        assert fetched["email"] == "hana@example.com"
        assert fetched["attributes"] == {"org": ["acme"]}
        assert fetched["enabled"] is False
        assert fetched["requiredActions"] == []

    def test_deleted_users_are_gone_and_unknown_ids_answer_user_not_found(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        user_id = keycloak.add_user("ivan", email="ivan@example.com")

        kc_admin.delete_user(user_id)

        with pytest.raises(KeycloakGetError) as caught:
            kc_admin.get_user(user_id)
        assert caught.value.response_code == 404
        assert caught.value.response_body == b'{"error":"User not found"}'
        assert user_id not in keycloak.users

    def test_federated_identities_can_be_linked_listed_and_unlinked(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        user_id = keycloak.add_user("jo", email="jo@example.com")

        kc_admin.add_user_social_login(user_id, "google", "g-123", "jo@example.com")
        with pytest.raises(KeycloakPostError) as twice:
            kc_admin.add_user_social_login(user_id, "google", "g-123", "jo@example.com")
        linked = kc_admin.get_user_social_logins(user_id)
        found = kc_admin.get_users({"idpAlias": "google", "idpUserId": "g-123"})
        kc_admin.delete_user_social_login(user_id, "google")

        assert linked == [{"identityProvider": "google", "userId": "g-123", "userName": "jo@example.com"}]
        assert twice.value.response_code == 409
        assert [u["id"] for u in found] == [user_id]
        assert kc_admin.get_user_social_logins(user_id) == []

    def test_a_wrong_client_secret_is_refused_as_keycloak_does(self, keycloak: FakeKeycloak) -> None:
        admin = _admin(keycloak, secret="wrong")

        with pytest.raises(KeycloakAuthenticationError) as caught:
            admin.get_users({"max": 1})

        assert caught.value.response_code == 401
        assert caught.value.response_body == (
            b'{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}'
        )

    def test_an_expired_admin_token_gets_401_and_python_keycloak_fetches_a_new_one(
        self, keycloak: FakeKeycloak, kc_admin: KeycloakAdmin
    ) -> None:
        kc_admin.get_users({"max": 1})
        keycloak.expire_tokens()

        kc_admin.get_users({"max": 1})

        assert keycloak.calls["POST /token"] == 2
        assert keycloak.calls["GET /users"] == 3

    def test_admin_calls_without_a_bearer_token_answer_401(self, keycloak: FakeKeycloak) -> None:
        answer = requests.get(f"{keycloak.base_url}/admin/realms/acme/users", timeout=5)

        assert answer.status_code == 401
        assert answer.json() == {"error": "HTTP 401 Unauthorized"}

    def test_the_token_endpoint_accepts_http_basic_client_authentication(self, keycloak: FakeKeycloak) -> None:
        answer = requests.post(
            f"{keycloak.issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials"},
            auth=(keycloak.client_id, keycloak.client_secret),
            timeout=5,
        )

        body = answer.json()
        assert answer.status_code == 200
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 300
        assert len(body["access_token"].split(".")) == 3
        assert "refresh_token" not in body

    def test_discovery_document_names_the_realm_issuer_and_endpoints(self, keycloak: FakeKeycloak) -> None:
        config = requests.get(f"{keycloak.issuer}/.well-known/openid-configuration", timeout=5).json()

        assert config["issuer"] == "https://kc.test/realms/acme"
        assert config["token_endpoint"] == "https://kc.test/realms/acme/protocol/openid-connect/token"


class TestMicrosoftWithMsalAndGraph:
    def test_msal_reads_tenant_discovery_at_construction_and_posts_once_for_a_token(
        self, microsoft: FakeMicrosoft, msal_app: msal.ConfidentialClientApplication
    ) -> None:
        first = msal_app.acquire_token_for_client(scopes=GRAPH_SCOPE)
        second = msal_app.acquire_token_for_client(scopes=GRAPH_SCOPE)

        assert first["token_type"] == "Bearer"
        assert second["token_source"] == "cache"
        assert dict(microsoft.calls) == {
            "GET /{tenant}/v2.0/.well-known": 1,
            "POST /{tenant}/oauth2/v2.0/token": 1,
        }
        (token_request,) = [r for r in microsoft.requests if r.method == "POST"]
        assert token_request.form()["client_secret"] == microsoft.client_secret
        assert token_request.form()["scope"] == GRAPH_SCOPE[0]

    def test_msal_asks_instance_discovery_after_a_failure_unless_disabled(self, microsoft: FakeMicrosoft) -> None:
        default = msal.ConfidentialClientApplication(
            microsoft.client_id, authority=microsoft.authority, client_credential="wrong"
        )
        result = default.acquire_token_for_client(scopes=GRAPH_SCOPE)
        asked_with_default = microsoft.calls["GET /common/discovery/instance"]
        disabled = msal.ConfidentialClientApplication(
            microsoft.client_id, authority=microsoft.authority, client_credential="wrong", instance_discovery=False
        )
        disabled.acquire_token_for_client(scopes=GRAPH_SCOPE)

        assert result["error"] == "invalid_client"
        assert result["error_codes"] == [7000215]
        assert asked_with_default == 1
        assert microsoft.calls["GET /common/discovery/instance"] == 1

    def test_inviting_creates_a_pending_guest_and_reinviting_returns_the_same_user(
        self, microsoft: FakeMicrosoft, msal_app: msal.ConfidentialClientApplication
    ) -> None:
        token = msal_app.acquire_token_for_client(scopes=GRAPH_SCOPE)["access_token"]

        first = _invite(token, "Guest@Partner.example")
        again = _invite(token, "guest@partner.example")

        assert first.status_code == 201
        body = first.json()
        assert body["status"] == "PendingAcceptance"
        assert body["inviteRedeemUrl"].startswith("https://login.microsoftonline.com/redeem?rd=")
        assert body["inviteRedirectUrl"] == INVITE_PAGE
        assert again.json()["invitedUser"]["id"] == body["invitedUser"]["id"]
        assert again.json()["id"] != body["id"]
        guest = microsoft.users[body["invitedUser"]["id"]]
        assert guest["userType"] == "Guest"
        assert guest["userPrincipalName"] == "Guest_Partner.example#EXT#@contoso.onmicrosoft.com"

    def test_a_tenant_that_forbids_guest_invitations_answers_403_with_graphs_error_body(
        self, microsoft: FakeMicrosoft
    ) -> None:
        microsoft.b2b_invitations_enabled = False

        answer = _invite(_graph_token(microsoft), "nope@partner.example")

        error = answer.json()["error"]
        assert answer.status_code == 403
        assert error["message"].startswith("Guest invitations not allowed for your company.")
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
        assert microsoft.users == {}

    def test_reading_a_guest_with_select_returns_only_those_properties_and_accept_flips_the_state(
        self, microsoft: FakeMicrosoft
    ) -> None:
        token = _graph_token(microsoft)
        user_id = _invite(token, "kim@partner.example").json()["invitedUser"]["id"]
        url = f"{GRAPH}/users/{user_id}"
        params = {"$select": "id,mail,userType,externalUserState"}

        before = requests.get(url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        microsoft.accept(user_id)
        after = requests.get(url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
        plain = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()

        assert before == {
            "@odata.context": f"{GRAPH}/$metadata#users(id,mail,userType,externalUserState)/$entity",
            "id": user_id,
            "mail": "kim@partner.example",
            "userType": "Guest",
            "externalUserState": "PendingAcceptance",
        }
        assert after["externalUserState"] == "Accepted"
        assert "externalUserState" not in plain
        assert _invite(token, "kim@partner.example").json()["status"] == "Completed"

    def test_deleting_a_guest_answers_204_then_404(self, microsoft: FakeMicrosoft) -> None:
        token = _graph_token(microsoft)
        user_id = microsoft.add_user("lee@partner.example")
        headers = {"Authorization": f"Bearer {token}"}

        deleted = requests.delete(f"{GRAPH}/users/{user_id}", headers=headers, timeout=5)
        missing = requests.get(f"{GRAPH}/users/{user_id}", headers=headers, timeout=5)

        assert deleted.status_code == 204
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "Request_ResourceNotFound"

    def test_graph_rejects_missing_and_expired_tokens(self, microsoft: FakeMicrosoft) -> None:
        token = _graph_token(microsoft)
        microsoft.expire_tokens()

        anonymous = _invite("", "a@partner.example")
        expired = _invite(token, "a@partner.example")

        assert anonymous.status_code == expired.status_code == 401
        assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert "WWW-Authenticate" in expired.headers

    def test_subscriptions_are_created_listed_renewed_and_deleted(self, microsoft: FakeMicrosoft) -> None:
        headers = {"Authorization": f"Bearer {_graph_token(microsoft)}"}
        request = {
            "changeType": "updated,deleted",
            "notificationUrl": "https://bridge.example/webhooks/microsoft-graph",
            "lifecycleNotificationUrl": "https://bridge.example/webhooks/microsoft-graph",
            "resource": "users",
            "expirationDateTime": _in(60),
            "clientState": "client-state-secret",
        }

        created = requests.post(f"{GRAPH}/subscriptions", json=request, headers=headers, timeout=5)
        sub_id = created.json()["id"]
        listed = requests.get(f"{GRAPH}/subscriptions", headers=headers, timeout=5).json()["value"]
        renewed = requests.patch(
            f"{GRAPH}/subscriptions/{sub_id}", json={"expirationDateTime": _in(41000)}, headers=headers, timeout=5
        )
        deleted = requests.delete(f"{GRAPH}/subscriptions/{sub_id}", headers=headers, timeout=5)

        assert created.status_code == 201
        assert created.json()["clientState"] == "client-state-secret"
        assert created.json()["applicationId"] == microsoft.client_id
        assert [s["id"] for s in listed] == [sub_id]
        assert renewed.status_code == 200
        assert renewed.json()["expirationDateTime"].endswith("Z")
        assert deleted.status_code == 204
        assert microsoft.subscriptions == {}

    def test_a_user_subscription_beyond_41760_minutes_is_rejected(self, microsoft: FakeMicrosoft) -> None:
        headers = {"Authorization": f"Bearer {_graph_token(microsoft)}"}
        request = {
            "changeType": "updated",
            "notificationUrl": "https://bridge.example/webhooks/microsoft-graph",
            "resource": "users",
            "expirationDateTime": _in(41761),
        }

        answer = requests.post(f"{GRAPH}/subscriptions", json=request, headers=headers, timeout=5)

        assert answer.status_code == 400
        assert answer.json()["error"]["message"] == "Subscription expiration can only be 41760 minutes in the future."

    def test_a_subscription_needs_the_endpoint_to_echo_the_validation_token(self, microsoft: FakeMicrosoft) -> None:
        headers = {"Authorization": f"Bearer {_graph_token(microsoft)}"}
        seen: list[str] = []

        def echo(url: str, token: str) -> ValidationReply:
            seen.append(url)
            return ValidationReply(200, "text/plain; charset=utf-8", token)

        def wrong(url: str, token: str) -> ValidationReply:
            return ValidationReply(200, "application/json", '"' + token + '"')

        request = {
            "changeType": "updated",
            "notificationUrl": "https://bridge.example/webhooks/microsoft-graph",
            "resource": "users",
            "expirationDateTime": _in(60),
        }
        microsoft.notification_validator = wrong
        refused = requests.post(f"{GRAPH}/subscriptions", json=request, headers=headers, timeout=5)
        microsoft.notification_validator = echo
        accepted = requests.post(f"{GRAPH}/subscriptions", json=request, headers=headers, timeout=5)

        assert refused.status_code == 400
        assert accepted.status_code == 201
        assert seen == [request["notificationUrl"]]

    def test_accepting_a_guest_queues_a_change_notification_for_each_watching_subscription(
        self, microsoft: FakeMicrosoft
    ) -> None:
        headers = {"Authorization": f"Bearer {_graph_token(microsoft)}"}
        user_id = microsoft.add_user("max@partner.example")
        requests.post(
            f"{GRAPH}/subscriptions",
            json={
                "changeType": "updated",
                "notificationUrl": "https://bridge.example/webhooks/microsoft-graph",
                "resource": "users",
                "expirationDateTime": _in(60),
                "clientState": "cs",
            },
            headers=headers,
            timeout=5,
        )

        (payload,) = microsoft.accept(user_id)

        (item,) = payload["value"]
        assert item["clientState"] == "cs"
        assert item["changeType"] == "updated"
        assert item["resourceData"]["id"] == user_id
        assert microsoft.notifications[0]["url"] == "https://bridge.example/webhooks/microsoft-graph"


class TestFaultInjection:
    def test_a_scripted_503_hits_before_any_state_change_and_a_retry_succeeds(self, keycloak: FakeKeycloak) -> None:
        keycloak.faults = FaultPlan(script=["503"], applies_to=on("POST", r"/users$"))
        admin = _admin(keycloak)

        with pytest.raises(KeycloakPostError) as caught:
            admin.create_user({"username": "nina", "email": "nina@example.com"})
        assert caught.value.response_code == 503
        assert keycloak.users == {}

        admin.create_user({"username": "nina", "email": "nina@example.com"})
        assert keycloak.calls["POST /users"] == 2
        assert keycloak.faults.injected == [("503", "POST", "/admin/realms/acme/users")]

    def test_commit_then_fail_creates_the_account_so_a_blind_retry_meets_409(self, keycloak: FakeKeycloak) -> None:
        keycloak.faults = FaultPlan(script=["commit_503"], applies_to=on("POST", r"/users$"))
        admin = _admin(keycloak)

        with pytest.raises(KeycloakPostError):
            admin.create_user({"username": "olga", "email": "olga@example.com"})
        with pytest.raises(KeycloakPostError) as retried:
            admin.create_user({"username": "olga", "email": "olga@example.com"})

        assert retried.value.response_code == 409
        assert keycloak.find_by_email("olga@example.com") is not None
        assert len(keycloak.users) == 1

    def test_python_keycloak_retries_a_429_with_retry_after_once_by_itself(self, keycloak: FakeKeycloak) -> None:
        keycloak.faults = FaultPlan(script=["429"], retry_after=0, applies_to=on("POST", r"/users$"))

        _admin(keycloak).create_user({"username": "pia", "email": "pia@example.com"})

        # Its HTTPAdapter retries POST too, honouring Retry-After on 413/429/503.
        assert keycloak.calls["POST /users"] == 2
        assert len(keycloak.users) == 1

    def test_429_answers_carry_retry_after_on_both_vendors(
        self, keycloak: FakeKeycloak, microsoft: FakeMicrosoft
    ) -> None:
        token = _graph_token(microsoft)
        keycloak.faults = FaultPlan(p_429=1.0, retry_after=7)
        microsoft.faults = FaultPlan(p_429=1.0, retry_after=3)

        kc = requests.get(f"{keycloak.issuer}/.well-known/openid-configuration", timeout=5)
        graph = _invite(token, "p@partner.example")

        assert (kc.status_code, kc.headers["Retry-After"]) == (429, "7")
        assert (graph.status_code, graph.headers["Retry-After"]) == (429, "3")
        assert graph.json()["error"]["code"] == "TooManyRequests"
        assert microsoft.users == {}

    def test_timeouts_surface_as_requests_timeouts_in_responses_mode(self, keycloak: FakeKeycloak) -> None:
        keycloak.faults = FaultPlan(script=["timeout"])
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{keycloak.issuer}/.well-known/openid-configuration", timeout=5)

        keycloak.faults = FaultPlan(script=["timeout"], timeout_kind="connect")
        with pytest.raises(requests.exceptions.ConnectTimeout):
            requests.get(f"{keycloak.issuer}/.well-known/openid-configuration", timeout=5)

        keycloak.faults = FaultPlan(script=["ok", "timeout"])
        with pytest.raises(KeycloakConnectionError) as caught:
            _admin(keycloak).get_users({"max": 1})
        assert isinstance(caught.value.__cause__, requests.exceptions.ReadTimeout)

    def test_seeded_fault_plans_replay_the_same_faults(self) -> None:
        def run(seed: int) -> list[tuple[str, str, str]]:
            plan = FaultPlan(p_503=0.2, p_429=0.1, p_timeout=0.1, seed=seed)
            for n in range(200):
                plan.draw(FakeRequest("GET", "https://x.test", f"/{n}"))
            return plan.injected

        assert run(42) == run(42)
        assert run(42) != run(43)
        assert 40 <= len(run(42)) <= 120

    def test_msal_honours_retry_after_by_throttling_locally(self, microsoft: FakeMicrosoft) -> None:
        microsoft.faults = FaultPlan(script=["429"], retry_after=30, applies_to=on("POST", r"/token$"))
        app = msal.ConfidentialClientApplication(
            microsoft.client_id, authority=microsoft.authority, client_credential=microsoft.client_secret
        )

        first = app.acquire_token_for_client(scopes=GRAPH_SCOPE)
        second = app.acquire_token_for_client(scopes=GRAPH_SCOPE)

        assert "error" in first
        assert "error" in second
        assert microsoft.calls["POST /{tenant}/oauth2/v2.0/token"] == 1


class TestServedMode:
    def test_python_keycloak_talks_to_the_served_fake_over_real_sockets(self) -> None:
        fake = FakeKeycloak()
        with fake.serve() as url:
            admin = _admin(fake, server_url=url)
            user_id = admin.create_user({"username": "quinn", "email": "quinn@example.com", "enabled": True})
            admin.send_update_account(user_id, ["UPDATE_PASSWORD"], client_id=fake.client_id, lifespan=60)
            location_root = fake.requests[-2].root

        assert fake.users[user_id]["email"] == "quinn@example.com"
        assert fake.action_emails[0].lifespan == 60
        assert location_root == url

    def test_a_requests_session_reuses_one_keep_alive_connection(self) -> None:
        fake = FakeKeycloak()
        with fake.serve() as url, requests.Session() as session:
            for _ in range(5):
                answer = session.get(f"{url}/realms/acme/.well-known/openid-configuration", timeout=5)
                assert answer.json()["issuer"] == f"{url}/realms/acme"

        assert len({r.peer for r in fake.requests}) == 1

    def test_httpx_gets_http_1_1_keep_alive_and_graph_answers(self) -> None:
        fake = FakeMicrosoft(require_https_notifications=False)
        with fake.serve() as url:
            token = _graph_token(fake, login_url=url)
            with httpx.Client(base_url=url, timeout=5) as client:
                headers = {"Authorization": f"Bearer {token}"}
                answers = [
                    client.post(
                        "/v1.0/invitations",
                        json={"invitedUserEmailAddress": f"r{n}@partner.example", "inviteRedirectUrl": INVITE_PAGE},
                        headers=headers,
                    )
                    for n in range(3)
                ]

        assert [a.status_code for a in answers] == [201, 201, 201]
        assert {a.http_version for a in answers} == {"HTTP/1.1"}
        assert len({r.peer for r in fake.requests if r.path == "/v1.0/invitations"}) == 1

    def test_a_served_timeout_outlasts_the_client_timeout_and_changes_nothing(self) -> None:
        fake = FakeKeycloak(faults=FaultPlan(script=["ok", "timeout"], hang_s=2.0))
        with fake.serve() as url:
            token = requests.post(
                f"{url}/realms/acme/protocol/openid-connect/token",
                data={"grant_type": "client_credentials"},
                auth=(fake.client_id, fake.client_secret),
                timeout=5,
            ).json()["access_token"]
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(
                    f"{url}/admin/realms/acme/users",
                    json={"username": "sam"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=0.3,
                )
            waited = time.monotonic() - started

        assert 0.25 <= waited < 2.0
        assert fake.users == {}

    def test_latency_delays_every_answer(self) -> None:
        fake = FakeKeycloak()
        with fake.serve(latency_s=0.05) as url, httpx.Client(timeout=5) as client:
            started = time.monotonic()
            for _ in range(4):
                client.get(f"{url}/realms/acme/.well-known/openid-configuration")
            elapsed = time.monotonic() - started

        assert elapsed >= 0.2

    def test_concurrent_creates_against_the_served_fake_keep_state_consistent(self) -> None:
        fake = FakeKeycloak()
        with fake.serve(latency_s=0.005) as url:
            admin = _admin(fake, server_url=url)
            admin.get_users({"max": 1})
            with ThreadPoolExecutor(max_workers=4) as pool:
                ids = list(
                    pool.map(lambda n: admin.create_user({"username": f"u{n}", "email": f"u{n}@x.example"}), range(40))
                )

        assert len(set(ids)) == 40
        assert len(fake.users) == 40

    def test_msal_works_against_the_served_fake_over_tls_with_instance_discovery_off_or_redirected(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # requests lets these variables override a session's own `verify`, which msal relies on.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        fake = FakeMicrosoft()
        with fake.serve(tls=True) as url:
            off = msal.ConfidentialClientApplication(
                fake.client_id,
                authority=f"{url}/{fake.tenant_id}",
                client_credential=fake.client_secret,
                instance_discovery=False,
                verify=url.ca_file,
            )
            token = off.acquire_token_for_client(scopes=GRAPH_SCOPE)
            calls_with_discovery_off = dict(fake.calls)
            redirected = msal.ConfidentialClientApplication(
                fake.client_id,
                authority=f"{url}/{fake.tenant_id}",
                client_credential=fake.client_secret,
                instance_discovery=f"{url}/common/discovery/instance",
                verify=url.ca_file,
            )
            redirected.acquire_token_for_client(scopes=GRAPH_SCOPE)

        assert "access_token" in token
        assert "GET /common/discovery/instance" not in calls_with_discovery_off
        assert fake.calls["GET /common/discovery/instance"] == 1


def test_install_routes_every_method_under_a_base_url_to_a_plain_handler(rsps: responses.RequestsMock) -> None:
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: FakeRequest) -> FakeResponse:
        seen.append((request.method, request.path, request.arg("q")))
        return FakeResponse.json(200, {"ok": True})

    install(rsps, "https://api.test/base", handler)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        requests.request(method, "https://api.test/base/things/1?q=x", timeout=5)

    assert seen == [(m, "/things/1", "x") for m in ("GET", "POST", "PUT", "PATCH", "DELETE")]


def test_serve_runs_any_handler_on_a_free_loopback_port() -> None:
    with serve(lambda request: FakeResponse.text(200, request.path)) as url:
        answer = requests.get(f"{url}/hello", timeout=5)

    assert url.startswith("http://127.0.0.1:")
    assert answer.text == "/hello"
