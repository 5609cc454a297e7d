"""Keycloak realms: OIDC login, and accounts created or bound through the Admin REST API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp_bridge.idp import require, require_url
from providers.base import OIDCProviderBase


class KeycloakProvider(OIDCProviderBase):
    kind = "keycloak"
    default_label = "Keycloak"

    def __init__(self, name: str, *, server_url: str, realm: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.server_url = server_url
        self.realm = realm

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str) -> KeycloakProvider:
        server_url = require_url(options, name, "server_url")
        realm = require(options, name, "realm")["realm"]
        creds = require(options, name, "client_id", "client_secret")
        issuer = f"{server_url}/realms/{realm}"
        return cls(name, server_url=server_url, realm=realm, issuer=issuer, public_url=public_url,
                   options=options, **creds)

    def provisions(self) -> bool:
        return bool(self.options.get("provision", True))
