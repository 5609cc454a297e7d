"""The inbound webhook endpoints: verify first, store raw, answer fast; the worker does the rest."""

from __future__ import annotations

import json
import threading

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from idp_bridge import inbox
from idp_bridge.bridge import Bridge
from idp_bridge.inbox import Interpreter
from idp_bridge.worker import JobKind
from webhooks.group_commit import GroupCommit, sqlite_writers_lock
from webhooks.inbound import google_risc, keycloak, microsoft_graph

PREFIX = "/webhooks"
bp = Blueprint("inbound_webhooks", __name__)
PLAIN_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))

INTERPRETERS: dict[str, Interpreter] = {
    keycloak.SOURCE: keycloak.interpret,
    microsoft_graph.SOURCE: microsoft_graph.interpret,
    google_risc.SOURCE: google_risc.interpret,
}


def mount(app: Flask) -> None:
    """Serve the inbound webhooks under /webhooks from a small app of their own, in front of `app`.

    Senders authenticate each request and are answered with an empty 202, so these endpoints need none of the
    main app's per-request machinery (cookie session, invitee-page rate limiting, API error handling); in
    their own app an event costs about half as much CPU before it is stored.
    """
    keycloak.bearer_verifiers(app.extensions["idp_bridge"])  # bad bearer settings fail at startup
    hooks = Flask(__name__)
    hooks.config["MAX_CONTENT_LENGTH"] = app.config["MAX_CONTENT_LENGTH"]
    hooks.extensions["idp_bridge"] = app.extensions["idp_bridge"]
    hooks.register_blueprint(bp)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {PREFIX: hooks})  # type: ignore[method-assign]


def _bridge() -> Bridge:
    b: Bridge = current_app.extensions["idp_bridge"]
    return b


def _plain(status: int, text: str = "") -> Response:
    return Response(text, status=status, mimetype="text/plain", headers=PLAIN_HEADERS)


def _ingestor(bridge: Bridge) -> GroupCommit[inbox.Incoming]:
    """This process's writer of inbound events: one short transaction for all events arriving together."""
    with _INGESTOR_LOCK:
        found = bridge.extras.get("webhooks_ingestor")
        if found is None:
            found = bridge.extras["webhooks_ingestor"] = GroupCommit(
                bridge.engine, inbox.write, name="inbox-writer", turn=sqlite_writers_lock(bridge.engine))
        assert isinstance(found, GroupCommit)
        return found


_INGESTOR_LOCK = threading.Lock()


def _store(source: str, event_id: str, body: str) -> None:
    headers = {"content-type": request.headers.get("Content-Type"),
               "user-agent": request.headers.get("User-Agent", "")[:200]}
    # Answered only once committed: a 2xx means the event is durable.
    _ingestor(_bridge()).submit(inbox.Incoming(source, event_id, body, headers))


@bp.post("/keycloak")
def keycloak_events() -> Response:
    """p2-inc keycloak-events (HMAC or realm-signed bearer JWT) or vymalo keycloak-webhook (Basic auth) events."""
    body = request.get_data()
    try:
        provider = keycloak.verify(_bridge(), body, signature=request.headers.get("X-Keycloak-Signature"),
                                   authorization=request.headers.get("Authorization"))
    except keycloak.KeysUnavailable as exc:
        current_app.logger.warning("cannot check a Keycloak bearer token: %s", exc)
        return _plain(503, "cannot verify now; retry later")
    if provider is None:
        return _plain(401, "invalid signature")
    try:
        payload = json.loads(body)
    except ValueError:
        return _plain(400, "body is not JSON")
    if not isinstance(payload, dict):
        return _plain(400, "body is not a JSON object")
    _store(f"{keycloak.SOURCE}:{provider}", keycloak.event_id(payload, body), body.decode())
    return _plain(202)


def _graph_validation() -> Response | None:
    token = request.args.get("validationToken")
    if token is None:
        return None
    # Echoed exactly (query decoding already undid the URL encoding); text/plain + nosniff so no browser
    # ever renders it as markup.
    return _plain(200, token)


@bp.post("/microsoft-graph")
@bp.post("/microsoft-graph/lifecycle")
def microsoft_graph_notifications() -> Response:
    """Graph change and lifecycle notifications; notifications without our clientState are acknowledged only."""
    validation = _graph_validation()
    if validation is not None:
        return validation
    items = microsoft_graph.split(_bridge(), request.get_data())
    if items:
        for provider, event_id, raw in items:
            _store(f"{microsoft_graph.SOURCE}:{provider}", event_id, raw)
    return _plain(202)


@bp.post("/google-risc")
def google_risc_events() -> Response:
    """Security Event Tokens from Google: 202 when valid (also for duplicates), 400 otherwise."""
    token = request.get_data().decode("ascii", errors="replace").strip()
    try:
        provider, claims = google_risc.verify(_bridge(), token)
    except google_risc.InvalidToken as exc:
        current_app.logger.info("rejected RISC token: %s", exc)
        return _plain(400, "invalid security event token")
    _store(f"{google_risc.SOURCE}:{provider}", str(claims["jti"]), token)
    return _plain(202)


def job_kinds() -> dict[str, JobKind]:
    """The job that processes stored inbound events."""
    return inbox.job_kind(INTERPRETERS)
