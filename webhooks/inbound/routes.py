"""The inbound webhook endpoints: verify first, store raw, answer fast; the worker does the rest."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wsgi import get_input_stream

from idp_bridge import inbox, jsontext
from idp_bridge.bridge import Bridge
from idp_bridge.inbox import Interpreter
from idp_bridge.metrics import HANDLER_KEY, INBOUND_WEBHOOKS
from idp_bridge.store.group_commit import GroupCommit, Unavailable
from idp_bridge.web.api import PROBLEM_JSON, PROBLEM_TYPE
from idp_bridge.web.requestid import request_id_of
from idp_bridge.worker import JobKind
from providers.jwks import JWKSCache, KeysUnavailable
from webhooks.inbound import google_risc, keycloak, microsoft_graph

PREFIX = "/webhooks"
log = logging.getLogger(__name__)

INTERPRETERS: dict[str, Interpreter] = {
    keycloak.SOURCE: keycloak.interpret,
    microsoft_graph.SOURCE: microsoft_graph.interpret,
    google_risc.SOURCE: google_risc.interpret,
}


@dataclass(frozen=True)
class Inbound:
    """One POST to a webhook endpoint: its WSGI environ and the body, already read."""

    environ: dict[str, Any]
    body: bytes

    def header(self, name: str) -> str | None:
        """A request header by its WSGI key (e.g. HTTP_AUTHORIZATION, CONTENT_TYPE)."""
        value = self.environ.get(name)
        return value if isinstance(value, str) else None

    def arg(self, name: str) -> str | None:
        """The first value of a query-string parameter."""
        # WSGI hands the query string over as latin-1; its bytes are UTF-8 (percent-escapes included).
        query = str(self.environ.get("QUERY_STRING", "")).encode("latin-1").decode("utf-8", "replace")
        for key, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
            if key == name:
                return value
        return None


class Receiver:
    """What the inbound endpoints need, built once per process by the composition root.

    The bridge, the writer that stores events (one short transaction for all events arriving together), and the
    verifiers of the sources that sign with keys fetched from the IdP (through the deployment's JWKS cache).
    """

    def __init__(self, bridge: Bridge, jwks: JWKSCache) -> None:
        self.bridge = bridge
        # Bad bearer settings fail here, at startup.
        self.keycloak_bearer = keycloak.bearer_verifiers(bridge, jwks)
        self.google_risc = google_risc.verifier(bridge, jwks)
        # On PostgreSQL a batch is one statement (inbox.write), atomic on its own: it runs in autocommit.
        self.ingestor: GroupCommit[inbox.Incoming] = GroupCommit(
            bridge.engine, inbox.write, name="inbox-writer", one_statement=True)

    def store(self, req: Inbound, source: str, event_id: str, body: str) -> None:
        """Store one event; returns only once committed, so a 2xx means the event is durable."""
        headers = {"content-type": req.header("CONTENT_TYPE"),
                   "user-agent": (req.header("HTTP_USER_AGENT") or "")[:200]}
        self.ingestor.submit(inbox.Incoming(source, event_id, body, headers))


# What a handler answers: the status and a short plain-text body.
Reply = tuple[int, str]
Handler = Callable[[Receiver, Inbound], Reply]
STATUS_LINES = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request", 401: "401 Unauthorized",
                404: "404 Not Found", 405: "405 Method Not Allowed", 413: "413 Request Entity Too Large",
                500: "500 Internal Server Error", 503: "503 Service Unavailable"}
PLAIN_TEXT = "text/plain; charset=utf-8"
COMMON_HEADERS = [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]


def _problem(status: int, title: str, detail: str, code: str, request_id: str | None) -> str:
    """An RFC 9457 problem body, as the API writes them."""
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail, "code": code}
    return json.dumps(body | ({"request_id": request_id} if request_id else {}))


class Endpoints:
    """The inbound webhooks as a WSGI app of their own, mounted under /webhooks in front of the main app.

    Senders authenticate each request and are answered with a short plain-text status (an RFC 9457 problem with
    Retry-After when the database cannot take the event now), so these endpoints need none of the main app's
    per-request machinery (cookie session, invitee-page rate limiting, API error handling) nor Flask's request
    and app contexts: the environ is read directly and the answer written with one start_response, which
    roughly halves the CPU an event costs before it is stored.
    """

    def __init__(self, receiver: Receiver, routes: dict[str, Handler], *, max_content_length: int) -> None:
        self.receiver = receiver
        self.routes = routes
        self.max_content_length = max_content_length

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        handler = self.routes.get(path)
        extra: list[tuple[str, str]] = []
        content_type = PLAIN_TEXT
        if handler is None:
            status, text = 404, "not found"
        elif environ.get("REQUEST_METHOD") != "POST":
            status, text = 405, "use POST"
            extra = [("Allow", "POST")]
        else:
            try:
                body = get_input_stream(environ, max_content_length=self.max_content_length).read()
            except RequestEntityTooLarge:
                status, text = 413, "body too large"
                extra = [("Connection", "close")]
            else:
                try:
                    status, text = handler(self.receiver, Inbound(environ, body))
                except Unavailable as exc:
                    # Not stored, and the writer is backing off (it logged that once): the sender retries later.
                    status, text = 503, _problem(503, "Service unavailable", "the event could not be stored now; "
                                                 "send it again after Retry-After seconds", "store_unavailable",
                                                 request_id_of(environ))
                    extra = [("Retry-After", exc.retry_after_header)]
                    content_type = PROBLEM_JSON
                except Exception:
                    # Not stored (or not known to be): the sender retries.
                    log.exception("inbound webhook %s failed", environ.get("PATH_INFO"))
                    status, text = 500, "internal error"
        if handler is not None:
            endpoint = path.lstrip("/")
            environ[HANDLER_KEY] = f"webhooks.{endpoint}"
            INBOUND_WEBHOOKS.labels(endpoint, str(status)).inc()
        payload = text.encode()
        start_response(STATUS_LINES[status], [("Content-Type", content_type), *COMMON_HEADERS,
                                              ("Content-Length", str(len(payload))), *extra])
        return [payload]


def mount(app: Flask, receiver: Receiver) -> None:
    """Serve the inbound webhooks under /webhooks, in front of `app`."""
    hooks = Endpoints(receiver, ROUTES, max_content_length=app.config["MAX_CONTENT_LENGTH"])
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {PREFIX: hooks})  # type: ignore[method-assign]


def keycloak_events(receiver: Receiver, req: Inbound) -> Reply:
    """p2-inc keycloak-events (HMAC or realm-signed bearer JWT) or vymalo keycloak-webhook (Basic auth) events."""
    try:
        provider = keycloak.verify(receiver.bridge, req.body, signature=req.header("HTTP_X_KEYCLOAK_SIGNATURE"),
                                   authorization=req.header("HTTP_AUTHORIZATION"), bearer=receiver.keycloak_bearer)
    except KeysUnavailable as exc:
        log.warning("cannot check a Keycloak bearer token: %s", exc)
        return 503, "cannot verify now; retry later"
    if provider is None:
        return 401, "invalid signature"
    try:
        payload = jsontext.loads(req.body)
    except jsontext.TooDeep:
        return 400, "body is nested too deeply"
    except ValueError:
        return 400, "body is not JSON"
    if not isinstance(payload, dict):
        return 400, "body is not a JSON object"
    receiver.store(req, f"{keycloak.SOURCE}:{provider}", keycloak.event_id(payload, req.body), req.body.decode())
    return 202, ""


def microsoft_graph_notifications(receiver: Receiver, req: Inbound) -> Reply:
    """Graph change and lifecycle notifications; notifications without our clientState are acknowledged only."""
    token = req.arg("validationToken")
    if token is not None:
        # Echoed exactly (query decoding already undid the URL encoding); text/plain + nosniff so no browser
        # ever renders it as markup.
        return 200, token
    try:
        notifications = microsoft_graph.split(receiver.bridge, req.body)
    except jsontext.TooDeep:
        return 400, "body is nested too deeply"
    except ValueError:
        return 400, "body is not JSON"
    for provider, event_id, raw in notifications:
        receiver.store(req, f"{microsoft_graph.SOURCE}:{provider}", event_id, raw)
    return 202, ""


def google_risc_events(receiver: Receiver, req: Inbound) -> Reply:
    """Security Event Tokens from Google: 202 when valid (also for duplicates), 400 otherwise."""
    token = req.body.decode("ascii", errors="replace").strip()
    try:
        provider, claims = google_risc.verify(receiver.bridge, token, receiver.google_risc)
    except google_risc.InvalidToken as exc:
        log.info("rejected RISC token: %s", exc)
        return 400, "invalid security event token"
    receiver.store(req, f"{google_risc.SOURCE}:{provider}", str(claims["jti"]), token)
    return 202, ""


ROUTES: dict[str, Handler] = {
    "/keycloak": keycloak_events,
    "/microsoft-graph": microsoft_graph_notifications,
    "/microsoft-graph/lifecycle": microsoft_graph_notifications,
    "/google-risc": google_risc_events,
}


def job_kinds() -> dict[str, JobKind]:
    """The job that processes stored inbound events."""
    return inbox.job_kind(INTERPRETERS)
