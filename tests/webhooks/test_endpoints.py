"""The /webhooks endpoints as HTTP: only POST to a known path, bounded bodies, plain-text answers."""

from __future__ import annotations

import uuid

from flask import Flask
from werkzeug.test import Client

from idp_bridge.bridge import Bridge
from providers.jwks import JWKSCache
from tests.helpers import metric
from webhooks.inbound.routes import ROUTES, Endpoints, Receiver

from .conftest import inbound_count
from .test_keycloak_events import p2_event, signed


def test_unknown_paths_and_other_methods_are_refused_and_nothing_is_stored(app: Flask, bridge: Bridge) -> None:
    client = app.test_client()
    body = p2_event("access.LOGIN", str(uuid.uuid4()))
    assert client.post("/webhooks/nowhere", data=body, headers=signed(body)).status_code == 404
    assert client.post("/webhooks/keycloak/", data=body, headers=signed(body)).status_code == 404
    resp = client.get("/webhooks/keycloak")
    assert (resp.status_code, resp.headers["Allow"]) == (405, "POST")
    assert inbound_count(bridge) == 0


def test_answers_are_plain_text_that_browsers_do_not_sniff(app: Flask) -> None:
    body = p2_event("access.LOGIN", str(uuid.uuid4()))
    for resp in (app.test_client().post("/webhooks/keycloak", data=body, headers=signed(body)),
                 app.test_client().post("/webhooks/keycloak", data=body, headers=signed(body, "wrong"))):
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
        assert int(resp.headers["Content-Length"]) == len(resp.data)
    assert resp.status_code == 401 and resp.data == b"invalid signature"


def test_a_body_over_the_size_limit_is_refused_and_not_stored(bridge: Bridge) -> None:
    body = p2_event("access.LOGIN", str(uuid.uuid4()))
    receiver = Receiver(bridge, JWKSCache())
    client = Client(Endpoints(receiver, ROUTES, max_content_length=len(body) - 1))
    resp = client.post("/keycloak", data=body, headers=signed(body))
    assert resp.status_code == 413
    assert inbound_count(bridge) == 0
    fits = Client(Endpoints(receiver, ROUTES, max_content_length=len(body)))
    assert fits.post("/keycloak", data=body, headers=signed(body)).status_code == 202
    assert inbound_count(bridge) == 1


def test_inbound_requests_are_counted_by_endpoint_and_answer(app: Flask) -> None:
    client = app.test_client()
    body = p2_event("access.LOGIN", str(uuid.uuid4()))
    name = "idp_bridge_inbound_webhooks_total"
    stored, refused = metric(client, name, endpoint="keycloak", status="202"), metric(
        client, name, endpoint="keycloak", status="401")
    handled = metric(client, "idp_bridge_http_requests_total", handler="webhooks.keycloak", method="POST")

    assert client.post("/webhooks/keycloak", data=body, headers=signed(body)).status_code == 202
    assert client.post("/webhooks/keycloak", data=body, headers=signed(body, "wrong")).status_code == 401
    assert client.post("/webhooks/nowhere", data=body).status_code == 404

    assert metric(client, name, endpoint="keycloak", status="202") == stored + 1
    assert metric(client, name, endpoint="keycloak", status="401") == refused + 1
    assert metric(client, name, endpoint="nowhere") == 0
    assert metric(client, "idp_bridge_http_requests_total", handler="webhooks.keycloak", method="POST") == handled + 2
