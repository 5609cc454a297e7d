"""Keycloak Admin REST calls for provisioning: a service-account token on the shared session, keep-alive admin calls.

Every response passes through `check()`, the one place where Keycloak's statuses and `errorMessage`
bodies become ProviderError codes (retryable or not, with Retry-After).
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import certifi
import requests
from keycloak import urls_patterns
from requests.utils import get_environ_proxies

from idp_bridge.domain.providers import InviteTarget, ProvisionResult
from idp_bridge.errors import ConfigError, ProviderError
from idp_bridge.identifiers import same_email
from idp_bridge.models import utcnow
from providers.http import ProviderHTTP

SETUP_ACTIONS = ("UPDATE_PASSWORD", "VERIFY_EMAIL")
# Marks accounts idp-bridge created; realms whose user profile drops unmanaged attributes ignore it.
INVITE_ATTRIBUTE = "idp_bridge_invite"
CLOCK_SKEW_S = 120
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A token is renewed once this share of its lifetime has passed (python-keycloak's default too).
TOKEN_LIFETIME_FRACTION = 0.9


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


@dataclass(frozen=True)
class Answer:
    """An HTTP response as check() reads it, whichever client carried it (with the headers we use)."""

    status: int
    body: bytes
    reason: str = ""
    location: str | None = None
    retry_after: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("errorMessage", "error_description", "error", "message"):
            if body.get(key):
                return str(body[key])
    return ""


def check(response: Answer, expected: tuple[int, ...], what: str) -> Answer:
    """Return the response when its status is expected; otherwise raise the matching ProviderError."""
    status = response.status
    if status in expected:
        return response
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    text = _message(body) or response.body.decode("utf-8", "replace").strip()[:200] or response.reason
    detail = f"Keycloak {what}: HTTP {status} {text}".strip()
    if status in RETRYABLE_STATUSES or status >= 500:
        raise ProviderError(detail, retryable=True, provider_code=f"http_{status}",
                            retry_after=retry_after_seconds(response.retry_after))
    if status == 401:
        raise ProviderError(f"{detail} (check the service-account client id and secret)", retryable=False,
                            provider_code="unauthorized")
    if status == 403:
        raise ProviderError(f"{detail} (the client's service account needs the realm-management roles "
                            "manage-users and view-users)", retryable=False, provider_code="forbidden")
    code = {404: "not_found", 409: "conflict"}.get(status, f"http_{status}")
    raise ProviderError(detail, retryable=False, provider_code=code)


class KeepAlivePool:
    """Keep-alive HTTP/1.1 connections to one server, shared by all threads (idle ones reused LIFO).

    Built on http.client: urllib3 spends about 0.3 ms more CPU per call here (URL parsing, response
    wrapping), a third of what a provisioning's three admin calls cost. A pooled connection is checked
    before reuse, so a server that closed it while idle is not sent a request on it. Nothing is retried.
    """

    def __init__(self, base_url: str, *, timeout: float, size: int, verify: bool | str) -> None:
        parts = urlsplit(base_url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.size = size
        self.context: ssl.SSLContext | None = None
        if self.tls:
            self.context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else certifi.where())
            if verify is False:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.proxy = _proxy_for(base_url)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        if self.proxy is None:
            if self.context is not None:
                return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        host, port, credentials = self.proxy
        if self.context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                                           context=self.context)
            conn.set_tunnel(self.host, self.port, headers=credentials)
            return conn
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def _checkout(self) -> http.client.HTTPConnection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.sock is not None and not _closed_by_peer(conn.sock):
                    return conn
                conn.close()
        return self._connect()

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        """One request on a pooled connection; raises OSError or http.client.HTTPException on failure."""
        path = self.prefix + target
        if self.proxy is not None and self.context is None:
            # A plain-HTTP proxy takes the absolute URL and its own credentials on every request.
            path = f"http://{self.host}:{self.port}{path}"
            headers = {**headers, **self.proxy[2]}
        conn = self._checkout()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return Answer(response.status, data, response.reason, response.getheader("Location"),
                      response.getheader("Retry-After"))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether an idle keep-alive socket became readable: the server closed it (or sent what it must not)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _proxy_for(base_url: str) -> tuple[str, int, dict[str, str]] | None:
    """The proxy the environment names for this URL (as requests would use): host, port, auth header."""
    proxy = get_environ_proxies(base_url).get(urlsplit(base_url).scheme)
    if not proxy:
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http":
        raise ConfigError("HTTPS_PROXY", f"{parts.scheme}:// proxies are not supported for the Keycloak admin API; "
                          "use an http:// proxy or list the Keycloak host in NO_PROXY")
    credentials: dict[str, str] = {}
    if parts.username:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        credentials["Proxy-Authorization"] = f"Basic {token}"
    return parts.hostname or "", parts.port or 80, credentials


class KeycloakAdmin:
    """The users API of one realm; one instance (one connection pool, one token) serves all worker threads.

    The service-account token is requested on the providers' shared pooled session (python-keycloak names the
    endpoints) and reused until shortly before it expires. The admin calls go through KeepAlivePool: through
    requests each call costs about three times the CPU, which bounds how many invites a worker provisions per second.
    No call is retried transparently (a repeated create or setup mail is not harmless): failures reach
    check(), and the job retries with backoff and provider-wide pacing.
    """

    def __init__(self, *, server_url: str, realm: str, client_id: str, client_secret: str,
                 timeout: float = 10.0, pool_size: int = 16, verify: bool | str = True,
                 http: ProviderHTTP | None = None) -> None:
        self.realm = realm
        self.base_url = server_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        # No transparent retries on the shared session: requests' urllib3 would sleep out a 429's Retry-After
        # inside a worker thread.
        self.tokens = (http if http is not None else ProviderHTTP()).session(timeout=timeout, verify=verify)
        self.http = KeepAlivePool(self.base_url, timeout=timeout, size=pool_size, verify=verify)
        self._authorization: str | None = None
        self._renew_at = 0.0
        self._token_lock = threading.Lock()

    def _path(self, pattern: str, **params: str) -> str:
        return pattern.format(**{"realm-name": quote(self.realm, safe=""), **params})

    def authorization(self, refused: str | None = None) -> str:
        """The Authorization header; a new token when the cached one is due for renewal or was refused."""
        current = self._authorization
        if current is not None and current != refused and time.monotonic() < self._renew_at:
            return current
        # One token request at a time: threads arriving together reuse the token the first one fetched.
        with self._token_lock:
            current = self._authorization
            if current is not None and current != refused and time.monotonic() < self._renew_at:
                return current
            token = self._request_token()
            lifetime = float(token.get("expires_in") or 60)
            self._authorization = f"Bearer {token['access_token']}"
            self._renew_at = time.monotonic() + lifetime * TOKEN_LIFETIME_FRACTION
            return self._authorization

    def _request_token(self) -> dict[str, Any]:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret}
        try:
            raw = self.tokens.post(f"{self.base_url}/{self._path(urls_patterns.URL_TOKEN)}", data=form)
        except requests.RequestException as exc:
            raise ProviderError(f"Keycloak token endpoint unreachable: {exc}", retryable=True,
                                provider_code="connection") from exc
        answer = Answer(raw.status_code, raw.content, raw.reason or "", retry_after=raw.headers.get("Retry-After"))
        try:
            token: dict[str, Any] = check(answer, (200,), "token request").json()
        except ProviderError as exc:
            if exc.retryable:
                raise  # with the token endpoint's own Retry-After, if it sent one
            raise ProviderError(f"{exc.detail} (check client_id/client_secret and that the client has service "
                                "accounts enabled)"[:500], retryable=False, provider_code="unauthorized") from exc
        except ValueError as exc:
            raise ProviderError("Keycloak token request: the answer is not JSON", retryable=True,
                                provider_code="bad_token_answer") from exc
        if not token.get("access_token"):
            raise ProviderError("Keycloak token request: no access_token in the answer", retryable=True,
                                provider_code="bad_token_answer")
        return token

    def _send(self, method: str, url: str, body: bytes | None, authorization: str, what: str) -> Answer:
        headers = {"Authorization": authorization, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            return self.http.request(method, url, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ProviderError(f"Keycloak {what}: {reason}", retryable=True, provider_code="connection") from exc

    def _call(self, method: str, path: str, expected: tuple[int, ...], what: str, *,
              query: Mapping[str, str] | None = None, body: Any = None) -> Answer:
        url = f"/{path}?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else f"/{path}"
        data = _json(body).encode() if body is not None else None
        authorization = self.authorization()
        answer = self._send(method, url, data, authorization, what)
        if answer.status == 401:
            # The token ran out early or was revoked: one new token, one more try.
            answer = self._send(method, url, data, self.authorization(refused=authorization), what)
        return check(answer, expected, what)

    def find_by_email(self, email: str) -> dict[str, Any] | None:
        """The user whose email is the same mailbox as this one (canonical form, SPEC §3 rule 5), if any."""
        # Keycloak's own exact search lower-cases with Java's Unicode rules; the canonical check decides.
        response = self._call("GET", self._path(urls_patterns.URL_ADMIN_USERS), (200,), "user search",
                              query={"email": email, "exact": "true", "briefRepresentation": "false", "max": "2"})
        found = [u for u in response.json() if same_email(str(u.get("email") or ""), email)]
        return found[0] if found else None

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The full representation of a user, or None when it no longer exists."""
        try:
            response = self._call("GET", self._path(urls_patterns.URL_ADMIN_USER, id=quote(user_id, safe="")),
                                  (200,), "read user")
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return None
            raise
        user: dict[str, Any] = response.json()
        return user

    def create(self, representation: dict[str, Any]) -> str:
        """Create a user and return its id (from the 201's Location header)."""
        response = self._call("POST", self._path(urls_patterns.URL_ADMIN_USERS), (201,), "create user",
                              body=representation)
        location = response.location or ""
        user_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not user_id:
            raise ProviderError("Keycloak create user: 201 without a Location header", retryable=True,
                                provider_code="no_location")
        return user_id

    def update(self, user_id: str, representation: dict[str, Any]) -> None:
        """Replace a user's representation (send the full one: omitted fields may be reset)."""
        self._call("PUT", self._path(urls_patterns.URL_ADMIN_USER, id=quote(user_id, safe="")), (204,),
                   "update user", body=representation)

    def delete(self, user_id: str) -> bool:
        """Delete a user; False when it was already gone."""
        try:
            self._call("DELETE", self._path(urls_patterns.URL_ADMIN_USER, id=quote(user_id, safe="")), (204,),
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
        self._call("PUT", path, (204,), "execute-actions email", body=actions,
                   query={"client_id": client_id, "redirect_uri": redirect_uri, "lifespan": str(lifespan)})


    def organization(self, organization_id: str) -> dict[str, Any] | None:
        """An organization of the realm by id (Keycloak 26+), or None when there is none with that id."""
        path = self._path(urls_patterns.URL_ADMIN_ORGANIZATION_BY_ID, organization_id=quote(organization_id, safe=""))
        try:
            found: dict[str, Any] = self._call("GET", path, (200,), "read organization").json()
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return None
            raise
        return found

    def organizations(self, *, search: str | None, first: int, count: int) -> list[dict[str, Any]]:
        """One page of the realm's organizations, those whose name or domain contains `search` when given."""
        query = {"briefRepresentation": "true", "first": str(first), "max": str(count)}
        if search is not None:
            query |= {"search": search, "exact": "false"}
        found: list[dict[str, Any]] = self._call("GET", self._path(urls_patterns.URL_ADMIN_ORGANIZATIONS), (200,),
                                                 "organization search", query=query).json()
        return found

    def add_organization_member(self, organization_id: str, user_id: str) -> bool:
        """Add a user to an organization; False when it already was a member (Keycloak answers 409)."""
        path = self._path(urls_patterns.URL_ADMIN_ORGANIZATION_MEMBERS, organization_id=quote(organization_id, safe=""))
        try:
            self._call("POST", path, (201, 204), "add organization member", body=user_id)
        except ProviderError as exc:
            if exc.provider_code == "conflict":
                return False
            raise
        return True

    def remove_organization_member(self, organization_id: str, user_id: str) -> bool:
        """Remove a user from an organization; False when it was not a member (Keycloak answers 404)."""
        path = self._path(urls_patterns.URL_ADMIN_ORGANIZATION_DEL_MEMBER_BY_ID,
                          organization_id=quote(organization_id, safe=""), user_id=quote(user_id, safe=""))
        try:
            self._call("DELETE", path, (204,), "remove organization member")
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return False
            raise
        return True


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
        hint = target.extra.get("keycloak_idp")
        if hint:
            data["kc_idp_hint"] = hint
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


# Organizations a search may list before an alias counts as unknown: one realm rarely holds more.
ORGANIZATION_PAGE = 100
ORGANIZATION_PAGES = 50


class KeycloakOrganizations:
    """Members of the realm's organizations (Keycloak 26+), named by alias or id; ids are resolved once."""

    def __init__(self, admin: KeycloakAdmin) -> None:
        self.admin = admin
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, organization: str) -> str:
        """The id of the organization with this id or alias; ProviderError `not_found` when the realm has none."""
        with self._lock:
            known = self._ids.get(organization)
        if known is not None:
            return known
        found = self.admin.organization(organization)
        org_id = str(found["id"]) if found is not None else self._by_alias(organization)
        with self._lock:
            self._ids[organization] = org_id
        return org_id

    def _by_alias(self, alias: str) -> str:
        # `search` matches names and domains; an alias usually is the name. Otherwise every page is read.
        for search in (alias, None):
            for page in range(ORGANIZATION_PAGES):
                batch = self.admin.organizations(search=search, first=page * ORGANIZATION_PAGE,
                                                 count=ORGANIZATION_PAGE)
                for org in batch:
                    if org.get("alias") == alias:
                        return str(org["id"])
                if len(batch) < ORGANIZATION_PAGE:
                    break
        raise ProviderError(f"Keycloak has no organization with the alias or id {alias!r}", retryable=False,
                            provider_code="not_found")

    def forget(self, organization: str) -> None:
        """Resolve this organization afresh next time (it was deleted, or recreated under the same alias)."""
        with self._lock:
            self._ids.pop(organization, None)

    def add_member(self, organization: str, user_id: str) -> str:
        org_id = self.resolve(organization)
        try:
            return "added" if self.admin.add_organization_member(org_id, user_id) else "already"
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                self.forget(organization)
                raise ProviderError(f"{exc.detail} (the organization {organization!r} is gone; resolving it again)",
                                    retryable=True, provider_code="organization_gone") from exc
            raise

    def remove_member(self, organization: str, user_id: str) -> str:
        org_id = self.resolve(organization)
        return "removed" if self.admin.remove_organization_member(org_id, user_id) else "not_member"
