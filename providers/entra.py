"""Microsoft Entra ID (work or school accounts) and personal Microsoft accounts; B2B guests and Graph notifications."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from idp_bridge import locales
from idp_bridge.domain.providers import (
    ChangeNotificationSource,
    IdentityCheck,
    InviteTarget,
    LoginIdentity,
    MailPlan,
    Pacing,
    Provisioner,
    ProvisionResult,
)
from idp_bridge.errors import ConfigError, lazy_gettext
from providers.base import OIDCProviderBase
from providers.entra_graph import GraphGuests
from providers.http import ProviderHTTP
from providers.settings import ca_bundle, flag, number, pacing_from, require, text

_build_lock = threading.Lock()

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MULTI_TENANT = ("common", "organizations", "consumers")
PERSONAL_ACCOUNT_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


class EntraProvider(OIDCProviderBase):
    kind = "entra"
    default_label = "Microsoft"
    OPTIONS = OIDCProviderBase.OPTIONS | {
        "tenant", "authority", "graph_url", "timeout_seconds", "rate_limit_per_second", "max_concurrency", "ca_file",
        "b2b_invite", "b2b_send_invitation_message", "graph_client_state"}

    def __init__(self, name: str, *, tenant: str, authority: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.tenant = tenant
        self.authority = authority
        # Graph allows about 30 invitations and 20 identity writes per second per tenant.
        self._pacing = pacing_from(self.options, name, rate=10.0, concurrency=4)
        self._timeout = number(self.options, name, "timeout_seconds", 10.0, minimum=0.1)
        self._guests: GraphGuests | None = None

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str,
                    http: ProviderHTTP | None = None) -> EntraProvider:
        creds = require(options, name, "client_id", "client_secret")
        tenant = str(options.get("tenant") or "organizations").strip()
        if tenant not in MULTI_TENANT and not GUID.match(tenant):
            raise ConfigError(f"providers.{name}.tenant",
                              f"{tenant!r} is not common, organizations, consumers or a tenant GUID")
        authority = str(options.get("authority") or DEFAULT_AUTHORITY).rstrip("/")
        if not authority.startswith("https://"):
            raise ConfigError(f"providers.{name}.authority", f"{authority!r} is not an https URL")
        if flag(options, name, "b2b_invite", False) and not GUID.match(tenant):
            raise ConfigError(f"providers.{name}.tenant", "b2b_invite = true needs the resource tenant's GUID "
                              f"(app-only Graph tokens cannot be issued for {tenant!r})")
        graph_url = str(options.get("graph_url") or "https://graph.microsoft.com").rstrip("/")
        if not graph_url.startswith("https://"):
            raise ConfigError(f"providers.{name}.graph_url", f"{graph_url!r} is not an https URL")
        issuer = f"{authority}/{tenant}/v2.0"
        return cls(name, tenant=tenant, authority=authority, issuer=issuer, public_url=public_url,
                   options=options, http=http, **creds)

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None,
                      extra: Mapping[str, str]) -> dict[str, list[str]]:
        errors = super().invite_errors(tenant_id=None, hosted_domain=hosted_domain, extra=extra)
        if tenant_id is not None and not GUID.match(tenant_id):
            errors["tenant_id"] = [lazy_gettext("must be a tenant GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47")]
        elif tenant_id and self.tenant not in MULTI_TENANT and tenant_id.lower() != self.tenant.lower():
            errors["tenant_id"] = [lazy_gettext("provider %(name)s only signs in tenant %(tenant)s", name=self.name,
                                                tenant=self.tenant)]
        return errors

    def account_description(self, target: InviteTarget) -> str:
        if target.tenant_id == PERSONAL_ACCOUNT_TENANT:
            return locales.gettext("the personal Microsoft account %(identifier)s", identifier=target.identifier)
        if target.tenant_id:
            return locales.gettext("a Microsoft work or school account of tenant %(tenant)s (%(identifier)s)",
                                   tenant=target.tenant_id, identifier=target.identifier)
        return locales.gettext("the Microsoft account %(identifier)s", identifier=target.identifier)

    def provisioner(self) -> Provisioner | None:
        return self if flag(self.options, self.name, "b2b_invite", False) else None

    def guests(self) -> GraphGuests:
        """The Graph client for B2B invitations, built on first use and shared by every worker thread."""
        with _build_lock:
            if self._guests is None:
                self._guests = GraphGuests(
                    authority=self.authority, tenant=self.tenant, client_id=self.client_id,
                    client_secret=self.client_secret,
                    graph_url=self.options.get("graph_url") or "https://graph.microsoft.com",
                    send_message=flag(self.options, self.name, "b2b_send_invitation_message", True),
                    timeout=self._timeout, verify=ca_bundle(self.options), http=self.http)
        return self._guests

    def pacing(self) -> Pacing:
        return self._pacing

    def login_ca_file(self) -> str | None:
        ca = ca_bundle(self.options)
        return ca if isinstance(ca, str) else None

    def mail_plan(self, org_choice: str) -> MailPlan:
        # Graph mails the invitation itself (b2b_send_invitation_message); the org's choice is about Keycloak.
        return MailPlan(idp_mails=True, we_mail_too=False)

    def provision(self, target: InviteTarget, *, idp_mail: bool, since: datetime | None,
                  before_create: Callable[[], None] | None = None) -> ProvisionResult:
        # Graph returns the existing guest for a known address, so a repeated invitation is harmless.
        return self.guests().invite(target)

    def deprovision(self, user_id: str, *, created: bool) -> str:
        if not created:
            return "kept: the guest existed before the invite"
        return self.guests().remove_unredeemed(user_id)

    def set_enabled(self, user_id: str, enabled: bool) -> str:
        return self.guests().set_enabled(user_id, enabled)

    def change_notifications(self) -> ChangeNotificationSource | None:
        return self

    def client_state(self) -> str:
        return text(self.options, "graph_client_state")

    def guest_state(self, user_id: str) -> str | None:
        return self.guests().guest_state(user_id)

    def create_subscription(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.guests().create_subscription(dict(body))

    def renew_subscription(self, subscription_id: str, expiration: str) -> None:
        self.guests().renew_subscription(subscription_id, expiration)

    # Entra's userinfo comes from Microsoft Graph and lacks tid/oid; every claim the rules need is signed
    # in the ID token.
    use_userinfo = False

    def issuer_of(self, tenant_id: str) -> str:
        return f"{self.authority}/{tenant_id}/v2.0"

    def discovery_issuer_ok(self, issuer: str) -> bool:
        if self.tenant in MULTI_TENANT:
            # Multi-tenant discovery documents carry a template, or the personal-account tenant for consumers.
            allowed = {self.issuer_of("{tenantid}")}
            if self.tenant == "consumers":
                allowed.add(self.issuer_of(PERSONAL_ACCOUNT_TENANT))
            return issuer in allowed
        return issuer.lower() == self.issuer.lower()

    def token_issuers(self, claims: Mapping[str, Any]) -> set[str]:
        # Multi-tenant issuers are validated by substituting the token's own tid, never skipped (rule 3).
        tid = claims.get("tid")
        if not isinstance(tid, str) or not GUID.match(tid):
            return set()
        if self.tenant not in MULTI_TENANT and tid.lower() != self.tenant.lower():
            return set()
        if self.tenant == "consumers" and tid.lower() != PERSONAL_ACCOUNT_TENANT:
            return set()
        return {self.issuer_of(tid)}

    def login_params(self, target: InviteTarget, *, select_account: bool) -> dict[str, str]:
        params = super().login_params(target, select_account=select_account)
        if target.tenant_id == PERSONAL_ACCOUNT_TENANT:
            params["domain_hint"] = "consumers"
        elif target.tenant_id:
            # Without a tenant the email's domain may not be an Entra domain at all; login_hint suffices.
            params["domain_hint"] = target.tenant_id
        return params

    def identity_from(self, claims: Mapping[str, Any]) -> LoginIdentity:
        """Entra identities are keyed on (tid, oid); `sub` is pairwise and email is mutable."""
        tid = str(claims.get("tid") or "").lower()
        oid = str(claims.get("oid") or "")
        raw = claims.get("email") or claims.get("preferred_username")
        email = raw if isinstance(raw, str) and "@" in raw else None
        return LoginIdentity(provider=self.name, issuer=str(claims["iss"]), subject=oid, tenant_id=tid or None,
                             email=email, email_verified=self._email_trusted(claims, None),
                             account=email or str(claims.get("preferred_username") or oid))

    @staticmethod
    def _email_trusted(claims: Mapping[str, Any], invite_tenant: str | None) -> bool:
        """nOAuth: the email claim is admin-editable; it counts only from the invite's tenant, with
        xms_edov true, or from a personal Microsoft account."""
        tid = str(claims.get("tid") or "").lower()
        return (bool(invite_tenant) and tid == str(invite_tenant).lower()) or claims.get("xms_edov") is True \
            or tid == PERSONAL_ACCOUNT_TENANT

    def check_identity(self, claims: Mapping[str, Any], target: InviteTarget, *, match: str) -> IdentityCheck:
        identity = self.identity_from(claims)
        trusted = self._email_trusted(claims, target.tenant_id)
        identity = replace(identity, email_verified=trusted)
        return IdentityCheck(identity, self.account_problem(identity, claims, target, match=match))

    def account_problem(self, identity: LoginIdentity, claims: Mapping[str, Any], target: InviteTarget,
                        *, match: str) -> str | None:
        if not identity.subject or not identity.tenant_id:
            return "no_subject"
        if target.tenant_id and identity.tenant_id != target.tenant_id.lower():
            if identity.tenant_id == PERSONAL_ACCOUNT_TENANT:
                return "personal_account"
            return "wrong_tenant"
        if not target.tenant_id and self.tenant == "organizations" and identity.tenant_id == PERSONAL_ACCOUNT_TENANT:
            return "personal_account"
        if match == "link":
            return None
        if target.idp_user_id and self.tenant not in MULTI_TENANT:
            # A B2B guest idp-bridge invited signs in to the resource tenant with the object id it bound.
            return None if identity.subject == target.idp_user_id else "different_account"
        return super().account_problem(identity, claims, target, match=match)
