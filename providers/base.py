"""What the built-in providers share: settings common to every OIDC login."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from idp_bridge import locales
from idp_bridge.domain.providers import (
    ChangeNotificationSource,
    IdentityCheck,
    InviteTarget,
    LoginIdentity,
    OrganizationMembership,
    Provisioner,
    RealmEventSource,
    SecurityEventSource,
)
from idp_bridge.errors import lazy_gettext
from idp_bridge.identifiers import same_email
from providers.http import ProviderHTTP
from providers.oidc_login import OIDCClient

# Provider-specific invite options (InviteTarget.extra) and the kind of provider that takes each.
OPTION_OWNERS = {"keycloak_idp": "Keycloak"}


class OIDCProviderBase:
    """Common fields of a provider that logs people in with OpenID Connect."""

    kind: ClassVar[str] = ""
    default_label: ClassVar[str] = ""
    # Every key its [providers.NAME] table may hold: any other is a configuration error (a typo, most likely).
    OPTIONS: ClassVar[frozenset[str]] = frozenset({"type", "label", "client_id", "client_secret"})

    def __init__(self, name: str, *, issuer: str, client_id: str, client_secret: str, public_url: str,
                 options: Mapping[str, Any], http: ProviderHTTP | None = None) -> None:
        self.name = name
        self.label = str(options.get("label") or self.default_label or name)
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = f"{public_url}/auth/callback/{name}"
        self.options = dict(options)
        self.http = http if http is not None else ProviderHTTP()

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None,
                      extra: Mapping[str, str]) -> dict[str, list[str]]:
        """By default a provider takes neither an Entra tenant, nor a Google domain, nor any provider option."""
        errors: dict[str, list[str]] = {}
        if tenant_id:
            errors["tenant_id"] = [lazy_gettext("only for Microsoft Entra ID providers, not %(name)s (%(kind)s)",
                                                name=self.name, kind=self.kind)]
        if hosted_domain:
            errors["hosted_domain"] = [lazy_gettext("only for Google providers, not %(name)s (%(kind)s)",
                                                    name=self.name, kind=self.kind)]
        for key, value in extra.items():
            if value:
                owner = OPTION_OWNERS.get(key)
                errors[key] = [lazy_gettext("only for %(owner)s providers, not %(name)s (%(kind)s)", owner=owner,
                                            name=self.name, kind=self.kind) if owner
                               else lazy_gettext("not an option of %(name)s (%(kind)s)", name=self.name,
                                                 kind=self.kind)]
        return errors

    def account_description(self, target: InviteTarget) -> str:
        return locales.gettext("your %(label)s account %(identifier)s", label=self.label,
                               identifier=target.identifier)

    def provisioner(self) -> Provisioner | None:
        """By default a provider logs people in only; invites need no account made first."""
        return None

    def realm_events(self) -> RealmEventSource | None:
        return None

    def change_notifications(self) -> ChangeNotificationSource | None:
        return None

    def security_events(self) -> SecurityEventSource | None:
        return None

    def organizations(self) -> OrganizationMembership | None:
        """By default a provider has no organizations of its own for members to join."""
        return None

    def job_kinds(self) -> Mapping[str, object]:
        """The built-in providers add no job kinds of their own."""
        return {}

    @functools.cached_property
    def oidc(self) -> OIDCClient:
        """The relying-party client; built once so discovery stays cached (keys live in the shared JWKS cache)."""
        return OIDCClient(issuer=self.issuer, client_id=self.client_id, client_secret=self.client_secret,
                          redirect_uri=self.redirect_uri, discovery_issuer_ok=self.discovery_issuer_ok,
                          token_issuers=self.token_issuers, use_userinfo=self.use_userinfo, http=self.http,
                          ca_file=self.login_ca_file())

    use_userinfo: ClassVar[bool] = True

    def login_ca_file(self) -> str | None:
        """The private CA the sign-in's discovery, token and key calls trust instead of the default bundle; only
        the types that take `ca_file` have one."""
        return None

    def discovery_issuer_ok(self, issuer: str) -> bool:
        """The discovery document must name exactly the configured issuer."""
        return issuer == self.issuer

    def token_issuers(self, claims: Mapping[str, Any]) -> set[str]:
        """The `iss` values an ID token of this provider may carry."""
        return {self.issuer}

    def login_params(self, target: InviteTarget, *, select_account: bool) -> dict[str, str]:
        """Authorization parameters the invite implies (hints only; the rules are checked afterwards)."""
        params: dict[str, str] = {}
        if target.email:
            params["login_hint"] = target.email
        if select_account:
            params["prompt"] = "select_account"
        return params

    def authorization_url(self, target: InviteTarget, *, state: str, nonce: str, code_verifier: str,
                          select_account: bool = False) -> str:
        params = self.login_params(target, select_account=select_account)
        return self.oidc.authorization_request(state=state, nonce=nonce, code_verifier=code_verifier,
                                               params=params).url

    def complete_login(self, *, code: str, code_verifier: str, nonce: str,
                       iss: str | None = None) -> Mapping[str, Any]:
        return self.oidc.finish(code=code, code_verifier=code_verifier, nonce=nonce, iss=iss)

    def identity_from(self, claims: Mapping[str, Any]) -> LoginIdentity:
        """The account the claims describe, keyed on the issuer's `sub`."""
        email = claims.get("email")
        # Kept exactly as signed: stripping would let "\u3000victim@…" (another mailbox) pass as "victim@…".
        email = email if isinstance(email, str) and email.strip() else None
        account = email or str(claims.get("preferred_username") or claims.get("sub"))
        return LoginIdentity(provider=self.name, issuer=str(claims["iss"]), subject=str(claims["sub"]),
                             email=email, email_verified=email_verified(claims), account=account)

    def check_identity(self, claims: Mapping[str, Any], target: InviteTarget, *, match: str) -> IdentityCheck:
        identity = self.identity_from(claims)
        return IdentityCheck(identity, self.account_problem(identity, claims, target, match=match))

    def account_problem(self, identity: LoginIdentity, claims: Mapping[str, Any], target: InviteTarget,
                        *, match: str) -> str | None:
        """Rule 5 for Google and generic OIDC: a verified email equal to the identifier."""
        if match == "link":
            return None
        return verified_email_problem(identity, target)


def email_verified(claims: Mapping[str, Any]) -> bool:
    """Only a JSON true (or the string "true" some IdPs send) counts; the string "false" is false."""
    value = claims.get("email_verified")
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"


def verified_email_problem(identity: LoginIdentity, target: InviteTarget) -> str | None:
    """Rule 5 by email: verified, and the same mailbox as the identifier in canonical form."""
    if not identity.email:
        return "no_email"
    if not identity.email_verified:
        return "email_not_verified"
    if not same_email(identity.email, target.identifier):
        return "different_account"
    return None
