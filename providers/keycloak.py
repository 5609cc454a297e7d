"""Keycloak realms: OIDC login, and accounts created or bound through the Admin REST API."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from idp_bridge.idp import (
    InviteTarget,
    LoginIdentity,
    Pacing,
    ProvisionResult,
    flag,
    number,
    pacing_from,
    require,
    require_url,
)
from providers.base import OIDCProviderBase
from providers.keycloak_admin import KeycloakAdmin, KeycloakProvisioner

_build_lock = threading.Lock()


class KeycloakProvider(OIDCProviderBase):
    kind = "keycloak"
    default_label = "Keycloak"

    def __init__(self, name: str, *, server_url: str, realm: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.server_url = server_url
        self.realm = realm
        self.admin_client_id = str(self.options.get("admin_client_id") or self.client_id)
        self.admin_client_secret = str(self.options.get("admin_client_secret") or self.client_secret)
        # Self-hosted Keycloak has no admin API quota; the default only keeps bulk imports gentle.
        self._pacing = pacing_from(self.options, name, rate=500.0, concurrency=8)
        self._timeout = number(self.options, name, "timeout_seconds", 10.0, minimum=0.1)
        self._provisioner: KeycloakProvisioner | None = None

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str) -> KeycloakProvider:
        server_url = require_url(options, name, "server_url")
        realm = require(options, name, "realm")["realm"]
        creds = require(options, name, "client_id", "client_secret")
        issuer = f"{server_url}/realms/{realm}"
        return cls(name, server_url=server_url, realm=realm, issuer=issuer, public_url=public_url,
                   options=options, **creds)

    def provisions(self) -> bool:
        return flag(self.options, self.name, "provision", True)

    def provisioner(self) -> KeycloakProvisioner:
        """The Admin REST client, built on first use and shared by every worker thread."""
        with _build_lock:
            if self._provisioner is None:
                admin = KeycloakAdmin(server_url=self.server_url, realm=self.realm, client_id=self.admin_client_id,
                                      client_secret=self.admin_client_secret, timeout=self._timeout,
                                      pool_size=max(16, self._pacing.concurrency),
                                      verify=self.options.get("ca_file") or True)
                self._provisioner = KeycloakProvisioner(admin, client_id=self.client_id)
        return self._provisioner

    def pacing(self) -> Pacing:
        return self._pacing

    def provision(self, target: InviteTarget, *, idp_mail: bool, since: datetime | None,
                  before_create: Callable[[], None] | None = None) -> ProvisionResult:
        return self.provisioner().provision(target, idp_mail=idp_mail, since=since, before_create=before_create)

    def deprovision(self, user_id: str, *, created: bool) -> str:
        return self.provisioner().deprovision(user_id, created=created)

    def set_enabled(self, user_id: str, enabled: bool) -> str:
        return self.provisioner().set_enabled(user_id, enabled)

    def login_params(self, target: InviteTarget, *, select_account: bool) -> dict[str, str]:
        params = super().login_params(target, select_account=select_account)
        if target.keycloak_idp:
            params["kc_idp_hint"] = target.keycloak_idp
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
