"""Microsoft Entra ID (work or school accounts) and personal Microsoft accounts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from idp_bridge.errors import ConfigError
from idp_bridge.idp import InviteTarget, require
from providers.base import OIDCProviderBase

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MULTI_TENANT = ("common", "organizations", "consumers")
PERSONAL_ACCOUNT_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


class EntraProvider(OIDCProviderBase):
    kind = "entra"
    default_label = "Microsoft"

    def __init__(self, name: str, *, tenant: str, authority: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.tenant = tenant
        self.authority = authority

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str) -> EntraProvider:
        creds = require(options, name, "client_id", "client_secret")
        tenant = str(options.get("tenant") or "organizations").strip()
        if tenant not in MULTI_TENANT and not GUID.match(tenant):
            raise ConfigError(f"providers.{name}.tenant",
                              f"{tenant!r} is not common, organizations, consumers or a tenant GUID")
        authority = str(options.get("authority") or DEFAULT_AUTHORITY).rstrip("/")
        if not authority.startswith("https://"):
            raise ConfigError(f"providers.{name}.authority", f"{authority!r} is not an https URL")
        issuer = f"{authority}/{tenant}/v2.0"
        return cls(name, tenant=tenant, authority=authority, issuer=issuer, public_url=public_url,
                   options=options, **creds)

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None) -> dict[str, list[str]]:
        errors = super().invite_errors(tenant_id=None, hosted_domain=hosted_domain)
        if tenant_id is not None and not GUID.match(tenant_id):
            errors["tenant_id"] = ["must be a tenant GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47"]
        elif tenant_id and self.tenant not in MULTI_TENANT and tenant_id.lower() != self.tenant.lower():
            errors["tenant_id"] = [f"provider {self.name} only signs in tenant {self.tenant}"]
        return errors

    def account_description(self, target: InviteTarget) -> str:
        if target.tenant_id == PERSONAL_ACCOUNT_TENANT:
            return f"the personal Microsoft account {target.identifier}"
        if target.tenant_id:
            return f"a Microsoft work or school account of tenant {target.tenant_id} ({target.identifier})"
        return f"the Microsoft account {target.identifier}"

    def provisions(self) -> bool:
        return bool(self.options.get("b2b_invite", False))
