"""POST /scim/v2/{org}/Users in its common case, answered in front of the Flask app.

A directory creates its users one request each, thousands in a row (Entra and Okta provision that way), so what a
single create costs sets how long a first sync takes. The Flask app's per-request machinery (request and app
contexts, routing, the page limiter's hooks, the response object) costs about as much as the create itself, and
the common case needs none of it: an active user, in a plain JSON body, created with a key that may provision the
org it names, from a client within its failed-authentication budget, with a free identifier and a free seat.

This endpoint answers exactly that case: it reads the environ directly, validates the body once (the plain shape
directories send through web/scim_plain.py, any other through scim2-models), writes the rows in one transaction of
compiled statements (services.directory.create_directly) and answers 201. Every other request, and every request
it cannot finish (an error, a refusal, a conflict, a full org, a query string), goes on to the Flask app unchanged,
body included, having written nothing: the SCIM blueprint then answers it as it answers every request, with its
errors, audit of refusals and failure counting. So there is one place that refuses, and this one only succeeds.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from pydantic import ValidationError
from scim2_models import Context, SCIMException
from sqlalchemy.exc import SQLAlchemyError

from idp_bridge import jsontext
from idp_bridge.bridge import Bridge
from idp_bridge.errors import BridgeError
from idp_bridge.metrics import HANDLER_KEY
from idp_bridge.services import api_keys as key_service
from idp_bridge.services import directory
from idp_bridge.store.db import reset_write_intent, set_write_intent
from idp_bridge.store.group_commit import describe
from idp_bridge.web import headers, scim
from idp_bridge.web.api import AUTH_FAILURE_LIMIT, AUTH_FAILURE_SCOPE, _nul_at
from idp_bridge.web.scim_plain import plain_dump

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
PATH = re.compile(re.escape(scim.PREFIX) + r"/([A-Za-z0-9._~-]+)/Users")
# A create body is a few hundred bytes; a larger one (or one of unknown length) goes the general way.
MAX_BODY = 64 * 1024
ENDPOINT = f"{scim.bp.name}.{scim.create_user.__name__}"


class _NotCommon(Exception):
    """The request is not the common case: roll back whatever the transaction did and hand it on."""


class DirectCreate:
    """WSGI middleware: the common case of POST /scim/v2/{org}/Users, everything else to `app` (module doc)."""

    def __init__(self, app: WSGIApp, flask_app: Flask, bridge: Bridge) -> None:
        self.app = app
        self.flask_app = flask_app
        self.bridge = bridge
        self.base = bridge.settings.public_url.rstrip("/") + scim.PREFIX
        self.hsts = [("Strict-Transport-Security", headers.HSTS)] if bridge.settings.public_url.startswith(
            "https://") else []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING"):
            return self.app(environ, start_response)
        found = PATH.fullmatch(environ.get("PATH_INFO") or "")
        mimetype = str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()
        length = str(environ.get("CONTENT_LENGTH", ""))
        if (found is None or mimetype not in (scim.SCIM_JSON, "application/json") or not length.isdigit()
                or int(length) > MAX_BODY):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(length))
        answer = self._created(environ, found.group(1), body)
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            return self.app(environ, start_response)
        payload, location = answer
        environ[HANDLER_KEY] = ENDPOINT
        start_response("201 CREATED", [("Content-Type", scim.SCIM_JSON), ("Content-Length", str(len(payload))),
                                       ("Location", location), *self.hsts])
        return [payload]

    def _created(self, environ: dict[str, Any], org: str, body: bytes) -> tuple[bytes, str] | None:
        """The 201's body and Location, the user created; None, nothing written, for any other outcome."""
        ip = str(environ.get("REMOTE_ADDR") or "")
        strategy = self.flask_app.extensions["idp_bridge_limiter"].limiter
        try:
            within = strategy.test(self.flask_app.extensions[AUTH_FAILURE_LIMIT], AUTH_FAILURE_SCOPE, ip)
        except Exception:
            # The limiter's storage failed: the general path meets the same failure and answers it.
            return None
        if not within:
            return None
        scheme, _, value = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else ""
        if not key:
            return None
        try:
            data = jsontext.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or _nul_at(data, "") is not None:
            return None
        token = set_write_intent(True)
        try:
            dumped = plain_dump(data)
            if dumped is not None:
                user = scim.directory_user_from_dump(dumped)
            else:
                validated = scim.USER.model_validate(data, scim_ctx=Context.RESOURCE_CREATION_REQUEST,
                                                     scim_policy=scim.POLICY)
                dumped = scim._dump(validated)
                user = scim.directory_user(validated, dumped)
            with self.bridge.engine.begin() as connection:
                presented = scim.authorize_on(connection, org, key)
                actor = presented.principal.actor(ip)
                member = directory.create_directly(connection, self.bridge, actor, presented.principal.org_id or "",
                                                   user)
                if member is None:
                    raise _NotCommon
                key_service.touch_on(connection, presented)
        except (_NotCommon, scim.Denied, BridgeError, ValidationError, SCIMException):
            return None
        except SQLAlchemyError as exc:
            # Rolled back (an identifier taken meanwhile, a busy database): the general path decides, and says why.
            log.debug("direct SCIM create handed on: %s", describe(exc))
            return None
        except Exception:
            # A fault of this path, before anything was committed: logged, and the general path answers.
            log.exception("direct SCIM create failed; handed on")
            return None
        finally:
            reset_write_intent(token)
        location = f"{self.base}/{org}/Users/{member.id}"
        return json.dumps(scim.created_body(location, member, dumped)).encode(), location


def mount(app: Flask, bridge: Bridge) -> None:
    """Answer the common SCIM create in front of `app`'s own WSGI app."""
    app.wsgi_app = DirectCreate(app.wsgi_app, app, bridge)  # type: ignore[method-assign]
