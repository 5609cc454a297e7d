"""Any OpenID Connect provider, found by its issuer (Okta, Auth0, Authentik, Zitadel…)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp_bridge.idp import require, require_url
from providers.base import OIDCProviderBase


class OIDCProvider(OIDCProviderBase):
    kind = "oidc"

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str) -> OIDCProvider:
        issuer = require_url(options, name, "issuer")
        creds = require(options, name, "client_id", "client_secret")
        return cls(name, issuer=issuer, public_url=public_url, options=options, **creds)
