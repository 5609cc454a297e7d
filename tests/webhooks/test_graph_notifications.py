"""Microsoft Graph change notifications: validation handshake, clientState, guest reconcile, lifecycle."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.cli import State, cli
from idp_bridge.models import utcnow
from idp_bridge.worker import Worker
from tests.fakes import FakeMicrosoft
from tests.helpers import Api
from webhooks.inbound.microsoft_graph import GraphSubscription

from .conftest import GRAPH_CLIENT_STATE, drain, event_types, inbound_count, invite_of, member_of


def subscribe(bridge: Bridge) -> str:
    state = State()
    state._bridge = bridge
    result = CliRunner().invoke(cli, ["graph", "subscribe", "--provider", "entra"], obj=state,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with bridge.sessions() as session:
        sub = session.scalars(select(GraphSubscription)).one()
        return sub.id


def guest(bridge: Bridge, api: Api, worker: Worker, email: str = "guest@partner.example") -> tuple[dict[str, Any], str]:
    invite = api.invite(email, provider="entra")
    drain(bridge, worker)
    user_id = invite_of(bridge, invite["id"]).idp_user_id
    assert user_id is not None
    return invite, user_id


def notify(client: FlaskClient, payload: dict[str, Any], path: str = "/webhooks/microsoft-graph") -> int:
    return client.post(path, json=payload).status_code


@pytest.mark.parametrize("path", ["/webhooks/microsoft-graph", "/webhooks/microsoft-graph/lifecycle"])
def test_a_validation_token_with_markup_is_echoed_decoded_as_plain_text(client: FlaskClient, path: str) -> None:
    token = "<script>alert('x')</script> Validation: Testing client application reachability+1"
    resp = client.post(f"{path}?validationToken={quote(token, safe='')}", data=b"",
                       headers={"Content-Type": "text/plain; charset=utf-8"})
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.get_data(as_text=True) == token


def test_the_cli_subscribes_to_users_with_our_client_state_within_graphs_limit(
        bridge: Bridge, microsoft: FakeMicrosoft) -> None:
    sub_id = subscribe(bridge)
    sub = microsoft.subscriptions[sub_id]
    assert sub["resource"] == "users" and sub["clientState"] == GRAPH_CLIENT_STATE
    assert sub["notificationUrl"] == "https://join.test/webhooks/microsoft-graph"
    assert sub["lifecycleNotificationUrl"] == "https://join.test/webhooks/microsoft-graph/lifecycle"
    expires = dt.datetime.fromisoformat(sub["expirationDateTime"][:26] + "+00:00")
    assert expires <= utcnow() + dt.timedelta(minutes=41_760)


def test_a_guest_turning_accepted_becomes_active(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, microsoft: FakeMicrosoft) -> None:
    invite, user_id = guest(bridge, api, worker)
    subscribe(bridge)
    [payload] = microsoft.accept(user_id)
    assert notify(client, payload) == 202
    assert notify(client, payload) == 202
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "ACTIVE"
    assert invite_of(bridge, invite["id"]).status == "ACCEPTED"
    assert event_types(bridge, invite["member_id"]).count("member.activated") == 1


def test_a_notification_with_the_wrong_client_state_changes_nothing(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, microsoft: FakeMicrosoft) -> None:
    invite, user_id = guest(bridge, api, worker)
    subscribe(bridge)
    [payload] = microsoft.accept(user_id)
    payload["value"][0]["clientState"] = "somebody-else"
    assert notify(client, payload) == 202
    del payload["value"][0]["clientState"]
    assert notify(client, payload) == 202
    drain(bridge, worker)
    assert inbound_count(bridge) == 0
    assert member_of(bridge, invite["member_id"]).status == "INVITED"


def test_a_guest_still_pending_stays_invited(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, microsoft: FakeMicrosoft) -> None:
    invite, user_id = guest(bridge, api, worker)
    subscribe(bridge)
    [payload] = microsoft.change_notifications(user_id, "updated")
    assert notify(client, payload) == 202
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "INVITED"


def test_a_deleted_guest_removes_the_member(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, microsoft: FakeMicrosoft) -> None:
    invite, user_id = guest(bridge, api, worker)
    subscribe(bridge)
    del microsoft.users[user_id]
    [payload] = microsoft.change_notifications(user_id, "deleted")
    assert notify(client, payload) == 202
    drain(bridge, worker)
    assert member_of(bridge, invite["member_id"]).status == "DELETED"


def test_reauthorization_required_renews_the_subscription(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft) -> None:
    sub_id = subscribe(bridge)
    microsoft.subscriptions[sub_id]["expirationDateTime"] = "2000-01-01T00:00:00.0000000Z"
    payload = microsoft.lifecycle_notification(sub_id, "reauthorizationRequired")
    assert notify(client, payload, "/webhooks/microsoft-graph/lifecycle") == 202
    drain(bridge, worker)
    assert microsoft.subscriptions[sub_id]["expirationDateTime"] > "2001"


def test_subscription_removed_creates_a_new_subscription(
        bridge: Bridge, client: FlaskClient, worker: Worker, microsoft: FakeMicrosoft) -> None:
    sub_id = subscribe(bridge)
    payload = microsoft.lifecycle_notification(sub_id, "subscriptionRemoved")
    del microsoft.subscriptions[sub_id]
    assert notify(client, payload, "/webhooks/microsoft-graph/lifecycle") == 202
    drain(bridge, worker)
    assert len(microsoft.subscriptions) == 1 and sub_id not in microsoft.subscriptions
    with bridge.sessions() as session:
        assert list(session.scalars(select(GraphSubscription.id))) == list(microsoft.subscriptions)


def test_missed_notifications_trigger_a_full_reconcile(
        bridge: Bridge, client: FlaskClient, api: Api, worker: Worker, microsoft: FakeMicrosoft) -> None:
    accepted, accepted_id = guest(bridge, api, worker, "one@partner.example")
    pending, _ = guest(bridge, api, worker, "two@partner.example")
    sub_id = subscribe(bridge)
    microsoft.accept(accepted_id)  # the change notification itself never arrives
    payload = microsoft.lifecycle_notification(sub_id, "missed")
    assert notify(client, payload, "/webhooks/microsoft-graph/lifecycle") == 202
    drain(bridge, worker)
    assert member_of(bridge, accepted["member_id"]).status == "ACTIVE"
    assert member_of(bridge, pending["member_id"]).status == "INVITED"


def test_the_worker_renews_a_subscription_before_it_expires(
        bridge: Bridge, worker: Worker, microsoft: FakeMicrosoft) -> None:
    sub_id = subscribe(bridge)
    with bridge.sessions() as session, session.begin():
        row = session.get(GraphSubscription, sub_id)
        assert row is not None
        row.expires_at = utcnow() + dt.timedelta(hours=12)
    worker.run_once(time_limit=30)
    with bridge.sessions() as session:
        row = session.get(GraphSubscription, sub_id)
        assert row is not None and row.renewed_at is not None
        assert row.expires_at > utcnow() + dt.timedelta(days=28)
