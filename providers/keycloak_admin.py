"""Keycloak Admin REST calls for provisioning, through python-keycloak's service-account connection.

Every response passes through `check()`, the one place where Keycloak's statuses and `errorMessage`
bodies become ProviderError codes (retryable or not, with Retry-After).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from keycloak import KeycloakOpenIDConnection, urls_patterns
from keycloak.exceptions import KeycloakConnectionError, KeycloakError
from requests import Response

from idp_bridge.errors import ProviderError
from idp_bridge.idp import InviteTarget, ProvisionResult
from idp_bridge.models import utcnow

SETUP_ACTIONS = ("UPDATE_PASSWORD", "VERIFY_EMAIL")
# Marks accounts idp-bridge created; realms whose user profile drops unmanaged attributes ignore it.
INVITE_ATTRIBUTE = "idp_bridge_invite"
CLOCK_SKEW_S = 120
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("errorMessage", "error_description", "error", "message"):
            if body.get(key):
                return str(body[key])
    return ""


def check(response: Response, expected: tuple[int, ...], what: str) -> Response:
    """Return the response when its status is expected; otherwise raise the matching ProviderError."""
    status = response.status_code
    if status in expected:
        return response
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    text = _message(body) or (response.text or "").strip()[:200] or response.reason or ""
    detail = f"Keycloak {what}: HTTP {status} {text}".strip()
    if status in RETRYABLE_STATUSES or status >= 500:
        raise ProviderError(detail, retryable=True, provider_code=f"http_{status}",
                            retry_after=retry_after_seconds(response.headers.get("Retry-After")))
    if status == 401:
        raise ProviderError(f"{detail} (check the service-account client id and secret)", retryable=False,
                            provider_code="unauthorized")
    if status == 403:
        raise ProviderError(f"{detail} (the client's service account needs the realm-management roles "
                            "manage-users and view-users)", retryable=False, provider_code="forbidden")
    code = {404: "not_found", 409: "conflict"}.get(status, f"http_{status}")
    raise ProviderError(detail, retryable=False, provider_code=code)


class KeycloakAdmin:
    """The users API of one realm; one instance (one keep-alive session) is shared by all worker threads."""

    def __init__(self, *, server_url: str, realm: str, client_id: str, client_secret: str,
                 timeout: float = 10.0, pool_size: int = 16, verify: bool | str = True) -> None:
        self.realm = realm
        self.connection = KeycloakOpenIDConnection(
            # python-keycloak urljoins relative paths, so a server under a path prefix needs the slash.
            server_url=server_url.rstrip("/") + "/", realm_name=realm, client_id=client_id,
            client_secret_key=client_secret, timeout=timeout,  # type: ignore[arg-type]  # requests takes floats
            verify=verify, pool_maxsize=pool_size,
            # No transparent retries (urllib3 would sleep out Retry-After in a worker thread): failures reach
            # check(), and the job retries with backoff and provider-wide pacing.
            max_retries=0)
        self._token_lock = threading.Lock()

    def _path(self, pattern: str, **params: str) -> str:
        return pattern.format(**{"realm-name": self.realm, **params})

    def _ensure_token(self) -> None:
        # One token request at a time: threads arriving together reuse the token the first one fetched.
        conn = self.connection
        if conn.token is not None and conn.expires_at is not None and utcnow() < conn.expires_at:
            return
        with self._token_lock:
            if conn.token is None or conn.expires_at is None or utcnow() >= conn.expires_at:
                try:
                    conn.get_token()
                except KeycloakConnectionError as exc:
                    raise ProviderError(f"Keycloak token endpoint unreachable: {exc}", retryable=True,
                                        provider_code="connection") from exc
                except KeycloakError as exc:
                    status = exc.response_code or 0
                    detail = f"Keycloak token request: HTTP {status} {exc.error_message!s}"[:500]
                    if status in RETRYABLE_STATUSES or status >= 500:
                        raise ProviderError(detail, retryable=True, provider_code=f"http_{status}") from exc
                    raise ProviderError(f"{detail} (check client_id/client_secret and that the client has "
                                        "service accounts enabled)", retryable=False,
                                        provider_code="unauthorized") from exc

    def _call(self, method: str, path: str, expected: tuple[int, ...], what: str, **kwargs: Any) -> Response:
        self._ensure_token()
        raw = getattr(self.connection, f"raw_{method}")
        try:
            response: Response = raw(path, **kwargs)
        except KeycloakConnectionError as exc:
            raise ProviderError(f"Keycloak {what}: {exc.__cause__ or exc}", retryable=True,
                                provider_code="connection") from exc
        return check(response, expected, what)

    def find_by_email(self, email: str) -> dict[str, Any] | None:
        """The user whose email equals this one exactly (case-insensitive), if any."""
        response = self._call("get", self._path(urls_patterns.URL_ADMIN_USERS), (200,), "user search",
                              email=email, exact="true", briefRepresentation="false", max="2")
        wanted = email.casefold()
        found = [u for u in response.json() if str(u.get("email") or "").casefold() == wanted]
        return found[0] if found else None

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The full representation of a user, or None when it no longer exists."""
        try:
            response = self._call("get", self._path(urls_patterns.URL_ADMIN_USER, id=quote(user_id, safe="")),
                                  (200,), "read user")
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return None
            raise
        user: dict[str, Any] = response.json()
        return user

    def create(self, representation: dict[str, Any]) -> str:
        """Create a user and return its id (from the 201's Location header)."""
        response = self._call("post", self._path(urls_patterns.URL_ADMIN_USERS), (201,), "create user",
                              data=_json(representation))
        location = response.headers.get("Location", "")
        user_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not user_id:
            raise ProviderError("Keycloak create user: 201 without a Location header", retryable=True,
                                provider_code="no_location")
        return user_id

    def update(self, user_id: str, representation: dict[str, Any]) -> None:
        """Replace a user's representation (send the full one: omitted fields may be reset)."""
        self._call("put", self._path(urls_patterns.URL_ADMIN_USER, id=quote(user_id, safe="")), (204,),
                   "update user", data=_json(representation))

    def delete(self, user_id: str) -> bool:
        """Delete a user; False when it was already gone."""
        try:
            self._call("delete", self._path(urls_patterns.URL_ADMIN_USER, id=quote(user_id, safe="")), (204,),
                       "delete user")
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return False
            raise
        return True

    def execute_actions_email(self, user_id: str, actions: list[str], *, client_id: str, redirect_uri: str,
                              lifespan: int) -> None:
        """Have Keycloak mail the user a link to perform these required actions, then return to redirect_uri."""
        path = self._path(urls_patterns.URL_ADMIN_SEND_UPDATE_ACCOUNT, id=quote(user_id, safe=""))
        self._call("put", path, (204,), "execute-actions email", data=_json(actions),
                   client_id=client_id, redirect_uri=redirect_uri, lifespan=str(lifespan))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


class KeycloakProvisioner:
    """Find-or-create a realm account for an invite; bind existing accounts, never reset them."""

    def __init__(self, admin: KeycloakAdmin, *, client_id: str) -> None:
        self.admin = admin
        self.client_id = client_id

    def _ours(self, user: dict[str, Any], target: InviteTarget, since: datetime | None) -> bool:
        """Whether an account found by email is the one an earlier attempt for this invite created."""
        marks = (user.get("attributes") or {}).get(INVITE_ATTRIBUTE)
        if marks:
            return target.invite_id in marks
        if since is None:
            return False  # no earlier attempt of this invite ever tried to create an account
        # Realms that drop unmanaged attributes: an account created after our earlier create attempt and
        # still waiting for its password comes from that attempt (a crash between create and record).
        created_ms = int(user.get("createdTimestamp") or 0)
        pending = "UPDATE_PASSWORD" in (user.get("requiredActions") or [])
        return pending and created_ms >= int((since.timestamp() - CLOCK_SKEW_S) * 1000)

    def provision(self, target: InviteTarget, *, idp_mail: bool, since: datetime | None,
                  before_create: Callable[[], None] | None = None) -> ProvisionResult:
        """Bind the account with the invitee's email, or create it and send Keycloak's setup email.

        `since` is when an earlier attempt first tried to create; `before_create` lets the caller record that.
        """
        if not target.email:
            raise ProviderError("a Keycloak account needs an email; the invite has none", retryable=False,
                                provider_code="no_email")
        user = self.admin.find_by_email(target.email)
        created = user is not None and self._ours(user, target, since)
        if user is None:
            first, last = _split_name(target.name)
            representation: dict[str, Any] = {
                "username": target.identifier, "email": target.email, "firstName": first or None,
                "lastName": last or None, "enabled": True, "emailVerified": False,
                "requiredActions": list(SETUP_ACTIONS), "attributes": {INVITE_ATTRIBUTE: [target.invite_id]},
            }
            if before_create is not None:
                before_create()
            try:
                user_id = self.admin.create(representation)
                created = True
            except ProviderError as exc:
                if exc.provider_code != "conflict":
                    raise
                # Someone (or our own earlier attempt) created it meanwhile: bind it, never make a second one.
                user = self.admin.find_by_email(target.email)
                if user is None:
                    raise ProviderError(f"{exc.detail}; an account with username {target.identifier!r} exists "
                                        "under another email", retryable=False, provider_code="conflict") from exc
                created = self._ours(user, target, since)
                user_id = str(user["id"])
        else:
            user_id = str(user["id"])
        data: dict[str, Any] = {"username": (user or {}).get("username") or target.identifier}
        if target.keycloak_idp:
            data["kc_idp_hint"] = target.keycloak_idp
        mailed = False
        if created and idp_mail:
            self.admin.execute_actions_email(user_id, list(SETUP_ACTIONS), client_id=self.client_id,
                                             redirect_uri=target.link, lifespan=max(60, target.expires_in_seconds))
            mailed = True
        return ProvisionResult(user_id=user_id, created=created, data=data, mailed=mailed)

    def deprovision(self, user_id: str, *, created: bool) -> str:
        """Delete an account we created that never finished setup; leave every other account alone."""
        if not created:
            return "kept: the account existed before the invite"
        user = self.admin.get(user_id)
        if user is None:
            return "gone"
        if "UPDATE_PASSWORD" not in (user.get("requiredActions") or []):
            return "kept: the invitee already set up the account"
        self.admin.delete(user_id)
        return "deleted"

    def set_enabled(self, user_id: str, enabled: bool) -> str:
        """Disable or enable the bound account, sending back its full representation."""
        user = self.admin.get(user_id)
        if user is None:
            return "gone"
        if bool(user.get("enabled")) == enabled:
            return "unchanged"
        user["enabled"] = enabled
        self.admin.update(user_id, user)
        return "enabled" if enabled else "disabled"
