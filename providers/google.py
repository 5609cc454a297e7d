"""Google accounts and Google Workspace domains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp_bridge.idp import InviteTarget, require
from providers.base import OIDCProviderBase

GOOGLE_ISSUER = "https://accounts.google.com"


class GoogleProvider(OIDCProviderBase):
    kind = "google"
    default_label = "Google"

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str) -> GoogleProvider:
        creds = require(options, name, "client_id", "client_secret")
        return cls(name, issuer=GOOGLE_ISSUER, public_url=public_url, options=options, **creds)

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None) -> dict[str, list[str]]:
        return super().invite_errors(tenant_id=tenant_id, hosted_domain=None)

    def account_description(self, target: InviteTarget) -> str:
        if target.hosted_domain:
            return f"a Google Workspace account of {target.hosted_domain} ({target.identifier})"
        return f"the Google account {target.identifier}"
