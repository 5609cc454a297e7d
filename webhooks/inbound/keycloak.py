"""Keycloak events: p2-inc keycloak-events (X-Keycloak-Signature HMAC) and vymalo keycloak-webhook (Basic auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from idp_bridge.bridge import Bridge
from idp_bridge.inbox import IdpSignal, InboundView
from idp_bridge.security import same

SOURCE = "keycloak"
# First login, or finishing the required actions set at provisioning, proves the invitee owns the account.
ACTIVATING = frozenset({"LOGIN", "UPDATE_PASSWORD", "VERIFY_EMAIL"})
USER_PATH = re.compile(r"^users/([^/]+)$")


def _providers(bridge: Bridge) -> list[Any]:
    return [p for p in bridge.providers.values() if getattr(p, "kind", "") == "keycloak"]


def _option(provider: Any, key: str) -> str:
    return str(getattr(provider, "options", {}).get(key) or "")


def verify(bridge: Bridge, body: bytes, headers: Mapping[str, str]) -> str | None:
    """The name of the Keycloak provider whose secret authenticates this request, or None."""
    headers = {k.lower(): v for k, v in headers.items()}
    signature = (headers.get("x-keycloak-signature") or "").strip().lower().removeprefix("sha256=")
    if signature:
        for provider in _providers(bridge):
            secret = _option(provider, "webhook_secret")
            if secret and same(hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), signature):
                return str(provider.name)
        return None
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    for provider in _providers(bridge):
        want_user, want_password = _option(provider, "webhook_username"), _option(provider, "webhook_password")
        # Both compared, always, so timing says nothing about which half was wrong.
        if want_user and want_password and same(user, want_user) & same(password, want_password):
            return str(provider.name)
    return None


def event_id(payload: Mapping[str, Any], body: bytes) -> str:
    """p2 sends `uid`, vymalo `id`; without either the exact body is its own identity."""
    found = payload.get("uid") or payload.get("id")
    return str(found) if found else "sha256:" + hashlib.sha256(body).hexdigest()


def _time(payload: Mapping[str, Any]) -> datetime | None:
    raw = payload.get("time")
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw / 1000, UTC)
    return None


def _representation(payload: Mapping[str, Any]) -> dict[str, Any]:
    raw = payload.get("representation")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return raw if isinstance(raw, dict) else {}


def interpret(bridge: Bridge, view: InboundView) -> list[IdpSignal]:
    """Turn a stored Keycloak event into signals about the Keycloak user it concerns."""
    payload = json.loads(view.body)
    provider = view.source.split(":", 1)[1]
    kind = str(payload.get("type") or "")
    when = _time(payload)
    details = {"event": kind, "keycloak_event_id": view.event_id}
    if kind.startswith("admin.") or payload.get("operationType"):
        resource, _, operation = kind.removeprefix("admin.").partition("-")
        resource = str(payload.get("resourceType") or resource)
        operation = str(payload.get("operationType") or operation)
        match = USER_PATH.match(str(payload.get("resourcePath") or ""))
        if resource != "USER" or match is None:
            return []
        user_id = match.group(1)
        if operation == "DELETE":
            return [IdpSignal("deleted", provider, user_id, when, details)]
        if operation == "UPDATE":
            enabled = _representation(payload).get("enabled")
            if enabled is False:
                return [IdpSignal("deactivated", provider, user_id, when, details)]
            if enabled is True:
                return [IdpSignal("reactivated", provider, user_id, when, details)]
        return []
    name = kind.removeprefix("access.")
    auth = payload.get("authDetails") if isinstance(payload.get("authDetails"), dict) else {}
    user_id = (auth or {}).get("userId") or payload.get("userId")
    if name in ACTIVATING and user_id:
        return [IdpSignal("activated", provider, str(user_id), when, details)]
    return []
