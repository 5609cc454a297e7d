"""A configured provider whose IdP answers each authorization code with claims the test chose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp_bridge.domain.providers import IdentityCheck, InviteTarget, Provider


class ClaimsProvider:
    """Wraps a real provider: complete_login() returns the claims kept for the code; check_identity() is counted."""

    def __init__(self, real: Provider, claims: Mapping[str, Mapping[str, Any]]) -> None:
        self._real = real
        self._claims = claims
        self.checks = 0

    def complete_login(self, *, code: str, code_verifier: str, nonce: str,
                       iss: str | None = None) -> Mapping[str, Any]:
        return self._claims[code]

    def check_identity(self, claims: Mapping[str, Any], target: InviteTarget, *, match: str) -> IdentityCheck:
        self.checks += 1
        return self._real.check_identity(claims, target, match=match)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
