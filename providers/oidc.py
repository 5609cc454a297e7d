"""Any OpenID Connect provider, found by its issuer (Okta, Auth0, Authentik, Zitadel…)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.base import OIDCProviderBase
from providers.http import ProviderHTTP
from providers.settings import require, require_url


class OIDCProvider(OIDCProviderBase):
    kind = "oidc"
    OPTIONS = OIDCProviderBase.OPTIONS | {"issuer"}

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str,
                    http: ProviderHTTP | None = None) -> OIDCProvider:
        issuer = require_url(options, name, "issuer")
        creds = require(options, name, "client_id", "client_secret")
        return cls(name, issuer=issuer, public_url=public_url, options=options, http=http, **creds)
