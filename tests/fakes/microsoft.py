"""A stateful fake of the Microsoft identity platform (what msal calls) and Microsoft Graph v1.0.

Covers client-credentials tokens, B2B guest invitations, guest users and change-notification
subscriptions. Served on two roots in `responses` mode (login.microsoftonline.com and
graph.microsoft.com); in served mode one loopback server answers both path families.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

import requests

from .http import (
    FakeRequest,
    FakeResponse,
    FakeService,
    FaultPlan,
    Route,
    basic_credentials,
    bearer,
    jwt_shaped,
    route,
)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
PERSONAL_ACCOUNTS_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MICROSOFT_LOGIN_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"}
)
DEFAULT_USER_SELECT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
USER_PROPERTIES = (
    *DEFAULT_USER_SELECT,
    "accountEnabled",
    "createdDateTime",
    "creationType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "otherMails",
    "userType",
)
READ_ONLY_USER_PROPERTIES = frozenset(
    {"id", "createdDateTime", "creationType", "externalUserState", "externalUserStateChangeDateTime"}
)
WRITABLE_USER_PROPERTIES = frozenset(USER_PROPERTIES) - READ_ONLY_USER_PROPERTIES
# Maximum subscription lifetimes in minutes; directory resources get 29 days.
MAX_SUBSCRIPTION_MINUTES = {"users": 41760, "groups": 41760}
OTHER_SUBSCRIPTION_MINUTES = 4230
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
_FILTER = re.compile(r"^\s*(mail|userPrincipalName|userType)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)


class ValidationReply(NamedTuple):
    """What a notification endpoint answered to Graph's validation request."""

    status: int
    content_type: str
    body: str


Validator = Callable[[str, str], ValidationReply]


def http_validator(timeout: float = 10.0, verify: bool | str = True) -> Validator:
    """A validator that performs Graph's real handshake: POST {url}?validationToken=... within `timeout`."""

    def validate(url: str, token: str) -> ValidationReply:
        answer = requests.post(
            url,
            params={"validationToken": token},
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=timeout,
            verify=verify,
        )
        return ValidationReply(answer.status_code, answer.headers.get("Content-Type", ""), answer.text)

    return validate


def _iso(moment: dt.datetime) -> str:
    # Graph writes seven fractional digits and a Z.
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Invitation:
    """One accepted POST /invitations, as Graph returned it."""

    id: str
    email: str
    user_id: str
    redirect_url: str
    send_message: bool
    display_name: str | None
    message_info: Mapping[str, Any]
    status: str


class FakeMicrosoft(FakeService):
    """Entra ID token endpoint (as msal uses it) plus Graph invitations, users and subscriptions.

    Inspect `users`, `invitations`, `subscriptions`, `notifications`, `calls`;
    flip a guest with `accept(user_id)`; set `b2b_invitations_enabled = False`
    to get Graph's 403 for tenants that forbid guest invitations.
    """

    def __init__(
        self,
        tenant_id: str = "6f1c7a52-3b1e-4c5a-9d7e-2a4b8c0d1e2f",
        client_id: str = "0b7e5c1a-9f3d-4e2b-8a6c-1d2e3f4a5b6c",
        client_secret: str = "entra-secret",
        *,
        tenant_domain: str = "contoso.onmicrosoft.com",
        login_url: str = "https://login.microsoftonline.com",
        graph_url: str = "https://graph.microsoft.com",
        app_roles: Iterable[str] = ("User.Invite.All", "User.ReadWrite.All"),
        b2b_invitations_enabled: bool = True,
        token_lifetime: int = 3599,
        require_https_notifications: bool = True,
        notification_validator: Validator | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(faults)
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenant_domain = tenant_domain
        self.login_url = login_url.rstrip("/")
        self.graph_url = graph_url.rstrip("/")
        self.roots = (self.login_url, self.graph_url)
        self.app_roles = frozenset(app_roles)
        self.b2b_invitations_enabled = b2b_invitations_enabled
        self.token_lifetime = token_lifetime
        self.require_https_notifications = require_https_notifications
        self.notification_validator = notification_validator
        self.service_principal_id = str(uuid.uuid4())
        self.users: dict[str, dict[str, Any]] = {}
        self.invitations: list[Invitation] = []
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.tokens: dict[str, float] = {}
        self._sequence = 0
        self._routes = self._build_routes()

    @property
    def authority(self) -> str:
        """The msal authority for this tenant in responses mode."""
        return f"{self.login_url}/{self.tenant_id}"

    def add_user(
        self,
        mail: str,
        *,
        display_name: str | None = None,
        user_type: str = "Guest",
        external_user_state: str | None = "PendingAcceptance",
        user_id: str | None = None,
    ) -> str:
        """Pre-seed a directory user (a guest by default) and return its object id."""
        with self._lock:
            return str(self._new_user(mail, display_name, user_type, external_user_state, user_id)["id"])

    def find_by_mail(self, mail: str) -> dict[str, Any] | None:
        """The stored user whose mail matches, case-insensitively."""
        wanted = mail.lower()
        with self._lock:
            return next((u for u in self.users.values() if (u["mail"] or "").lower() == wanted), None)

    def accept(self, user_id: str) -> list[dict[str, Any]]:
        """Redeem a guest's invitation; returns (and queues) the change notifications Graph would send."""
        with self._lock:
            user = self.users[user_id]
            user["externalUserState"] = "Accepted"
            user["externalUserStateChangeDateTime"] = _iso(_now())
            return self.change_notifications(user_id, "updated")

    def change_notifications(self, user_id: str, change_type: str) -> list[dict[str, Any]]:
        """Build and queue one notification payload per subscription watching this user."""
        payloads = []
        with self._lock:
            for sub in self.subscriptions.values():
                watched = sub["resource"].lower().strip("/")
                if watched not in {"users", f"users/{user_id}".lower()}:
                    continue
                if change_type not in sub["changeType"].split(","):
                    continue
                self._sequence += 1
                item: dict[str, Any] = {
                    "subscriptionId": sub["id"],
                    "subscriptionExpirationDateTime": sub["expirationDateTime"],
                    "changeType": change_type,
                    "resource": f"Users/{user_id}",
                    "resourceData": {
                        "@odata.type": "#Microsoft.Graph.User",
                        "@odata.id": f"Users/{user_id}",
                        "id": user_id,
                        "organizationId": self.tenant_id,
                        "sequenceNumber": self._sequence,
                    },
                    "tenantId": self.tenant_id,
                }
                if sub["clientState"] is not None:
                    item["clientState"] = sub["clientState"]
                payload = {"value": [item]}
                self.notifications.append({"url": sub["notificationUrl"], "payload": payload})
                payloads.append(payload)
        return payloads

    def lifecycle_notification(self, subscription_id: str, event: str = "reauthorizationRequired") -> dict[str, Any]:
        """Build and queue a lifecycle notification (reauthorizationRequired, subscriptionRemoved, missed)."""
        with self._lock:
            sub = self.subscriptions[subscription_id]
            item: dict[str, Any] = {
                "subscriptionId": sub["id"],
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "tenantId": self.tenant_id,
                "lifecycleEvent": event,
            }
            if sub["clientState"] is not None:
                item["clientState"] = sub["clientState"]
            payload = {"value": [item]}
            url = sub["lifecycleNotificationUrl"] or sub["notificationUrl"]
            self.notifications.append({"url": url, "payload": payload})
            return payload

    def expire_tokens(self) -> None:
        """Make every issued access token expired."""
        with self._lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def routes(self) -> Sequence[Route]:
        """The endpoints this fake serves."""
        return self._routes

    def _build_routes(self) -> list[Route]:
        tenant = r"/(?P<tenant>[^/]+)"
        users = r"/v1\.0/users"
        subs = r"/v1\.0/subscriptions"
        return [
            route("GET", r"/common/discovery/instance", "GET /common/discovery/instance", self._instance),
            route(
                "GET",
                tenant + r"/v2\.0/\.well-known/openid-configuration",
                "GET /{tenant}/v2.0/.well-known",
                self._oidc,
            ),
            route("GET", tenant + r"/discovery/v2\.0/keys", "GET /{tenant}/discovery/v2.0/keys", self._keys),
            route("POST", tenant + r"/oauth2/v2\.0/token", "POST /{tenant}/oauth2/v2.0/token", self._token),
            route("POST", r"/v1\.0/invitations", "POST /v1.0/invitations", self._invite),
            route("GET", users, "GET /v1.0/users", self._list_users),
            route("GET", users + r"/(?P<user_id>[^/]+)", "GET /v1.0/users/{id}", self._get_user),
            route("PATCH", users + r"/(?P<user_id>[^/]+)", "PATCH /v1.0/users/{id}", self._update_user),
            route("DELETE", users + r"/(?P<user_id>[^/]+)", "DELETE /v1.0/users/{id}", self._delete_user),
            route("GET", subs, "GET /v1.0/subscriptions", self._list_subscriptions),
            route("POST", subs, "POST /v1.0/subscriptions", self._create_subscription),
            route("GET", subs + r"/(?P<sub_id>[^/]+)", "GET /v1.0/subscriptions/{id}", self._get_subscription),
            route(
                "PATCH",
                subs + r"/(?P<sub_id>[^/]+)",
                "PATCH /v1.0/subscriptions/{id}",
                self._patch_subscription,
            ),
            route(
                "DELETE",
                subs + r"/(?P<sub_id>[^/]+)",
                "DELETE /v1.0/subscriptions/{id}",
                self._delete_subscription,
            ),
        ]

    def _is_graph(self, request: FakeRequest) -> bool:
        return request.path.startswith("/v1.0/") or request.path.startswith("/beta/")

    def unavailable(self, request: FakeRequest, retry_after: int) -> FakeResponse:
        """Graph's or the token service's 503, with Retry-After."""
        if self._is_graph(request):
            return self._graph_error(
                request, 503, "serviceNotAvailable", "Service Unavailable", {"Retry-After": str(retry_after)}
            )
        return self._aad_error(
            503,
            "temporarily_unavailable",
            90006,
            "The service is temporarily unavailable.",
            {"Retry-After": str(retry_after)},
        )

    def too_many_requests(self, request: FakeRequest, retry_after: int) -> FakeResponse:
        """Graph's or the token service's 429, with Retry-After."""
        if self._is_graph(request):
            return self._graph_error(
                request,
                429,
                "TooManyRequests",
                "Too many requests. Please retry again later.",
                {"Retry-After": str(retry_after)},
            )
        return self._aad_error(
            429,
            "temporarily_unavailable",
            50196,
            "The server terminated an operation because it encountered a client request loop.",
            {"Retry-After": str(retry_after)},
        )

    def no_route(self, request: FakeRequest, method_allowed: bool) -> FakeResponse:
        """Graph's answer to a path or method it does not know."""
        if not method_allowed:
            return self._graph_error(
                request,
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        segment = request.path.rstrip("/").rsplit("/", 1)[-1]
        return self._graph_error(request, 400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    def _aad_error(
        self, status: int, error: str, code: int, text: str, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = _now().strftime("%Y-%m-%d %H:%M:%SZ")
        return FakeResponse.json(
            status,
            {
                "error": error,
                "error_description": (
                    f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}"
                ),
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"{self.login_url}/error?code={code}",
            },
            headers,
            content_type="application/json; charset=utf-8",
        )

    def _graph_headers(self, request: FakeRequest) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        return {
            "request-id": request_id,
            "client-request-id": request.header("client-request-id") or request_id,
        }

    def _graph_json(self, request: FakeRequest, status: int, payload: Any) -> FakeResponse:
        return FakeResponse.json(status, payload, self._graph_headers(request), content_type=ODATA_JSON)

    def _graph_error(
        self,
        request: FakeRequest,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> FakeResponse:
        ids = self._graph_headers(request)
        inner = {
            "date": _now().strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": ids["request-id"],
            "client-request-id": ids["client-request-id"],
        }
        body = {"error": {"code": code, "message": message, "innerError": inner}}
        return FakeResponse.json(status, body, {**ids, **(headers or {})}, content_type="application/json")

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in {self.tenant_id, self.tenant_domain.lower()}

    def _instance(self, request: FakeRequest) -> FakeResponse:
        endpoint = request.arg("authorization_endpoint") or f"{request.root}/common/oauth2/authorize"
        parts = urlsplit(endpoint)
        segments = [s for s in parts.path.split("/") if s]
        tenant = segments[0] if segments else "common"
        own = urlsplit(request.root)
        if parts.hostname == own.hostname:
            # msal drops the port from the authority it asks about; answer with this server's.
            host = request.root
        elif parts.hostname in MICROSOFT_LOGIN_HOSTS:
            host = f"https://{parts.hostname}"
        else:
            return self._aad_error(400, "invalid_instance", 50049, "Unknown or invalid instance.")
        return FakeResponse.json(
            200,
            {
                "tenant_discovery_endpoint": f"{host}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": request.arg("api-version") or "1.1",
                "metadata": [
                    {
                        "preferred_network": "login.microsoftonline.com",
                        "preferred_cache": "login.windows.net",
                        "aliases": [
                            "login.microsoftonline.com",
                            "login.windows.net",
                            "login.microsoft.com",
                            "sts.windows.net",
                        ],
                    }
                ],
            },
        )

    def _oidc(self, request: FakeRequest, tenant: str) -> FakeResponse:
        multi = tenant.lower() in {"common", "organizations", "consumers"}
        if not multi and not self._known_tenant(tenant):
            return self._aad_error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        tid = {
            "common": "{tenantid}",
            "organizations": "{tenantid}",
            "consumers": PERSONAL_ACCOUNTS_TENANT,
        }.get(tenant.lower(), self.tenant_id)
        path_tenant = tenant if multi else self.tenant_id
        base = f"{request.root}/{path_tenant}"
        return FakeResponse.json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"https://login.microsoftonline.com/{tid}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nonce",
                    "email",
                    "tid",
                    "oid",
                    "name",
                ],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    def _keys(self, request: FakeRequest, tenant: str) -> FakeResponse:
        # Access tokens here are opaque to everyone but this fake.
        return FakeResponse.json(200, {"keys": []})

    def _token(self, request: FakeRequest, tenant: str) -> FakeResponse:
        if not self._known_tenant(tenant):
            return self._aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        form = request.form()
        basic = basic_credentials(request)
        client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret"))
        grant = form.get("grant_type")
        if not grant:
            return self._aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if client_id != self.client_id:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.tenant_domain}'.",
            )
        if secret != self.client_secret:
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{self.client_id}'.",
            )
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or " " in scope.strip():
            return self._aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                "scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        now = int(time.time())
        token = jwt_shaped(
            {
                "aud": "https://graph.microsoft.com",
                "iss": f"https://sts.windows.net/{self.tenant_id}/",
                "iat": now,
                "nbf": now,
                "exp": now + self.token_lifetime,
                "appid": self.client_id,
                "idtyp": "app",
                "oid": self.service_principal_id,
                "roles": sorted(self.app_roles),
                "sub": self.service_principal_id,
                "tid": self.tenant_id,
                "ver": "1.0",
            }
        )
        self.tokens[token] = time.time() + self.token_lifetime
        return FakeResponse.json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
            content_type="application/json; charset=utf-8",
        )

    def _graph_denied(self, request: FakeRequest, any_of: Iterable[str]) -> FakeResponse | None:
        token = bearer(request)
        challenge = {
            "WWW-Authenticate": 'Bearer realm="", '
            'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
            f'client_id="{GRAPH_APP_ID}"'
        }
        if token is None:
            return self._graph_error(request, 401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        expires = self.tokens.get(token)
        if expires is None:
            return self._graph_error(
                request, 401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.", challenge
            )
        if expires <= time.time():
            return self._graph_error(
                request,
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                challenge,
            )
        if not self.app_roles.intersection(any_of):
            return self._graph_error(
                request,
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        return None

    def _new_user(
        self,
        mail: str,
        display_name: str | None,
        user_type: str,
        external_user_state: str | None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        local = mail.replace("@", "_")
        upn = f"{local}#EXT#@{self.tenant_domain}" if user_type == "Guest" else mail
        user: dict[str, Any] = {
            "id": user_id or str(uuid.uuid4()),
            "businessPhones": [],
            "displayName": display_name or mail.split("@")[0],
            "givenName": None,
            "jobTitle": None,
            "mail": mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": None,
            "userPrincipalName": upn,
            "accountEnabled": True,
            "createdDateTime": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creationType": "Invitation" if user_type == "Guest" else None,
            "externalUserState": external_user_state if user_type == "Guest" else None,
            "externalUserStateChangeDateTime": _iso(_now()) if user_type == "Guest" else None,
            "otherMails": [mail] if user_type == "Guest" else [],
            "userType": user_type,
        }
        self.users[user["id"]] = user
        return user

    def _invite(self, request: FakeRequest) -> FakeResponse:
        denied = self._graph_denied(request, {"User.Invite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"})
        if denied:
            return denied
        try:
            body = request.json()
        except ValueError:
            return self._graph_error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        if not isinstance(body, dict):
            return self._graph_error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        email = body.get("invitedUserEmailAddress")
        redirect = body.get("inviteRedirectUrl")
        for name, value in (("invitedUserEmailAddress", email), ("inviteRedirectUrl", redirect)):
            if not isinstance(value, str) or not value.strip():
                return self._graph_error(request, 400, "BadRequest", f"Missing required property '{name}'.")
        assert isinstance(email, str) and isinstance(redirect, str)
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            return self._graph_error(request, 400, "BadRequest", "The specified email address is not valid.")
        if not self.b2b_invitations_enabled:
            return self._graph_error(
                request,
                403,
                "Unauthorized",
                "Guest invitations not allowed for your company. Contact your company administrator for more details.",
            )
        display_name = body.get("invitedUserDisplayName")
        existing = next((u for u in self.users.values() if (u["mail"] or "").lower() == email.lower()), None)
        # Re-inviting the same address hands back the same directory object.
        user = existing or self._new_user(email, display_name, "Guest", "PendingAcceptance")
        pending = user["userType"] == "Guest" and user["externalUserState"] == "PendingAcceptance"
        status = "PendingAcceptance" if pending else "Completed"
        ticket = secrets.token_urlsafe(16)
        query = urlencode({"tenant": self.tenant_id, "user": user["id"], "ticket": ticket, "ver": "2.0"})
        inner = f"https://invitations.microsoft.com/redeem/?{query}"
        redeem_url = f"https://login.microsoftonline.com/redeem?rd={quote(inner, safe='')}"
        info = {
            "messageLanguage": None,
            "ccRecipients": [{"emailAddress": {"name": None, "address": None}}],
            "customizedMessageBody": None,
            **(body.get("invitedUserMessageInfo") or {}),
        }
        invitation = Invitation(
            id=str(uuid.uuid4()),
            email=email,
            user_id=user["id"],
            redirect_url=redirect,
            send_message=bool(body.get("sendInvitationMessage", False)),
            display_name=display_name,
            message_info=info,
            status=status,
        )
        self.invitations.append(invitation)
        return self._graph_json(
            request,
            201,
            {
                "@odata.context": f"{request.root}/v1.0/$metadata#invitations/$entity",
                "id": invitation.id,
                "inviteRedeemUrl": redeem_url,
                "invitedUserDisplayName": display_name,
                "invitedUserType": body.get("invitedUserType", "Guest"),
                "invitedUserEmailAddress": email,
                "sendInvitationMessage": invitation.send_message,
                "resetRedemption": bool(body.get("resetRedemption", False)),
                "inviteRedirectUrl": redirect,
                "status": status,
                "invitedUserMessageInfo": info,
                "invitedUser": {"id": user["id"]},
            },
        )

    def _select(self, request: FakeRequest) -> tuple[str, ...] | FakeResponse:
        raw = request.arg("$select")
        if raw is None:
            return DEFAULT_USER_SELECT
        canonical = {name.lower(): name for name in USER_PROPERTIES}
        chosen = []
        for name in (part.strip() for part in raw.split(",") if part.strip()):
            if name.lower() not in canonical:
                return self._graph_error(
                    request,
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{name}' on type 'Microsoft.DirectoryServices.User'.",
                )
            chosen.append(canonical[name.lower()])
        return tuple(chosen)

    def _find_user(self, key: str) -> dict[str, Any] | None:
        user = self.users.get(key)
        if user is None:
            user = next((u for u in self.users.values() if u["userPrincipalName"].lower() == key.lower()), None)
        return user

    def _get_user(self, request: FakeRequest, user_id: str) -> FakeResponse:
        denied = self._graph_denied(
            request, {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
        )
        if denied:
            return denied
        select = self._select(request)
        if isinstance(select, FakeResponse):
            return select
        user = self._find_user(user_id)
        if user is None:
            return self._graph_error(
                request,
                404,
                "Request_ResourceNotFound",
                f"Resource '{user_id}' does not exist or one of its queried reference-property objects "
                "are not present.",
            )
        context = "users/$entity" if request.arg("$select") is None else f"users({','.join(select)})/$entity"
        payload = {"@odata.context": f"{request.root}/v1.0/$metadata#{context}"}
        payload.update({name: user[name] for name in select})
        return self._graph_json(request, 200, payload)

    def _list_users(self, request: FakeRequest) -> FakeResponse:
        denied = self._graph_denied(
            request, {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
        )
        if denied:
            return denied
        select = self._select(request)
        if isinstance(select, FakeResponse):
            return select
        found = list(self.users.values())
        raw_filter = request.arg("$filter")
        if raw_filter is not None:
            match = _FILTER.match(raw_filter)
            if match is None:
                return self._graph_error(request, 400, "Request_UnsupportedQuery", "Unsupported Query.")
            prop = next(p for p in USER_PROPERTIES if p.lower() == match.group(1).lower())
            wanted = match.group(2).replace("''", "'").lower()
            found = [u for u in found if (u[prop] or "").lower() == wanted]
        context = "users" if request.arg("$select") is None else f"users({','.join(select)})"
        return self._graph_json(
            request,
            200,
            {
                "@odata.context": f"{request.root}/v1.0/$metadata#{context}",
                "value": [{name: u[name] for name in select} for u in found],
            },
        )

    def _update_user(self, request: FakeRequest, user_id: str) -> FakeResponse:
        """PATCH /users/{id}: 204 without a body; accountEnabled also with User.EnableDisableAccount.All."""
        try:
            body = request.json()
        except ValueError:
            body = None
        roles = {"User.ReadWrite.All", "Directory.ReadWrite.All"}
        if isinstance(body, dict) and set(body) == {"accountEnabled"}:
            roles.add("User.EnableDisableAccount.All")
        denied = self._graph_denied(request, roles)
        if denied:
            return denied
        if not isinstance(body, dict):
            return self._graph_error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        user = self._find_user(user_id)
        if user is None:
            return self._graph_error(
                request,
                404,
                "Request_ResourceNotFound",
                f"Resource '{user_id}' does not exist or one of its queried reference-property objects "
                "are not present.",
            )
        for name, value in body.items():
            if name not in WRITABLE_USER_PROPERTIES:
                return self._graph_error(
                    request,
                    400,
                    "Request_BadRequest",
                    f"Property '{name}' is read-only and cannot be set."
                    if name in USER_PROPERTIES
                    else f"Property '{name}' does not exist as a declared property or extension property.",
                )
            if name == "accountEnabled" and not isinstance(value, bool):
                return self._graph_error(
                    request,
                    400,
                    "Request_BadRequest",
                    "Invalid value specified for property 'accountEnabled' of resource 'User'.",
                )
        user.update(body)
        return FakeResponse.empty(204, self._graph_headers(request))

    def _delete_user(self, request: FakeRequest, user_id: str) -> FakeResponse:
        denied = self._graph_denied(request, {"User.ReadWrite.All", "Directory.ReadWrite.All"})
        if denied:
            return denied
        user = self._find_user(user_id)
        if user is None:
            return self._graph_error(
                request,
                404,
                "Request_ResourceNotFound",
                f"Resource '{user_id}' does not exist or one of its queried reference-property objects "
                "are not present.",
            )
        del self.users[user["id"]]
        return FakeResponse.empty(204, self._graph_headers(request))

    def _subscription_rep(self, request: FakeRequest, sub: Mapping[str, Any]) -> dict[str, Any]:
        return {"@odata.context": f"{request.root}/v1.0/$metadata#subscriptions/$entity", **sub}

    def _check_expiration(self, request: FakeRequest, resource: str, raw: Any) -> dt.datetime | FakeResponse:
        try:
            when = dt.datetime.fromisoformat(str(raw))
        except ValueError:
            return self._graph_error(request, 400, "InvalidRequest", "expirationDateTime is not a valid date.")
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        limit = MAX_SUBSCRIPTION_MINUTES.get(resource.lower().strip("/").split("/")[0], OTHER_SUBSCRIPTION_MINUTES)
        now = _now()
        if when <= now:
            return self._graph_error(
                request, 400, "InvalidRequest", "Subscription expiration date must be in the future."
            )
        if when > now + dt.timedelta(minutes=limit):
            return self._graph_error(
                request,
                400,
                "ExtensionError",
                f"Subscription expiration can only be {limit} minutes in the future.",
            )
        return when

    def _validate_endpoint(self, request: FakeRequest, url: str) -> FakeResponse | None:
        if self.require_https_notifications and not url.lower().startswith("https://"):
            return self._graph_error(request, 400, "InvalidRequest", "The Notification Url must be HTTPS.")
        if self.notification_validator is None:
            return None
        token = secrets.token_urlsafe(24)
        try:
            reply = self.notification_validator(url, token)
        except Exception:
            reply = ValidationReply(0, "", "")
        if reply.status != 200 or reply.body != token or "text/plain" not in reply.content_type.lower():
            return self._graph_error(
                request,
                400,
                "InvalidRequest",
                "Subscription validation request failed. "
                "Notification endpoint must respond with 200 OK to validation request.",
            )
        return None

    def _list_subscriptions(self, request: FakeRequest) -> FakeResponse:
        denied = self._graph_denied(request, self.app_roles or {"-"})
        if denied:
            return denied
        return self._graph_json(
            request,
            200,
            {
                "@odata.context": f"{request.root}/v1.0/$metadata#subscriptions",
                "value": list(self.subscriptions.values()),
            },
        )

    def _create_subscription(self, request: FakeRequest) -> FakeResponse:
        denied = self._graph_denied(
            request, {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
        )
        if denied:
            return denied
        try:
            body = request.json()
        except ValueError:
            return self._graph_error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        if not isinstance(body, dict):
            return self._graph_error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not body.get(name):
                return self._graph_error(request, 400, "InvalidRequest", f"Required property '{name}' is missing.")
        changes = [c.strip() for c in str(body["changeType"]).split(",")]
        if not changes or not set(changes) <= CHANGE_TYPES:
            return self._graph_error(request, 400, "InvalidRequest", f"Invalid changeType '{body['changeType']}'.")
        client_state = body.get("clientState")
        if client_state is not None and len(str(client_state)) > 128:
            return self._graph_error(request, 400, "InvalidRequest", "clientState cannot exceed 128 characters.")
        when = self._check_expiration(request, str(body["resource"]), body["expirationDateTime"])
        if isinstance(when, FakeResponse):
            return when
        for url in (body["notificationUrl"], body.get("lifecycleNotificationUrl")):
            if url:
                problem = self._validate_endpoint(request, str(url))
                if problem:
                    return problem
        sub = {
            "id": str(uuid.uuid4()),
            "resource": body["resource"],
            "applicationId": self.client_id,
            "changeType": ",".join(changes),
            "clientState": client_state,
            "notificationUrl": body["notificationUrl"],
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl"),
            "expirationDateTime": _iso(when),
            "creatorId": self.service_principal_id,
            "includeResourceData": bool(body.get("includeResourceData", False)),
            "latestSupportedTlsVersion": body.get("latestSupportedTlsVersion", "v1_2"),
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }
        self.subscriptions[sub["id"]] = sub
        return self._graph_json(request, 201, self._subscription_rep(request, sub))

    def _subscription_or_404(self, request: FakeRequest, sub_id: str) -> dict[str, Any] | FakeResponse:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            return self._graph_error(request, 404, "ResourceNotFound", "The object was not found.")
        return sub

    def _get_subscription(self, request: FakeRequest, sub_id: str) -> FakeResponse:
        denied = self._graph_denied(request, self.app_roles or {"-"})
        if denied:
            return denied
        sub = self._subscription_or_404(request, sub_id)
        if isinstance(sub, FakeResponse):
            return sub
        return self._graph_json(request, 200, self._subscription_rep(request, sub))

    def _patch_subscription(self, request: FakeRequest, sub_id: str) -> FakeResponse:
        denied = self._graph_denied(request, self.app_roles or {"-"})
        if denied:
            return denied
        sub = self._subscription_or_404(request, sub_id)
        if isinstance(sub, FakeResponse):
            return sub
        try:
            body = request.json()
        except ValueError:
            return self._graph_error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        if "expirationDateTime" in body:
            when = self._check_expiration(request, sub["resource"], body["expirationDateTime"])
            if isinstance(when, FakeResponse):
                return when
            sub["expirationDateTime"] = _iso(when)
        if body.get("notificationUrl"):
            problem = self._validate_endpoint(request, str(body["notificationUrl"]))
            if problem:
                return problem
            sub["notificationUrl"] = body["notificationUrl"]
        return self._graph_json(request, 200, self._subscription_rep(request, sub))

    def _delete_subscription(self, request: FakeRequest, sub_id: str) -> FakeResponse:
        denied = self._graph_denied(request, self.app_roles or {"-"})
        if denied:
            return denied
        if self.subscriptions.pop(sub_id, None) is None:
            return self._graph_error(request, 404, "ResourceNotFound", "The object was not found.")
        return FakeResponse.empty(204, self._graph_headers(request))
