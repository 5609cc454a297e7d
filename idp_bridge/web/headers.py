"""Response headers that protect the API and its documentation: no caching of secrets, no sniffing, no framing."""

from __future__ import annotations

import types
import typing
from typing import Any

from flask import Flask, Response, request
from pydantic import BaseModel

# Response fields that hold a credential or a one-time secret (an API key, a webhook signing secret, an invite
# link or code); a response model with such a field, at any depth, is never stored by a cache.
SECRET_FIELDS = frozenset({"key", "secret", "link", "code", "token", "password", "client_secret"})
# A field of another name marks itself with Field(json_schema_extra=SECRET_MARK).
SECRET_MARK = {"x-secret": True}
HSTS = "max-age=31536000"
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
DOCUMENT_PATHS = ("/docs", "/openapi.json")


def carries_secret(model: Any, _seen: frozenset[type] = frozenset()) -> bool:
    """Whether a response model (or a type wrapping one: list, Optional, dict) holds a secret field."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        if model in _seen:
            return False
        seen = _seen | {model}
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra
            if name in SECRET_FIELDS or (isinstance(extra, dict) and extra.get("x-secret")):
                return True
            if carries_secret(info.annotation, seen):
                return True
        return False
    origin = typing.get_origin(model)
    if origin is not None or isinstance(model, types.UnionType):
        return any(carries_secret(arg, _seen) for arg in typing.get_args(model))
    return False


def no_store_endpoints() -> frozenset[str]:
    """Flask endpoints of the API operations whose response carries a secret, from the operation registry."""
    from idp_bridge.web.api import OPERATIONS, bp

    return frozenset(f"{bp.name}.{op.endpoint}" for op in OPERATIONS if carries_secret(op.response))


def install(app: Flask, *, public_url: str) -> None:
    """Add the headers to every response of the app (the API's problems and 404s included)."""
    secret_endpoints = no_store_endpoints()
    https = public_url.startswith("https://")

    @app.after_request
    def _protect(resp: Response) -> Response:
        path = request.path
        if request.endpoint in secret_endpoints:
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["Pragma"] = "no-cache"
        if path.startswith("/api/") or path in DOCUMENT_PATHS:
            resp.headers["X-Content-Type-Options"] = "nosniff"
            resp.headers["X-Frame-Options"] = "DENY"
            if "Content-Security-Policy" not in resp.headers:
                resp.headers["Content-Security-Policy"] = DOCS_CSP if path == "/docs" else API_CSP
        if https:
            # Only where browsers reach us over https: over plain http the header is meaningless and, sent
            # from a development instance on localhost, would pin every localhost port to https.
            resp.headers["Strict-Transport-Security"] = HSTS
        return resp
