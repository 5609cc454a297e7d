"""Google accounts and Google Workspace domains; Cross-Account Protection (RISC) events about them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from idp_bridge import locales
from idp_bridge.domain.providers import InviteTarget, LoginIdentity, SecurityEventSource
from providers.base import OIDCProviderBase
from providers.http import ProviderHTTP
from providers.settings import require, text

GOOGLE_ISSUER = "https://accounts.google.com"
# Google documents both forms of `iss` in its ID tokens.
GOOGLE_TOKEN_ISSUERS = frozenset({GOOGLE_ISSUER, "accounts.google.com"})


class GoogleProvider(OIDCProviderBase):
    kind = "google"
    default_label = "Google"
    OPTIONS = OIDCProviderBase.OPTIONS | {"risc_configuration_url"}

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str,
                    http: ProviderHTTP | None = None) -> GoogleProvider:
        creds = require(options, name, "client_id", "client_secret")
        return cls(name, issuer=GOOGLE_ISSUER, public_url=public_url, options=options, http=http, **creds)

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None,
                      extra: Mapping[str, str]) -> dict[str, list[str]]:
        return super().invite_errors(tenant_id=tenant_id, hosted_domain=None, extra=extra)

    def account_description(self, target: InviteTarget) -> str:
        if target.hosted_domain:
            return locales.gettext("a Google Workspace account of %(domain)s (%(identifier)s)",
                                   domain=target.hosted_domain, identifier=target.identifier)
        return locales.gettext("the Google account %(identifier)s", identifier=target.identifier)

    def token_issuers(self, claims: Mapping[str, Any]) -> set[str]:
        return set(GOOGLE_TOKEN_ISSUERS)

    def identity_from(self, claims: Mapping[str, Any]) -> LoginIdentity:
        # One account, one key: both documented `iss` forms are stored as the https one.
        identity = super().identity_from(claims)
        return replace(identity, issuer=GOOGLE_ISSUER)

    def login_params(self, target: InviteTarget, *, select_account: bool) -> dict[str, str]:
        params = super().login_params(target, select_account=select_account)
        if target.hosted_domain:
            params["hd"] = target.hosted_domain
        return params

    def account_problem(self, identity: LoginIdentity, claims: Mapping[str, Any], target: InviteTarget,
                        *, match: str) -> str | None:
        # The `hd` request parameter is only a hint; the signed `hd` claim decides (rule 4).
        if target.hosted_domain:
            hd = claims.get("hd")
            if not isinstance(hd, str) or hd.lower() != target.hosted_domain.lower():
                return "wrong_domain"
        return super().account_problem(identity, claims, target, match=match)

    def security_events(self) -> SecurityEventSource | None:
        return self

    def audience(self) -> str:
        return self.client_id

    def configuration_url(self) -> str | None:
        return text(self.options, "risc_configuration_url") or None
