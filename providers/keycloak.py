"""Keycloak realms: OIDC login, accounts created or bound through the Admin REST API, and realm event webhooks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from idp_bridge.domain.providers import (
    BearerSettings,
    InviteTarget,
    LoginIdentity,
    MailPlan,
    OrganizationMembership,
    Pacing,
    Provisioner,
    ProvisionResult,
    RealmEventSource,
)
from providers.base import OIDCProviderBase
from providers.http import ProviderHTTP
from providers.keycloak_admin import KeycloakAdmin, KeycloakOrganizations, KeycloakProvisioner
from providers.settings import ca_bundle, flag, number, pacing_from, require, require_url, text

_build_lock = threading.Lock()
# The invite option naming a brokered identity provider of the realm (sent as kc_idp_hint).
IDP_HINT_OPTION = "keycloak_idp"


class KeycloakProvider(OIDCProviderBase):
    kind = "keycloak"
    default_label = "Keycloak"
    OPTIONS = OIDCProviderBase.OPTIONS | {
        "server_url", "realm", "admin_client_id", "admin_client_secret", "timeout_seconds", "rate_limit_per_second",
        "max_concurrency", "ca_file", "provision", "webhook_secret", "webhook_username", "webhook_password",
        "webhook_jwt", "webhook_jwt_audience", "webhook_jwt_issuer", "webhook_jwt_algorithms", "organizations"}

    def __init__(self, name: str, *, server_url: str, realm: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.server_url = server_url
        self.realm = realm
        self.admin_client_id = str(self.options.get("admin_client_id") or self.client_id)
        self.admin_client_secret = str(self.options.get("admin_client_secret") or self.client_secret)
        # Self-hosted Keycloak has no admin API quota; the default only keeps bulk imports gentle.
        self._pacing = pacing_from(self.options, name, rate=500.0, concurrency=8)
        self._timeout = number(self.options, name, "timeout_seconds", 10.0, minimum=0.1)
        self._admin: KeycloakProvisioner | None = None
        self._organizations: KeycloakOrganizations | None = None
        # Keycloak 26 Organizations: members of an org with `keycloak_organization` join that organization.
        self._with_organizations = flag(self.options, name, "organizations", False)

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str,
                    http: ProviderHTTP | None = None) -> KeycloakProvider:
        server_url = require_url(options, name, "server_url")
        realm = require(options, name, "realm")["realm"]
        creds = require(options, name, "client_id", "client_secret")
        issuer = f"{server_url}/realms/{realm}"
        return cls(name, server_url=server_url, realm=realm, issuer=issuer, public_url=public_url,
                   options=options, http=http, **creds)

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None,
                      extra: Mapping[str, str]) -> dict[str, list[str]]:
        # The brokered-IdP alias is this provider's own option; the API already checked its form.
        others = {key: value for key, value in extra.items() if key != IDP_HINT_OPTION}
        return super().invite_errors(tenant_id=tenant_id, hosted_domain=hosted_domain, extra=others)

    def provisioner(self) -> Provisioner | None:
        return self if flag(self.options, self.name, "provision", True) else None

    def admin(self) -> KeycloakProvisioner:
        """The Admin REST client, built on first use and shared by every worker thread."""
        with _build_lock:
            if self._admin is None:
                admin = KeycloakAdmin(server_url=self.server_url, realm=self.realm, client_id=self.admin_client_id,
                                      client_secret=self.admin_client_secret, timeout=self._timeout,
                                      pool_size=max(16, self._pacing.concurrency),
                                      verify=ca_bundle(self.options), http=self.http)
                self._admin = KeycloakProvisioner(admin, client_id=self.client_id)
        return self._admin

    def pacing(self) -> Pacing:
        return self._pacing

    def login_ca_file(self) -> str | None:
        ca = ca_bundle(self.options)
        return ca if isinstance(ca, str) else None

    def organizations(self) -> OrganizationMembership | None:
        return self if self._with_organizations else None

    def _organization_client(self) -> KeycloakOrganizations:
        admin = self.admin()
        with _build_lock:
            if self._organizations is None:
                self._organizations = KeycloakOrganizations(admin.admin)
        return self._organizations

    def add_member(self, organization: str, user_id: str) -> str:
        return self._organization_client().add_member(organization, user_id)

    def remove_member(self, organization: str, user_id: str) -> str:
        return self._organization_client().remove_member(organization, user_id)

    def mail_plan(self, org_choice: str) -> MailPlan:
        # The org's keycloak_email: Keycloak's setup mail, ours, or both.
        return MailPlan(idp_mails=org_choice != "ours", we_mail_too=org_choice in ("ours", "both"))

    def provision(self, target: InviteTarget, *, idp_mail: bool, since: datetime | None,
                  before_create: Callable[[], None] | None = None) -> ProvisionResult:
        return self.admin().provision(target, idp_mail=idp_mail, since=since, before_create=before_create)

    def deprovision(self, user_id: str, *, created: bool) -> str:
        return self.admin().deprovision(user_id, created=created)

    def set_enabled(self, user_id: str, enabled: bool) -> str:
        return self.admin().set_enabled(user_id, enabled)

    def login_params(self, target: InviteTarget, *, select_account: bool) -> dict[str, str]:
        params = super().login_params(target, select_account=select_account)
        hint = target.extra.get(IDP_HINT_OPTION)
        if hint:
            params["kc_idp_hint"] = hint
        if select_account:
            # Keycloak has no account chooser; `login` makes it show the form instead of reusing the session.
            params["prompt"] = "login"
        return params

    def account_problem(self, identity: LoginIdentity, claims: Mapping[str, Any], target: InviteTarget,
                        *, match: str) -> str | None:
        # A user idp-bridge created or bound for this invite is the only account that may redeem it.
        if target.idp_user_id:
            return None if identity.subject == target.idp_user_id else "different_account"
        return super().account_problem(identity, claims, target, match=match)

    def realm_events(self) -> RealmEventSource | None:
        return self

    def hmac_secret(self) -> str:
        return text(self.options, "webhook_secret")

    def basic_credentials(self) -> tuple[str, str] | None:
        user, password = text(self.options, "webhook_username"), text(self.options, "webhook_password")
        return (user, password) if user and password else None

    def bearer_settings(self) -> BearerSettings | None:
        if not flag(self.options, self.name, "webhook_jwt", False):
            return None
        raw = self.options.get("webhook_jwt_algorithms") or ["RS256"]
        algorithms = frozenset(a.strip() for a in (raw.split(",") if isinstance(raw, str) else raw) if a.strip())
        realm_url = f"{self.server_url}/realms/{self.realm}"
        return BearerSettings(issuer=str(self.options.get("webhook_jwt_issuer") or realm_url).rstrip("/"),
                              jwks_url=f"{realm_url}/protocol/openid-connect/certs",
                              audience=text(self.options, "webhook_jwt_audience") or None, algorithms=algorithms,
                              verify=ca_bundle(self.options), timeout=self._timeout)
