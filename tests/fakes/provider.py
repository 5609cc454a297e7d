"""A provider of our own protocols, in memory: no HTTP and no OIDC; tests script what the invitee signs in as.

It implements idp_bridge.domain.providers.Provider (login) and Provisioner, so rule tests of the core (who may
redeem, which providers an org offers, who mails a provisioned invitee) run without a faked OpenID Provider.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from idp_bridge.domain.providers import (
    ChangeNotificationSource,
    IdentityCheck,
    InviteTarget,
    LoginFailed,
    LoginIdentity,
    MailPlan,
    OrganizationMembership,
    Pacing,
    Provisioner,
    ProvisionResult,
    RealmEventSource,
    SecurityEventSource,
)
from idp_bridge.identifiers import same_email

AUTHORIZE = "https://fake-idp.test/authorize"
ISSUER = "https://fake-idp.test"


@dataclass
class FakeProvider:
    """Signs people in as the test says, and provisions accounts into a dict when `provisions` is set."""

    name: str = "fake"
    label: str = "Fake IdP"
    provisions: bool = False
    idp_mails: bool = True
    we_mail_too: bool = False
    options: frozenset[str] = frozenset()
    jobs: dict[str, object] = field(default_factory=dict)
    pending: dict[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    exchanges: int = 0
    accounts: dict[str, InviteTarget] = field(default_factory=dict)
    provisioned: list[tuple[InviteTarget, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None,
                      extra: Mapping[str, str]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if tenant_id:
            errors["tenant_id"] = [f"not taken by {self.name}"]
        if hosted_domain:
            errors["hosted_domain"] = [f"not taken by {self.name}"]
        for key in extra:
            if key not in self.options:
                errors[key] = [f"not taken by {self.name}"]
        return errors

    def account_description(self, target: InviteTarget) -> str:
        return f"your {self.label} account {target.identifier}"

    def authorization_url(self, target: InviteTarget, *, state: str, nonce: str, code_verifier: str,
                          select_account: bool = False) -> str:
        params = {"provider": self.name, "state": state, "nonce": nonce, **dict(target.extra)}
        if target.email:
            params["login_hint"] = target.email
        return f"{AUTHORIZE}?{urlencode(params)}"

    def sign_in(self, url: str, claims: Mapping[str, Any]) -> dict[str, str]:
        """Play the invitee at the IdP: the callback parameters for signing in with these claims."""
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        code = secrets.token_urlsafe(8)
        self.pending[code] = (params["nonce"], {"iss": ISSUER, **claims})
        return {"code": code, "state": params["state"]}

    def complete_login(self, *, code: str, code_verifier: str, nonce: str,
                       iss: str | None = None) -> Mapping[str, Any]:
        self.exchanges += 1
        found = self.pending.pop(code, None)
        if found is None or found[0] != nonce:
            raise LoginFailed("token_exchange_failed", "unknown code")
        return found[1]

    def identity_from(self, claims: Mapping[str, Any]) -> LoginIdentity:
        email = claims.get("email")
        return LoginIdentity(provider=self.name, issuer=ISSUER, subject=str(claims["sub"]),
                             email=email if isinstance(email, str) else None,
                             email_verified=claims.get("email_verified") is True,
                             account=str(email or claims["sub"]))

    def check_identity(self, claims: Mapping[str, Any], target: InviteTarget, *, match: str) -> IdentityCheck:
        identity = self.identity_from(claims)
        problem = None
        if match != "link":
            if not identity.email or not identity.email_verified:
                problem = "email_not_verified"
            elif not same_email(identity.email, target.identifier):
                problem = "different_account"
        return IdentityCheck(identity, problem)

    def provisioner(self) -> Provisioner | None:
        return self if self.provisions else None

    def realm_events(self) -> RealmEventSource | None:
        return None

    def change_notifications(self) -> ChangeNotificationSource | None:
        return None

    def security_events(self) -> SecurityEventSource | None:
        return None

    def organizations(self) -> OrganizationMembership | None:
        return None

    def job_kinds(self) -> Mapping[str, object]:
        return self.jobs

    def pacing(self) -> Pacing:
        return Pacing(rate_per_second=0, concurrency=4)

    def mail_plan(self, org_choice: str) -> MailPlan:
        return MailPlan(idp_mails=self.idp_mails, we_mail_too=self.we_mail_too)

    def provision(self, target: InviteTarget, *, idp_mail: bool, since: datetime | None,
                  before_create: Callable[[], None] | None = None) -> ProvisionResult:
        with self.lock:
            self.provisioned.append((target, idp_mail))
            user_id = f"fake-{target.invite_id}"
            created = user_id not in self.accounts
            self.accounts[user_id] = target
        return ProvisionResult(user_id=user_id, created=created, mailed=idp_mail and self.idp_mails)

    def deprovision(self, user_id: str, *, created: bool) -> str:
        if not created:
            return "kept: the account existed before the invite"
        with self.lock:
            return "deleted" if self.accounts.pop(user_id, None) is not None else "gone"

    def set_enabled(self, user_id: str, enabled: bool) -> str:
        return "enabled" if enabled else "disabled"
