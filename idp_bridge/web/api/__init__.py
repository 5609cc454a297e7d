"""The JSON API under /api/v1: operations, auth, the request's unit of work, RFC 9457 problems."""

from __future__ import annotations

import importlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, has_request_context, request
from flask_limiter import Limiter
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.strategies import RateLimiter
from pydantic import BaseModel
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException, InternalServerError

from idp_bridge import audit, jsontext, logs
from idp_bridge.audit import Actor
from idp_bridge.bridge import Bridge
from idp_bridge.errors import (
    BadRequest,
    BridgeError,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProviderError,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
    lazy_gettext,
)
from idp_bridge.models import Organization

# Aliased: route submodules named orgs/invites/members become attributes of this package on import.
from idp_bridge.services import api_keys as key_service
from idp_bridge.services import orgs as org_service
from idp_bridge.services.api_keys import Principal
from idp_bridge.store.db import reset_write_intent, set_write_intent, transaction, writing
from idp_bridge.web.i18n import said
from idp_bridge.web.requestid import request_id_of

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE = "urn:idp-bridge:problem:"
RESERVED_PROBLEM_KEYS = frozenset({"type", "title", "status", "detail", "code", "request_id"})

# The one place where domain errors become HTTP statuses.
STATUS_BY_ERROR: list[tuple[type[BridgeError], int]] = [
    (ValidationFailed, 422),
    (BadRequest, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (ProviderError, 502),
    (ConfigError, 500),
]

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def status_for(error: BridgeError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 400


def problem(status: int, title: str, detail: str, code: str, **extra: Any) -> Response:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail,
                            "code": code}
    body.update({k: v for k, v in extra.items() if v is not None})
    # An extension member (RFC 9457 §3.2): the id the request's log lines carry, to quote when reporting it.
    request_id = request_id_of(request.environ) if has_request_context() else None
    if request_id is not None:
        body["request_id"] = request_id
    resp = Response(json.dumps(body, default=str), status=status, mimetype=PROBLEM_JSON)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="idp-bridge"'
    return resp


def problem_from(error: BridgeError) -> Response:
    """The problem for a refusal: `detail` and the field messages in the request's Accept-Language (English by
    default), `type` and `title` always as they are."""
    # RFC 9457 reserves type/title/status/detail; a domain detail of the same name (an invite's
    # current `status`) is published as current_<name> instead of clashing with them.
    extra = {(f"current_{k}" if k in RESERVED_PROBLEM_KEYS else k): v for k, v in error.extra.items()}
    if isinstance(error, ValidationFailed):
        extra["errors"] = {field: [said(m) for m in messages] for field, messages in error.errors.items()}
    return problem(status_for(error), str(error.title), said(error.detail), error.code, **extra)


@dataclass(frozen=True)
class Query:
    """A documented query parameter."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass
class Operation:
    """One API operation; the OpenAPI document is generated from these."""

    method: str
    rule: str
    endpoint: str
    summary: str
    tag: str
    permission: str | None
    body: type[BaseModel] | None = None
    body_required: bool = True
    response: type[BaseModel] | None = None
    status: int = 200
    query: list[Query] = field(default_factory=list)
    errors: tuple[int, ...] = ()
    extra_responses: dict[str, Any] = field(default_factory=dict)
    request_content: dict[str, Any] = field(default_factory=dict)
    platform_only: bool = False

    @property
    def route(self) -> str:
        """The registered route, e.g. `POST /api/v1/orgs/{org}/invites`: names the operation, never a URL."""
        return f"{self.method} {bp.url_prefix}{self.rule}"


OPERATIONS: list[Operation] = []


@dataclass
class Call:
    """What a handler gets: the unit of work, the caller and the resolved organization."""

    session: Session
    bridge: Bridge
    principal: Principal
    org: Organization | None
    body: Any

    @property
    def actor(self) -> Actor:
        return self.principal.actor(client_ip())

    def must_org(self) -> Organization:
        assert self.org is not None
        return self.org

    @contextmanager
    def outside_transaction(self) -> Iterator[None]:
        """End the transaction so far (it has only read), run the block with none open, then go on writing.

        For a call that waits on the network (a DNS lookup): no transaction, and on SQLite no write lock, is
        held while it waits; what the block learned is written in a transaction of its own, which re-reads.
        """
        self.session.commit()
        yield
        set_write_intent(True)


def bridge() -> Bridge:
    b: Bridge = current_app.extensions["idp_bridge"]
    return b


def bridge_of(app: Flask) -> Bridge:
    b: Bridge = app.extensions["idp_bridge"]
    return b


def client_ip() -> str | None:
    return request.remote_addr


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _audit_denied(op: Operation, reason: str, principal: Principal | None) -> None:
    """Refused calls leave an audit event and nothing else (written in its own transaction)."""
    b = bridge()
    # A refused GET still runs under its read intent here: without `writing` this transaction would begin as a
    # reader and fail with "database is locked" on SQLite when a concurrent writer commits before its insert.
    with writing(), transaction(b.sessions) as session:
        actor = principal.actor(client_ip()) if principal else Actor("anonymous", "", client_ip())
        # The event lands in the trail of the key's own org (none without a key), never of the org the URL
        # names, and its target is the registered route: the URL and headers are whatever the caller chose.
        audit.record(session, actor, "auth.denied", org_id=principal.org_id if principal else None,
                     target_type="request", target_id=op.route, details={"reason": reason})


def _read_body(op: Operation) -> Any:
    if op.body is None and not op.request_content:
        return None
    raw = request.get_data(cache=True)
    if not raw:
        if op.body_required and op.body is not None:
            raise ValidationFailed({"body": [lazy_gettext("a JSON body is required")]})
        return {}
    mimetype = request.mimetype
    if op.request_content and mimetype in op.request_content and mimetype != "application/json":
        return raw
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        accepted = ", ".join(op.request_content or {"application/json": None})
        raise UnsupportedMediaType(lazy_gettext("send the body as %(accepted)s", accepted=accepted))
    try:
        data = jsontext.loads(raw)
    except jsontext.TooDeep as exc:
        raise BadRequest(lazy_gettext("the body is %(problem)s; at most %(most)s levels are accepted", problem=str(exc),
                                      most=exc.max_depth)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(lazy_gettext("the body is not valid JSON: %(problem)s", problem=str(exc))) from exc
    if (where := _nul_at(data, "")) is not None:
        raise ValidationFailed({where or "body": [lazy_gettext("must not contain NUL (\\u0000) characters")]})
    return data


def _nul_at(value: Any, path: str) -> str | None:
    """The location of a NUL character in parsed JSON, if any."""
    # PostgreSQL text cannot hold NUL; refusing it up front makes both databases answer alike.
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return path or "body"
            if (found := _nul_at(item, inner)) is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _nul_at(item, f"{path}.{i}" if path else str(i))) is not None:
                return found
    return None


def _refuse_nul_in_url(op: Operation, path: dict[str, Any]) -> None:
    """NUL in a path segment names nothing; in a documented query parameter it is invalid input."""
    if any("\x00" in str(v) for v in path.values()):
        raise NotFound(lazy_gettext("no such resource"))
    bad: dict[str, list[str]] = {q.name: [lazy_gettext("must not contain NUL characters")] for q in op.query
           if "\x00" in "".join(request.args.getlist(q.name))}
    if bad:
        raise ValidationFailed(bad)


# Counted per client IP in the invitee pages' limiter, so both follow rate_limit_storage_url.
AUTH_FAILURE_SCOPE = "api-auth-failures"
AUTH_FAILURE_LIMIT = "idp_bridge_api_auth_failure_limit"
# Path prefix → renderer of HTTP errors, for faces that answer errors in their own format.
ERROR_FACES = "idp_bridge_error_faces"


def _auth_failures() -> tuple[RateLimiter, RateLimitItem, str]:
    """The shared limiter, the configured limit and this client's counter key."""
    limiter: Limiter = current_app.extensions["idp_bridge_limiter"]
    return limiter.limiter, current_app.extensions[AUTH_FAILURE_LIMIT], client_ip() or ""


def _refuse_over_auth_failure_limit() -> Response | None:
    """A 429 problem for a client past its failed-authentication budget, before any key is looked at."""
    # Refusing valid keys too while the window lasts leaves a key-guessing client no answer that tells a
    # right guess from a wrong one, and keeps a flood from costing a key lookup and an audit row each.
    strategy, limit, ip = _auth_failures()
    if strategy.test(limit, AUTH_FAILURE_SCOPE, ip):
        return None
    reset_at = strategy.get_window_stats(limit, AUTH_FAILURE_SCOPE, ip).reset_time
    resp = problem(429, "Too many failed authentications",
                   "too many requests from this address failed to authenticate; try again later",
                   "too_many_auth_failures")
    resp.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
    return resp


def _count_auth_failure() -> None:
    """Count one failed authentication against this client's budget."""
    strategy, limit, ip = _auth_failures()
    strategy.hit(limit, AUTH_FAILURE_SCOPE, ip)


Handler = Callable[..., Any]


def operation(method: str, rule: str, *, summary: str, tag: str, permission: str | None,
              body: type[BaseModel] | None = None, response: type[BaseModel] | None = None, status: int = 200,
              query: list[Query] | None = None, errors: tuple[int, ...] = (), body_required: bool = True,
              platform_only: bool = False, extra_responses: dict[str, Any] | None = None,
              request_content: dict[str, Any] | None = None,
              reads_first: bool = False) -> Callable[[Handler], Handler]:
    """Register an API operation: authenticate, authorize, run in one transaction, serialize.

    `reads_first`: the transaction begins as a reader (no SQLite write lock); the handler ends it with
    `Call.outside_transaction` before it writes.
    """

    def decorate(fn: Handler) -> Handler:
        op = Operation(method, rule, fn.__name__, summary, tag, permission, body, body_required, response,
                       status, query or [], errors, extra_responses or {}, request_content or {}, platform_only)
        OPERATIONS.append(op)

        def view(**path: Any) -> Any:
            b = bridge()
            if (refused := _refuse_over_auth_failure_limit()) is not None:
                return refused
            org_slug = path.get("org")
            write = method not in ("GET", "HEAD")
            token = set_write_intent(write and not reads_first)
            denied: tuple[str, Principal | None] | None = None
            try:
                with transaction(b.sessions) as session:
                    try:
                        principal = key_service.authenticate(session, _presented_key())
                    except Unauthenticated:
                        denied = ("invalid or missing API key", None)
                        raise
                    if platform_only and not principal.platform:
                        denied = ("needs a platform-wide key", principal)
                        raise Forbidden(lazy_gettext("this operation needs a platform-wide API key"))
                    if permission and not principal.may(permission):
                        denied = (f"missing permission {permission}", principal)
                        raise Forbidden(lazy_gettext("this API key lacks the permission %(permission)s",
                                                     permission=permission),
                                        missing_permission=permission)
                    _refuse_nul_in_url(op, path)
                    org = None
                    if org_slug is not None:
                        try:
                            org = org_service.get(session, org_slug)
                        except NotFound:
                            if not principal.platform:
                                # An org key learns nothing about other organizations.
                                denied = ("key of another organization", principal)
                                raise Forbidden(lazy_gettext("this API key belongs to another organization")) from None
                            raise
                        if not principal.can_reach(org):
                            denied = ("key of another organization", principal)
                            raise Forbidden(lazy_gettext("this API key belongs to another organization"))
                        # For the rest of this request's log lines (its context is the request's own).
                        logs.bind(org=org.id)
                    call = Call(session, b, principal, org, _read_body(op))
                    result = fn(call, **{k: v for k, v in path.items() if k != "org"})
                    if write:
                        key_service.touch(session, principal.key_id)
            except BridgeError as exc:
                if denied is not None:
                    if denied[1] is None:
                        # Counted once the read transaction is over: the storage may be a network hop away.
                        _count_auth_failure()
                    _audit_denied(op, denied[0], denied[1])
                return problem_from(exc)
            finally:
                reset_write_intent(token)
            return _respond(op, result)

        flask_rule = re.sub(r"\{(\w+)\}", r"<\1>", rule)
        bp.add_url_rule(flask_rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return fn

    return decorate


def _respond(op: Operation, result: Any) -> Any:
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status=204)
    payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    return Response(json.dumps(payload, default=str), status=op.status, mimetype="application/json")


# Route modules under idp_bridge/web/api/; add a feature's module here to publish its operations.
ROUTE_MODULES = ["orgs", "invites", "members", "webhook_endpoints", "bulk", "provisioning", "domains"]


def install(app: Flask) -> None:
    """Register the API blueprint, its routes and its problem handlers."""
    app.extensions[AUTH_FAILURE_LIMIT] = parse_limit(bridge_of(app).settings.api_auth_failure_rate_limit)
    for module in ROUTE_MODULES:
        # Operations register themselves when their module is first imported.
        importlib.import_module(f"idp_bridge.web.api.{module}")

    app.register_blueprint(bp)

    @app.errorhandler(BridgeError)
    def _domain_error(exc: BridgeError) -> Response:
        return problem_from(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        # Other faces with their own error format (SCIM) register a renderer for their path prefix.
        for prefix, render in app.extensions.get(ERROR_FACES, {}).items():
            if request.path.startswith(prefix):
                return render(exc)
        if not request.path.startswith("/api/") and request.path not in ("/openapi.json",):
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        resp = problem(exc.code or 500, exc.name or "Error", exc.description or "", code)
        valid = getattr(exc, "valid_methods", None)
        if exc.code == 405 and valid:
            resp.headers["Allow"] = ", ".join(sorted(valid))
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        from idp_bridge.web.redact import redactor

        current_app.logger.exception("unhandled error on %s %s", request.method, redactor().path(request.path))
        for prefix, render in app.extensions.get(ERROR_FACES, {}).items():
            if request.path.startswith(prefix):
                return render(InternalServerError("the server failed; the request was rolled back"))
        if request.path.startswith("/api/"):
            return problem(500, "Internal server error", "the server failed; the request was rolled back",
                           "internal_error")
        return Response("Internal server error", status=500, mimetype="text/plain")
