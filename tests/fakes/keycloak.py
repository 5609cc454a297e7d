"""A stateful fake of one Keycloak realm: client-credentials tokens, the Admin REST users API and Organizations.

Status codes and bodies follow Keycloak 26 (UserResource/UsersResource sources and
answers measured on quay.io/keycloak/keycloak:26.7.1); see the report in the PR.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

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

# Required-action provider ids a stock realm knows; others are dropped silently on create/update.
KNOWN_REQUIRED_ACTIONS = (
    "CONFIGURE_RECOVERY_AUTHN_CODES",
    "CONFIGURE_TOTP",
    "TERMS_AND_CONDITIONS",
    "UPDATE_EMAIL",
    "UPDATE_PASSWORD",
    "UPDATE_PROFILE",
    "VERIFY_EMAIL",
    "VERIFY_PROFILE",
    "delete_account",
    "delete_credential",
    "idp_link",
    "update_user_locale",
    "webauthn-register",
    "webauthn-register-passwordless",
)
# Enabled in a stock realm; execute-actions-email refuses anything else.
ENABLED_REQUIRED_ACTIONS = frozenset(
    {
        "CONFIGURE_TOTP",
        "UPDATE_PASSWORD",
        "UPDATE_PROFILE",
        "VERIFY_EMAIL",
        "VERIFY_PROFILE",
        "delete_credential",
        "update_user_locale",
        "webauthn-register",
        "webauthn-register-passwordless",
    }
)
DEFAULT_MAX_RESULTS = 100
ACTION_TOKEN_ADMIN_LIFESPAN = 43200

_USER_FIELDS = {
    "id": str,
    "username": str,
    "email": str,
    "firstName": str,
    "lastName": str,
    "enabled": bool,
    "emailVerified": bool,
    "requiredActions": list,
    "attributes": dict,
    "createdTimestamp": int,
    "federatedIdentities": list,
    "credentials": list,
    "groups": list,
    "realmRoles": list,
    "clientRoles": dict,
    "totp": bool,
    "notBefore": int,
    "access": dict,
    "disableableCredentialTypes": list,
}


@dataclass(frozen=True)
class ActionEmail:
    """One execute-actions-email (or send-verify-email) call Keycloak accepted."""

    user_id: str
    email: str
    actions: tuple[str, ...]
    client_id: str
    redirect_uri: str | None
    lifespan: int
    link: str
    kind: str = "execute-actions"
    sent_at: float = field(default_factory=time.time)


@dataclass
class RealmClient:
    """A client of the realm as far as redirect checks and client authentication go."""

    client_id: str
    secret: str | None = None
    redirect_uris: tuple[str, ...] = ("*",)
    enabled: bool = True
    service_account_user_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class _BadJSON(Exception):
    def __init__(self, response: FakeResponse) -> None:
        self.response = response


def _admin_error(status: int, message: str) -> FakeResponse:
    return FakeResponse.json(status, {"errorMessage": message})


def _message_error(status: int, message: str) -> FakeResponse:
    return FakeResponse.json(status, {"error": message})


def _oauth_error(status: int, code: str, description: str) -> FakeResponse:
    return FakeResponse.json(status, {"error": code, "error_description": description})


def _cannot_parse(code: str = "invalid_request") -> _BadJSON:
    return _BadJSON(_oauth_error(400, code, "Cannot parse the JSON"))


def _truthy(value: str | None) -> bool | None:
    # JAX-RS parses booleans case-insensitively; requests sends Python's "True".
    return None if value is None else value.strip().lower() == "true"


def _search_matches(value: str, term: str) -> bool:
    """Keycloak's `search`: prefix by default, `*` wildcards, "quoted" for equality."""
    value, term = value.lower(), term.lower()
    if len(term) >= 2 and term.startswith('"') and term.endswith('"'):
        return value == term[1:-1]
    parts = term.split("*")
    head = parts[0]
    if head and not value.startswith(head):
        return False
    rest = value[len(head) :]
    for part in parts[1:]:
        if not part:
            continue
        index = rest.find(part)
        if index < 0:
            return False
        rest = rest[index + len(part) :]
    return True


def _redirect_allowed(uri: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == "*" or uri == pattern:
            return True
        if pattern.endswith("*") and uri.startswith(pattern[:-1]):
            return True
    return False


class FakeKeycloak(FakeService):
    """One realm of Keycloak: client-credentials token endpoint and Admin REST users API.

    State is plain data (`users`, `action_emails`, `calls`) for tests to inspect;
    `add_user` pre-seeds accounts. Faults from `faults` hit before any state change.
    """

    def __init__(
        self,
        base_url: str = "https://kc.test",
        realm: str = "acme",
        client_id: str = "idp-bridge",
        client_secret: str = "kc-secret",
        *,
        redirect_uris: Sequence[str] = ("*",),
        access_token_lifespan: int = 300,
        duplicate_emails_allowed: bool = False,
        registration_email_as_username: bool = False,
        edit_username_allowed: bool = False,
        unmanaged_attributes: bool = True,
        identity_providers: Iterable[str] | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(faults)
        self.base_url = base_url.rstrip("/")
        self.roots = (self.base_url,)
        self.realm = realm
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_lifespan = access_token_lifespan
        self.duplicate_emails_allowed = duplicate_emails_allowed
        self.registration_email_as_username = registration_email_as_username
        self.edit_username_allowed = edit_username_allowed
        # Keycloak >= 24 drops attributes outside the user profile unless the realm's
        # unmanagedAttributePolicy is ENABLED; False reproduces the stock realm.
        self.unmanaged_attributes = unmanaged_attributes
        # None: every alias counts as a configured identity provider.
        self.identity_providers = None if identity_providers is None else set(identity_providers)
        self.clients: dict[str, RealmClient] = {
            client_id: RealmClient(client_id, client_secret, tuple(redirect_uris)),
            "account": RealmClient("account", None, ("/realms/" + realm + "/account/*",)),
        }
        self.users: dict[str, dict[str, Any]] = {}
        # Keycloak 26 Organizations: id -> representation, and id -> member user ids in the order added.
        self.organizations: dict[str, dict[str, Any]] = {}
        self.organization_members: dict[str, list[str]] = {}
        self.action_emails: list[ActionEmail] = []
        self.tokens: dict[str, float] = {}
        self.smtp_error: str | None = None
        self._routes = self._build_routes()

    def add_client(
        self,
        client_id: str,
        secret: str | None = None,
        redirect_uris: Sequence[str] = ("*",),
        enabled: bool = True,
    ) -> RealmClient:
        """Register another client of the realm (token requests, redirect checks)."""
        client = RealmClient(client_id, secret, tuple(redirect_uris), enabled)
        with self._lock:
            self.clients[client_id] = client
        return client

    def add_user(
        self,
        username: str | None = None,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        enabled: bool = True,
        email_verified: bool = True,
        required_actions: Sequence[str] = (),
        attributes: Mapping[str, Sequence[str]] | None = None,
        federated: Mapping[str, tuple[str, str]] | None = None,
        user_id: str | None = None,
    ) -> str:
        """Pre-seed an existing account and return its id; `federated` maps alias -> (userId, userName)."""
        name = (username or email or "").lower()
        if not name:
            raise ValueError("add_user needs a username or an email")
        user: dict[str, Any] = {
            "id": user_id or str(uuid.uuid4()),
            "username": name,
            "firstName": first_name,
            "lastName": last_name,
            "email": email.lower() if email else None,
            "emailVerified": email_verified,
            "attributes": {k: list(v) for k, v in (attributes or {}).items()},
            "enabled": enabled,
            "createdTimestamp": int(time.time() * 1000),
            "requiredActions": list(required_actions),
            "federatedIdentities": [
                {"identityProvider": alias, "userId": uid, "userName": uname}
                for alias, (uid, uname) in (federated or {}).items()
            ],
        }
        with self._lock:
            self.users[user["id"]] = user
        return str(user["id"])

    def add_organization(self, name: str, *, alias: str | None = None, domains: Sequence[str] = ()) -> str:
        """Pre-seed an organization (as an admin would create it) and return its id."""
        org_id = str(uuid.uuid4())
        with self._lock:
            self.organizations[org_id] = {
                "id": org_id, "name": name, "alias": alias or name, "enabled": True, "description": None,
                "redirectUrl": None, "attributes": {},
                "domains": [{"name": d, "verified": False} for d in domains],
            }
            self.organization_members[org_id] = []
        return org_id

    def members_of(self, org_id: str) -> list[str]:
        """The user ids in an organization, in the order they were added."""
        with self._lock:
            return list(self.organization_members[org_id])

    def find_by_email(self, email: str) -> dict[str, Any] | None:
        """The stored user with this email (case-insensitive), if any."""
        wanted = email.lower()
        with self._lock:
            return next((u for u in self.users.values() if u["email"] == wanted), None)

    def find_by_username(self, username: str) -> dict[str, Any] | None:
        """The stored user with this username (case-insensitive), if any."""
        wanted = username.lower()
        with self._lock:
            return next((u for u in self.users.values() if u["username"] == wanted), None)

    def expire_tokens(self) -> None:
        """Make every issued access token expired, as after the realm's token lifespan."""
        with self._lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    @property
    def issuer(self) -> str:
        """The realm's issuer URL in responses mode."""
        return f"{self.base_url}/realms/{self.realm}"

    def routes(self) -> Sequence[Route]:
        """The endpoints this fake serves."""
        return self._routes

    def _build_routes(self) -> list[Route]:
        realm = r"/realms/(?P<realm>[^/]+)"
        admin = r"/admin/realms/(?P<realm>[^/]+)"
        user = admin + r"/users/(?P<user_id>[^/]+)"
        org = admin + r"/organizations/(?P<org_id>[^/]+)"
        return [
            route("GET", admin + r"/organizations", "GET /organizations", self._list_organizations),
            route("POST", admin + r"/organizations", "POST /organizations", self._create_organization),
            route("GET", org + r"/members", "GET /organizations/{id}/members", self._list_members),
            route("POST", org + r"/members", "POST /organizations/{id}/members", self._add_member),
            route(
                "DELETE",
                org + r"/members/(?P<user_id>[^/]+)",
                "DELETE /organizations/{id}/members/{userId}",
                self._remove_member,
            ),
            route("GET", org, "GET /organizations/{id}", self._get_organization),
            route("POST", realm + r"/protocol/openid-connect/token", "POST /token", self._token),
            route("GET", realm + r"/\.well-known/openid-configuration", "GET /.well-known", self._discovery),
            route("GET", realm + r"/protocol/openid-connect/certs", "GET /certs", self._certs),
            route("GET", admin + r"/users/count", "GET /users/count", self._count_users),
            route("GET", admin + r"/users", "GET /users", self._list_users),
            route("POST", admin + r"/users", "POST /users", self._create_user),
            route(
                "PUT",
                user + r"/execute-actions-email",
                "PUT /users/{id}/execute-actions-email",
                self._execute,
            ),
            route("PUT", user + r"/send-verify-email", "PUT /users/{id}/send-verify-email", self._verify),
            route("GET", user + r"/federated-identity", "GET /users/{id}/federated-identity", self._list_links),
            route(
                "POST",
                user + r"/federated-identity/(?P<alias>[^/]+)",
                "POST /users/{id}/federated-identity/{alias}",
                self._add_link,
            ),
            route(
                "DELETE",
                user + r"/federated-identity/(?P<alias>[^/]+)",
                "DELETE /users/{id}/federated-identity/{alias}",
                self._remove_link,
            ),
            route("GET", user, "GET /users/{id}", self._get_user),
            route("PUT", user, "PUT /users/{id}", self._update_user),
            route("DELETE", user, "DELETE /users/{id}", self._delete_user),
        ]

    def _token(self, request: FakeRequest, realm: str) -> FakeResponse:
        if realm != self.realm:
            return _message_error(404, "Realm does not exist")
        form = request.form()
        basic = basic_credentials(request)
        client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret"))
        if "grant_type" not in form:
            return _oauth_error(400, "invalid_request", "Missing form parameter: grant_type")
        client = self.clients.get(client_id)
        if client is None or not client.enabled:
            return _oauth_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if client.secret is None or secret != client.secret:
            return _oauth_error(401, "unauthorized_client", "Invalid client or Invalid client credentials")
        grant = form["grant_type"]
        if grant == "refresh_token":
            # Client-credentials grants carry no refresh token, so none can be valid.
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if grant != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
        now = int(time.time())
        claims = {
            "exp": now + self.access_token_lifespan,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": f"{request.root}/realms/{self.realm}",
            "aud": ["realm-management", "account"],
            "sub": client.service_account_user_id,
            "typ": "Bearer",
            "azp": client.client_id,
            "scope": "profile email",
            "clientId": client.client_id,
            "preferred_username": f"service-account-{client.client_id}",
        }
        token = jwt_shaped(claims)
        self.tokens[token] = time.time() + self.access_token_lifespan
        return FakeResponse.json(
            200,
            {
                "access_token": token,
                "expires_in": self.access_token_lifespan,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
            },
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _discovery(self, request: FakeRequest, realm: str) -> FakeResponse:
        if realm != self.realm:
            return _message_error(404, "Realm does not exist")
        issuer = f"{request.root}/realms/{realm}"
        oidc = issuer + "/protocol/openid-connect"
        return FakeResponse.json(
            200,
            {
                "issuer": issuer,
                "authorization_endpoint": oidc + "/auth",
                "token_endpoint": oidc + "/token",
                "introspection_endpoint": oidc + "/token/introspect",
                "userinfo_endpoint": oidc + "/userinfo",
                "end_session_endpoint": oidc + "/logout",
                "jwks_uri": oidc + "/certs",
                "grant_types_supported": [
                    "authorization_code",
                    "client_credentials",
                    "implicit",
                    "password",
                    "refresh_token",
                ],
                "response_types_supported": ["code", "none", "id_token", "token", "id_token token"],
                "subject_types_supported": ["public", "pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "token_endpoint_auth_methods_supported": [
                    "private_key_jwt",
                    "client_secret_basic",
                    "client_secret_post",
                    "client_secret_jwt",
                ],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "authorization_response_iss_parameter_supported": True,
            },
        )

    def _certs(self, request: FakeRequest, realm: str) -> FakeResponse:
        if realm != self.realm:
            return _message_error(404, "Realm does not exist")
        # Tokens here are opaque; nothing outside this fake can verify them.
        return FakeResponse.json(200, {"keys": []})

    def _admin_denied(self, request: FakeRequest, realm: str) -> FakeResponse | None:
        token = bearer(request)
        expires = self.tokens.get(token or "")
        if expires is None or expires <= time.time():
            return _message_error(401, "HTTP 401 Unauthorized")
        if realm != self.realm:
            return _message_error(404, "Realm not found.")
        return None

    def _user_or_404(self, user_id: str) -> dict[str, Any] | FakeResponse:
        user = self.users.get(user_id)
        return user if user is not None else _message_error(404, "User not found")

    def _representation(self, user: Mapping[str, Any], brief: bool, access: Mapping[str, bool]) -> dict[str, Any]:
        rep: dict[str, Any] = {"id": user["id"], "username": user["username"]}
        for name in ("firstName", "lastName", "email"):
            if user.get(name):
                rep[name] = user[name]
        rep["emailVerified"] = user["emailVerified"]
        if user["attributes"]:
            rep["attributes"] = {k: list(v) for k, v in user["attributes"].items()}
        rep["enabled"] = user["enabled"]
        rep["createdTimestamp"] = user["createdTimestamp"]
        if not brief:
            # briefRepresentation=true drops exactly these four (measured on 26.7.1).
            rep["totp"] = False
            rep["disableableCredentialTypes"] = []
            rep["requiredActions"] = list(user["requiredActions"])
            rep["notBefore"] = 0
        rep["access"] = dict(access)
        return rep

    def _filtered(self, request: FakeRequest) -> list[dict[str, Any]]:
        exact = _truthy(request.arg("exact")) or False
        named = {name: request.arg(name) for name in ("username", "email", "firstName", "lastName")}
        search = request.arg("search")
        enabled = _truthy(request.arg("enabled"))
        email_verified = _truthy(request.arg("emailVerified"))
        idp_alias, idp_user_id = request.arg("idpAlias"), request.arg("idpUserId")
        found = []
        for user in self.users.values():
            if search is not None and search.strip():
                term = search.strip()
                if term.startswith("id:"):
                    if user["id"] != term[3:].strip():
                        continue
                # `search` ignores `exact` (measured).
                elif not any(
                    _search_matches(user.get(f) or "", term) for f in ("username", "email", "firstName", "lastName")
                ):
                    continue
            mismatch = False
            for name, wanted in named.items():
                if not wanted:
                    continue
                value = (user.get(name) or "").lower()
                if (value != wanted.lower()) if exact else (wanted.lower() not in value):
                    mismatch = True
            if mismatch:
                continue
            if enabled is not None and user["enabled"] != enabled:
                continue
            if email_verified is not None and user["emailVerified"] != email_verified:
                continue
            if idp_alias or idp_user_id:
                links = user["federatedIdentities"]
                if not any(
                    (not idp_alias or link["identityProvider"] == idp_alias)
                    and (not idp_user_id or link["userId"] == idp_user_id)
                    for link in links
                ):
                    continue
            found.append(user)
        return sorted(found, key=lambda u: str(u["username"]))

    def _list_users(self, request: FakeRequest, realm: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        users = self._filtered(request)
        try:
            first = max(int(request.arg("first") or 0), 0)
            limit = int(request.arg("max") or DEFAULT_MAX_RESULTS)
        except ValueError:
            return _message_error(404, "HTTP 404 Not Found")
        page = users[first : first + limit] if limit >= 0 else users[first:]
        brief = _truthy(request.arg("briefRepresentation")) or False
        reps = [self._representation(u, brief, {"manage": True}) for u in page]
        return FakeResponse.json(200, reps, {"Cache-Control": "no-cache"})

    def _count_users(self, request: FakeRequest, realm: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        return FakeResponse.json(200, len(self._filtered(request)), {"Cache-Control": "no-cache"})

    def _parse_user(self, request: FakeRequest, *, empty: FakeResponse) -> dict[str, Any]:
        text = request.body.decode("utf-8", "replace").strip()
        if text in {"", "null"}:
            raise _BadJSON(empty)
        if not text.startswith("{"):
            raise _cannot_parse("unknown_error")
        try:
            payload = request.json()
        except ValueError:
            raise _cannot_parse() from None
        for name, kind in _USER_FIELDS.items():
            value = payload.get(name)
            if value is not None and not isinstance(value, kind):
                raise _cannot_parse("unknown_error")
        attributes = payload.get("attributes")
        if attributes is not None:
            cleaned: dict[str, list[str]] = {}
            for key, values in attributes.items():
                # Keycloak accepts a bare string for a single-valued attribute.
                listed = values if isinstance(values, list) else [values]
                cleaned[key] = [str(v) for v in listed if v is not None]
            payload["attributes"] = cleaned
        return dict(payload)

    def _profile_errors(self, username: str, email: str | None) -> FakeResponse | None:
        if email is not None and email != "" and ("@" not in email or email.startswith("@") or " " in email):
            return FakeResponse.json(
                400, {"field": "email", "errorMessage": "error-invalid-email", "params": ["email", email]}
            )
        if len(username) > 255:
            return FakeResponse.json(
                400,
                {"field": "username", "errorMessage": "error-invalid-length", "params": ["username", 3, 255]},
            )
        return None

    def _conflict(self, username: str, email: str | None, except_id: str | None) -> FakeResponse | None:
        others = [u for u in self.users.values() if u["id"] != except_id]
        if any(u["username"] == username for u in others):
            return _admin_error(409, "User exists with same username")
        if email and not self.duplicate_emails_allowed and any(u["email"] == email for u in others):
            return _admin_error(409, "User exists with same email")
        return None

    def _create_user(self, request: FakeRequest, realm: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        try:
            rep = self._parse_user(
                request,
                empty=_oauth_error(500, "unknown_error", "For more on this error consult the server log."),
            )
        except _BadJSON as bad:
            return bad.response
        email = rep["email"].lower() if rep.get("email") else None
        username = email if self.registration_email_as_username else rep.get("username")
        if not username or not str(username).strip():
            return _admin_error(400, "User name is missing")
        username = str(username).strip().lower()
        problem = self._conflict(username, email, None) or self._profile_errors(username, email)
        if problem:
            return problem
        user_id = str(uuid.uuid4())
        wanted_actions = set(rep.get("requiredActions") or [])
        user = {
            "id": user_id,
            "username": username,
            "firstName": rep.get("firstName"),
            "lastName": rep.get("lastName"),
            "email": email,
            "emailVerified": bool(rep.get("emailVerified", False)),
            "attributes": (rep.get("attributes") or {}) if self.unmanaged_attributes else {},
            "enabled": bool(rep.get("enabled", False)),
            "createdTimestamp": int(time.time() * 1000),
            "requiredActions": [a for a in KNOWN_REQUIRED_ACTIONS if a in wanted_actions],
            "federatedIdentities": [
                {
                    "identityProvider": link.get("identityProvider"),
                    "userId": link.get("userId"),
                    "userName": link.get("userName"),
                }
                for link in rep.get("federatedIdentities") or []
            ],
        }
        self.users[user_id] = user
        location = f"{request.root}/admin/realms/{realm}/users/{user_id}"
        return FakeResponse.empty(201, {"Location": location})

    def _get_user(self, request: FakeRequest, realm: str, user_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        user = self._user_or_404(user_id)
        if isinstance(user, FakeResponse):
            return user
        access = {
            "manageGroupMembership": True,
            "resetPassword": True,
            "view": True,
            "mapRoles": True,
            "impersonate": False,
            "manage": True,
        }
        rep = self._representation(user, False, access)
        links = self._visible_links(user)
        if links:
            rep["federatedIdentities"] = links
        return FakeResponse.json(200, rep, {"Cache-Control": "no-cache"})

    def _update_user(self, request: FakeRequest, realm: str, user_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        user = self._user_or_404(user_id)
        if isinstance(user, FakeResponse):
            return user
        try:
            rep = self._parse_user(request, empty=_admin_error(400, "Could not update user!"))
        except _BadJSON as bad:
            return bad.response
        email = user["email"]
        if "email" in rep:
            email = rep["email"].lower() if rep["email"] else None
        wanted_username = str(rep.get("username") or user["username"]).lower()
        # The conflict is decided even when the rename itself is then ignored (measured).
        problem = self._conflict(wanted_username, email, user_id) or self._profile_errors(wanted_username, email)
        if problem:
            return problem
        if self.edit_username_allowed:
            user["username"] = wanted_username
        user["email"] = email
        for name in ("firstName", "lastName"):
            if name in rep:
                user[name] = rep[name]
        for name in ("enabled", "emailVerified"):
            if rep.get(name) is not None:
                user[name] = bool(rep[name])
        if rep.get("requiredActions") is not None:
            wanted = set(rep["requiredActions"])
            user["requiredActions"] = [a for a in KNOWN_REQUIRED_ACTIONS if a in wanted]
        if rep.get("attributes") is not None and self.unmanaged_attributes:
            user["attributes"] = rep["attributes"]
        return FakeResponse.empty(204)

    def _delete_user(self, request: FakeRequest, realm: str, user_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        if self.users.pop(user_id, None) is None:
            return _message_error(404, "User not found")
        return FakeResponse.empty(204, {"Cache-Control": "no-cache"})

    def _send_params(self, request: FakeRequest, user: Mapping[str, Any]) -> tuple[str, str | None, int] | FakeResponse:
        redirect_uri, client_id = request.arg("redirect_uri"), request.arg("client_id")
        if not user.get("email"):
            return _admin_error(400, "User email missing")
        if not user["enabled"]:
            return _admin_error(400, "User is disabled")
        if redirect_uri is not None and client_id is None:
            return _admin_error(400, "Client id missing")
        client = self.clients.get(client_id or "account")
        if client is None:
            return _admin_error(400, "Client doesn't exist")
        if not client.enabled:
            return _admin_error(400, "Client is not enabled")
        if redirect_uri is not None and not _redirect_allowed(redirect_uri, client.redirect_uris):
            return _admin_error(400, "Invalid redirect uri.")
        raw_lifespan = request.arg("lifespan")
        try:
            lifespan = int(raw_lifespan) if raw_lifespan is not None else ACTION_TOKEN_ADMIN_LIFESPAN
        except ValueError:
            # JAX-RS answers an unconvertible query parameter with 404.
            return _message_error(404, "HTTP 404 Not Found")
        return client.client_id, redirect_uri, lifespan

    def _link(self, request: FakeRequest, params: Mapping[str, str]) -> str:
        key = secrets.token_urlsafe(24)
        query = urlencode({"key": key, **params})
        return f"{request.root}/realms/{self.realm}/login-actions/action-token?{query}"

    def _execute(self, request: FakeRequest, realm: str, user_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        user = self._user_or_404(user_id)
        if isinstance(user, FakeResponse):
            return user
        checked = self._send_params(request, user)
        if isinstance(checked, FakeResponse):
            return checked
        client_id, redirect_uri, lifespan = checked
        try:
            actions = request.json() if request.body.strip() else []
        except ValueError:
            return _oauth_error(400, "invalid_request", "Cannot parse the JSON")
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            return _oauth_error(400, "unknown_error", "Cannot parse the JSON")
        if actions and not all(a in ENABLED_REQUIRED_ACTIONS for a in actions):
            return _admin_error(400, "Provided invalid required actions")
        if self.smtp_error is not None:
            return _admin_error(500, f"Failed to send execute actions email: {self.smtp_error}")
        self.action_emails.append(
            ActionEmail(
                user_id=user_id,
                email=user["email"],
                actions=tuple(actions),
                client_id=client_id,
                redirect_uri=redirect_uri,
                lifespan=lifespan,
                link=self._link(request, {"client_id": client_id}),
            )
        )
        return FakeResponse.empty(204)

    def _verify(self, request: FakeRequest, realm: str, user_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        user = self._user_or_404(user_id)
        if isinstance(user, FakeResponse):
            return user
        checked = self._send_params(request, user)
        if isinstance(checked, FakeResponse):
            return checked
        client_id, redirect_uri, lifespan = checked
        if self.smtp_error is not None:
            return _admin_error(500, "Failed to send verify email")
        self.action_emails.append(
            ActionEmail(
                user_id=user_id,
                email=user["email"],
                actions=("VERIFY_EMAIL",),
                client_id=client_id,
                redirect_uri=redirect_uri,
                lifespan=lifespan,
                link=self._link(request, {"client_id": client_id}),
                kind="verify-email",
            )
        )
        return FakeResponse.empty(204)

    def _visible_links(self, user: Mapping[str, Any]) -> list[dict[str, Any]]:
        # Keycloak lists only links whose identity provider still exists in the realm.
        return [
            dict(link)
            for link in user["federatedIdentities"]
            if self.identity_providers is None or link["identityProvider"] in self.identity_providers
        ]

    def _list_links(self, request: FakeRequest, realm: str, user_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        user = self._user_or_404(user_id)
        if isinstance(user, FakeResponse):
            return user
        return FakeResponse.json(200, self._visible_links(user), {"Cache-Control": "no-cache"})

    def _add_link(self, request: FakeRequest, realm: str, user_id: str, alias: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        user = self._user_or_404(user_id)
        if isinstance(user, FakeResponse):
            return user
        try:
            rep = request.json() if request.body.strip() else {}
        except ValueError:
            return _oauth_error(400, "invalid_request", "Cannot parse the JSON")
        if not isinstance(rep, dict):
            return _oauth_error(400, "unknown_error", "Cannot parse the JSON")
        if any(link["identityProvider"] == alias for link in user["federatedIdentities"]):
            return _admin_error(409, "User is already linked with provider")
        user["federatedIdentities"].append(
            {"identityProvider": alias, "userId": rep.get("userId"), "userName": rep.get("userName")}
        )
        return FakeResponse.empty(204)

    def _remove_link(self, request: FakeRequest, realm: str, user_id: str, alias: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        user = self._user_or_404(user_id)
        if isinstance(user, FakeResponse):
            return user
        kept = [link for link in user["federatedIdentities"] if link["identityProvider"] != alias]
        if len(kept) == len(user["federatedIdentities"]):
            return _message_error(404, "Link not found")
        user["federatedIdentities"] = kept
        return FakeResponse.empty(204)

    def _organization_rep(self, org: Mapping[str, Any], brief: bool) -> dict[str, Any]:
        rep = {k: org[k] for k in ("id", "name", "alias", "enabled", "description", "redirectUrl")}
        if not brief:
            rep["attributes"] = {k: list(v) for k, v in org["attributes"].items()}
            rep["domains"] = [dict(d) for d in org["domains"]]
        return rep

    def _organization_matches(self, org: Mapping[str, Any], search: str, exact: bool) -> bool:
        # OrganizationsResource.search: `search` looks at the name and the domains (not the alias).
        names = [str(org["name"]), *(str(d["name"]) for d in org["domains"])]
        term = search.lower()
        return any((n.lower() == term) if exact else (term in n.lower()) for n in names)

    def _page(self, request: FakeRequest, items: list[Any]) -> list[Any] | FakeResponse:
        try:
            first = max(int(request.arg("first") or 0), 0)
            limit = int(request.arg("max") or 10)
        except ValueError:
            return _message_error(404, "HTTP 404 Not Found")
        return items[first : first + limit] if limit >= 0 else items[first:]

    def _list_organizations(self, request: FakeRequest, realm: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        search = request.arg("search")
        exact = _truthy(request.arg("exact")) or False
        found = [
            o
            for o in self.organizations.values()
            if not search or self._organization_matches(o, search, exact)
        ]
        page = self._page(request, sorted(found, key=lambda o: str(o["name"])))
        if isinstance(page, FakeResponse):
            return page
        brief = _truthy(request.arg("briefRepresentation"))
        reps = [self._organization_rep(o, True if brief is None else brief) for o in page]
        return FakeResponse.json(200, reps, {"Cache-Control": "no-cache"})

    def _create_organization(self, request: FakeRequest, realm: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        try:
            rep = request.json()
        except ValueError:
            return _oauth_error(400, "invalid_request", "Cannot parse the JSON")
        if not isinstance(rep, dict) or not str(rep.get("name") or "").strip():
            return _message_error(400, "Name can not be null")
        name, alias = str(rep["name"]).strip(), str(rep.get("alias") or rep["name"]).strip()
        if any(o["name"] == name for o in self.organizations.values()):
            return _message_error(409, "A organization with the same name already exists.")
        if any(o["alias"] == alias for o in self.organizations.values()):
            return _message_error(409, "A organization with the same alias already exists")
        domains = [str(d.get("name")) for d in rep.get("domains") or [] if isinstance(d, dict)]
        org_id = self.add_organization(name, alias=alias, domains=domains)
        location = f"{request.root}/admin/realms/{realm}/organizations/{org_id}"
        return FakeResponse.empty(201, {"Location": location})

    def _organization_or_404(self, org_id: str) -> dict[str, Any] | FakeResponse:
        org = self.organizations.get(org_id)
        return org if org is not None else _message_error(404, "Organization not found")

    def _get_organization(self, request: FakeRequest, realm: str, org_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        org = self._organization_or_404(org_id)
        if isinstance(org, FakeResponse):
            return org
        return FakeResponse.json(200, self._organization_rep(org, False), {"Cache-Control": "no-cache"})

    def _list_members(self, request: FakeRequest, realm: str, org_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        org = self._organization_or_404(org_id)
        if isinstance(org, FakeResponse):
            return org
        users = [self.users[u] for u in self.organization_members[org_id] if u in self.users]
        page = self._page(request, sorted(users, key=lambda u: str(u["username"])))
        if isinstance(page, FakeResponse):
            return page
        brief = _truthy(request.arg("briefRepresentation")) or False
        reps = [{**self._representation(u, brief, {"manage": True}), "membershipType": "MANAGED"} for u in page]
        return FakeResponse.json(200, reps, {"Cache-Control": "no-cache"})

    def _add_member(self, request: FakeRequest, realm: str, org_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        org = self._organization_or_404(org_id)
        if isinstance(org, FakeResponse):
            return org
        # The body is the user id; Keycloak strips the quotes of a JSON string.
        text = request.body.decode("utf-8", "replace").strip()
        user_id = text[1:-1] if len(text) >= 2 and text.startswith('"') and text.endswith('"') else text
        if user_id not in self.users:
            return _message_error(400, "User does not exist")
        if user_id in self.organization_members[org_id]:
            return _message_error(409, "User is already a member of the organization.")
        self.organization_members[org_id].append(user_id)
        return FakeResponse.empty(201)

    def _remove_member(self, request: FakeRequest, realm: str, org_id: str, user_id: str) -> FakeResponse:
        denied = self._admin_denied(request, realm)
        if denied:
            return denied
        org = self._organization_or_404(org_id)
        if isinstance(org, FakeResponse):
            return org
        if user_id not in self.organization_members[org_id]:
            return _message_error(404, f"Member [{user_id}] does not exist")
        self.organization_members[org_id].remove(user_id)
        return FakeResponse.empty(204)
