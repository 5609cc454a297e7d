"""What the built-in providers share: settings common to every OIDC login."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from idp_bridge.idp import InviteTarget


class OIDCProviderBase:
    """Common fields of a provider that logs people in with OpenID Connect."""

    kind: ClassVar[str] = ""
    default_label: ClassVar[str] = ""

    def __init__(self, name: str, *, issuer: str, client_id: str, client_secret: str, public_url: str,
                 options: Mapping[str, Any]) -> None:
        self.name = name
        self.label = str(options.get("label") or self.default_label or name)
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = f"{public_url}/auth/callback/{name}"
        self.options = dict(options)

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None) -> dict[str, list[str]]:
        """By default a provider takes neither an Entra tenant nor a Google domain."""
        errors: dict[str, list[str]] = {}
        if tenant_id:
            errors["tenant_id"] = [f"only for Microsoft Entra ID providers, not {self.name} ({self.kind})"]
        if hosted_domain:
            errors["hosted_domain"] = [f"only for Google providers, not {self.name} ({self.kind})"]
        return errors

    def account_description(self, target: InviteTarget) -> str:
        return f"your {self.label} account {target.identifier}"

    def provisions(self) -> bool:
        return False
