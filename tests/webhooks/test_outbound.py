"""Outbound webhooks: endpoints API, Standard Webhooks signatures, retries, the delivery log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp_bridge.bootstrap import make_worker
from idp_bridge.bridge import Bridge
from idp_bridge.models import AuditEvent, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from idp_bridge.services.webhooks import DELIVER_JOB
from idp_bridge.store.db import transaction
from idp_bridge.worker import Worker
from tests.dnsserver import LoopbackDNS
from tests.helpers import Api, make_key, make_org, metric
from tests.webhooks.receiver import Receiver, free_port


@pytest.fixture
def api(bridge: Bridge, client: FlaskClient) -> Api:
    make_org(bridge, "acme", member_limit=100)
    return Api(client, make_key(bridge))


@pytest.fixture(autouse=True)
def public_hooks_host(dns_server: LoopbackDNS) -> None:
    """hooks.example.com is public; only registration looks at it, deliveries here go to loopback receivers."""
    dns_server.answers["hooks.example.com"] = ["93.184.215.14"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def register(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    resp = api.post("/webhook-endpoints", {"url": url, **fields})
    assert resp.status_code == 201, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def drain(worker: Worker, bridge: Bridge, *, rounds: int = 60) -> None:
    """Run the worker until no delivery is pending (bounded in rounds)."""
    for _ in range(rounds):
        worker.run_once(time_limit=30)
        with transaction(bridge.sessions) as session:
            pending = session.scalar(select(func.count()).select_from(WebhookDelivery)
                                     .where(WebhookDelivery.status == "pending"))
            undispatched = session.scalar(select(func.count()).select_from(Event).where(Event.dispatched.is_(False)))
        if not pending and not undispatched:
            return
        time.sleep(0.06)


def successes_per_delivery(bridge: Bridge) -> dict[str, int]:
    with transaction(bridge.sessions) as session:
        rows = session.execute(select(WebhookAttempt.delivery_id, func.count())
                               .where(WebhookAttempt.success.is_(True)).group_by(WebhookAttempt.delivery_id))
        return {d: n for d, n in rows}


def test_registering_an_endpoint_shows_its_secret_once(api: Api) -> None:
    created = register(api, "https://hooks.example.com/idp", event_types=["member.activated"])
    assert created["secret"].startswith("whsec_")
    listed = api.get("/webhook-endpoints").get_json()["items"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in api.get(f"/webhook-endpoints/{created['id']}").get_json()


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "http://hooks.example.com/x", "not a url",
                                 "https://user:pw@hooks.example.com/x"])
def test_an_endpoint_url_that_is_not_https_is_refused(api: Api, url: str) -> None:
    resp = api.post("/webhook-endpoints", {"url": url})
    assert resp.status_code == 422
    assert "url" in resp.get_json()["errors"]


def test_an_unknown_event_type_is_refused(api: Api) -> None:
    resp = api.post("/webhook-endpoints", {"url": "https://hooks.example.com/x", "event_types": ["member.eaten"]})
    assert resp.status_code == 422
    assert "event_types" in resp.get_json()["errors"]


def test_managing_endpoints_needs_the_webhooks_permission(bridge: Bridge, api: Api, client: FlaskClient) -> None:
    reader = Api(client, make_key(bridge, "acme", ["users:read"]))
    assert reader.post("/webhook-endpoints", {"url": "https://hooks.example.com/x"}).status_code == 403
    assert reader.get("/webhook-endpoints").status_code == 403


def test_deleting_an_endpoint_removes_it(api: Api) -> None:
    created = register(api, "https://hooks.example.com/x")
    assert api.delete(f"/webhook-endpoints/{created['id']}").status_code == 204
    assert api.get("/webhook-endpoints").get_json()["items"] == []
    assert api.get(f"/webhook-endpoints/{created['id']}").status_code == 404


def test_a_receiver_verifying_with_standardwebhooks_accepts_every_delivery(
        bridge: Bridge, api: Api, worker: Worker, receiver: Receiver) -> None:
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    receiver.start()
    invited = [api.invite(f"person{i}@example.com") for i in range(4)]
    api.post(f"/invites/{invited[0]['id']}/revoke")
    drain(worker, bridge)
    with transaction(bridge.sessions) as session:
        event_ids = set(session.scalars(select(Event.id)))
    assert len(event_ids) >= 5
    assert receiver.rejected == 0
    assert set(receiver.accepted_ids) == event_ids
    types = [a["payload"]["type"] for a in receiver.accepted]
    assert types.count("invite.created") == 4 and "invite.revoked" in types
    assert all(a["payload"]["data"]["org"] == "acme" for a in receiver.accepted)
    log = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").get_json()["items"]
    assert {d["event_id"] for d in log} == event_ids
    assert all(d["status"] == "succeeded" and d["log"][-1]["success"] for d in log)


def test_with_the_receiver_down_and_back_every_event_arrives_once_and_none_is_lost(
        bridge: Bridge, api: Api, worker: Worker, receiver: Receiver) -> None:
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    for i in range(6):
        api.invite(f"person{i}@example.com")
    for _ in range(3):
        worker.run_once(time_limit=30)
        time.sleep(0.06)
    with transaction(bridge.sessions) as session:
        deliveries = list(session.scalars(select(WebhookDelivery)))
        failed_attempts = session.scalar(select(func.count()).select_from(WebhookAttempt)
                                         .where(WebhookAttempt.success.is_(False)))
    assert len(deliveries) == 6
    assert all(d.status == "pending" for d in deliveries)
    assert failed_attempts and failed_attempts >= 6
    for i in range(6, 9):
        api.invite(f"person{i}@example.com")
    receiver.start()
    drain(worker, bridge)
    with transaction(bridge.sessions) as session:
        event_ids = set(session.scalars(select(Event.id)))
        statuses = list(session.scalars(select(WebhookDelivery.status)))
    assert len(event_ids) == 9
    assert statuses == ["succeeded"] * 9
    assert set(receiver.accepted_ids) == event_ids
    assert sorted(successes_per_delivery(bridge).values()) == [1] * 9


def test_delivery_outcomes_and_the_waiting_retries_show_on_metrics(
        bridge: Bridge, api: Api, worker: Worker, receiver: Receiver, client: FlaskClient) -> None:
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    deliveries = "idp_bridge_webhook_deliveries_total"
    before = {outcome: metric(client, deliveries, outcome=outcome) for outcome in ("succeeded", "retrying")}
    ran = metric(client, "idp_bridge_jobs_total", kind=DELIVER_JOB, outcome="retry")
    api.invite("first@example.com")
    api.invite("second@example.com")

    worker.run_once(time_limit=30)  # the receiver is down

    with transaction(bridge.sessions) as session:
        failed_attempts = session.scalar(select(func.count()).select_from(WebhookAttempt))
    assert failed_attempts and failed_attempts >= 2
    assert metric(client, deliveries, outcome="retrying") == before["retrying"] + failed_attempts
    assert metric(client, "idp_bridge_jobs_total", kind=DELIVER_JOB, outcome="retry") == ran + failed_attempts
    assert metric(client, "idp_bridge_jobs_queued", kind=DELIVER_JOB) == 2
    assert metric(client, "idp_bridge_database_up") == 1

    receiver.start()
    drain(worker, bridge)

    assert metric(client, deliveries, outcome="succeeded") == before["succeeded"] + 2
    assert metric(client, "idp_bridge_jobs_queued", kind=DELIVER_JOB) == 0
    assert metric(client, "idp_bridge_jobs_oldest_due_seconds") == 0


def test_a_delivery_without_its_prefetched_row_reads_it_itself(
        bridge: Bridge, api: Api, worker: Worker, receiver: Receiver) -> None:
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    receiver.start()
    assert worker.kinds[DELIVER_JOB].prefetch is not None
    worker.kinds[DELIVER_JOB] = replace(worker.kinds[DELIVER_JOB], prefetch=None)
    api.invite("first@example.com")

    drain(worker, bridge)

    with transaction(bridge.sessions) as session:
        event_ids = set(session.scalars(select(Event.id)))
    assert event_ids and set(receiver.accepted_ids) == event_ids
    assert sorted(successes_per_delivery(bridge).values()) == [1] * len(event_ids)


def test_netrc_credentials_never_reach_a_webhook_url(bridge: Bridge, api: Api, worker: Worker, receiver: Receiver,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login machine-user password machine-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    receiver.start()
    api.invite("first@example.com")

    drain(worker, bridge)

    assert receiver.accepted and receiver.authorizations == [None] * len(receiver.authorizations)


def test_deliveries_go_through_the_proxy_the_environment_names(
        bridge: Bridge, api: Api, worker: Worker, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    receiver.start()
    api.invite("first@example.com")

    worker.run_once(time_limit=30)

    with transaction(bridge.sessions) as session:
        errors = list(session.scalars(select(WebhookAttempt.error)))
    assert errors and all(e == "proxy error" for e in errors)
    assert receiver.accepted == []


def test_after_a_secret_rotation_both_old_and_new_secrets_verify(
        bridge: Bridge, api: Api, worker: Worker, receiver: Receiver) -> None:
    endpoint = register(api, receiver.url)
    rotated = api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret").get_json()
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"]
    receiver.start()
    receiver.secrets = [endpoint["secret"]]
    api.invite("first@example.com")
    drain(worker, bridge)
    receiver.secrets = [rotated["secret"]]
    api.invite("second@example.com")
    drain(worker, bridge)
    assert len(receiver.accepted) == 2 and receiver.rejected == 0


def test_a_signature_with_a_wrong_secret_does_not_verify(bridge: Bridge, api: Api, worker: Worker,
                                                        receiver: Receiver) -> None:
    register(api, receiver.url)
    receiver.secrets = ["whsec_" + "QUJD" * 8]
    receiver.start()
    api.invite("first@example.com")
    worker.run_once(time_limit=30)
    assert receiver.accepted == [] and receiver.rejected >= 1
    with transaction(bridge.sessions) as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
    assert delivery.status == "pending" and delivery.last_status_code == 400


def test_an_endpoint_only_gets_the_event_types_it_asked_for(bridge: Bridge, api: Api, worker: Worker,
                                                           receiver: Receiver) -> None:
    endpoint = register(api, receiver.url, event_types=["invite.revoked"])
    receiver.secrets = [endpoint["secret"]]
    receiver.start()
    invite = api.invite("first@example.com")
    api.post(f"/invites/{invite['id']}/revoke")
    drain(worker, bridge)
    assert [a["payload"]["type"] for a in receiver.accepted] == ["invite.revoked"]


def test_an_endpoint_failing_for_a_day_is_disabled_and_audited(bridge: Bridge, api: Api, worker: Worker,
                                                              receiver: Receiver) -> None:
    endpoint = register(api, receiver.url)
    api.invite("first@example.com")
    with transaction(bridge.sessions) as session:
        session.get(WebhookEndpoint, endpoint["id"]).failing_since = utcnow() - timedelta(hours=25)  # type: ignore[union-attr]
    worker.run_once(time_limit=30)
    shown = api.get(f"/webhook-endpoints/{endpoint['id']}").get_json()
    assert shown["enabled"] is False and shown["disabled_reason"]
    with transaction(bridge.sessions) as session:
        audited = session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == endpoint["id"])).all()
        delivery = session.scalars(select(WebhookDelivery)).one()
    assert "webhook_endpoint.disabled" in audited
    assert delivery.status == "failed"


def test_manual_redelivery_sends_a_delivery_again(bridge: Bridge, api: Api, worker: Worker,
                                                 receiver: Receiver) -> None:
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    receiver.start()
    api.invite("first@example.com")
    drain(worker, bridge)
    delivery = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").get_json()["items"][0]
    resp = api.post(f"/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/redeliver")
    assert resp.status_code == 202
    drain(worker, bridge)
    assert receiver.accepted_ids[delivery["event_id"]] == 2
    log = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").get_json()["items"][0]["log"]
    assert [(a["manual"], a["success"]) for a in log] == [(False, True), (True, True)]


def test_two_workers_delivering_side_by_side_never_record_a_delivery_as_successful_twice(
        bridge: Bridge, api: Api, receiver: Receiver) -> None:
    endpoint = register(api, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    receiver.start()
    for i in range(12):
        api.invite(f"person{i}@example.com")
    workers = [make_worker(bridge, concurrency=3), make_worker(bridge, concurrency=3)]
    for _ in range(20):
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda w: w.run_once(time_limit=30), workers))
        with transaction(bridge.sessions) as session:
            pending = session.scalar(select(func.count()).select_from(WebhookDelivery)
                                     .where(WebhookDelivery.status != "succeeded"))
        if not pending:
            break
    with transaction(bridge.sessions) as session:
        deliveries = session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert deliveries == 12
    assert sorted(successes_per_delivery(bridge).values()) == [1] * 12
    assert len(receiver.accepted_ids) == 12
