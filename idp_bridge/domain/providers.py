"""What an identity provider offers the core, as capabilities: login, provisioning, guests, inbound events, jobs.

Every built-in provider module in `providers/` implements these protocols, checked statically by mypy
(`providers/conformance.py`); the core asks a provider for a capability through a typed method
(`provisioner()`, `realm_events()`, `organizations()`…) and never inspects its type or attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from idp_bridge.domain.states import ANY_PROVIDER

# The invite's provider when the invitee may choose any configured provider the org allows.
ANY = ANY_PROVIDER


@dataclass(frozen=True)
class InviteTarget:
    """What a provider needs to know about an invite to log in or provision for it.

    `extra` carries the invite's provider-specific options (e.g. `keycloak_idp`) opaquely: the provider that
    takes them validates them in `invite_errors` and interprets them; the core only stores and passes them.
    """

    invite_id: str
    org_slug: str
    identifier: str
    email: str | None
    name: str
    tenant_id: str | None = None
    hosted_domain: str | None = None
    idp_user_id: str | None = None
    link: str = ""
    expires_in_seconds: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)


class LoginFailed(Exception):
    """An OIDC login that did not produce a trustworthy identity; `reason` is a stable code for audit."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LoginIdentity:
    """The IdP account a validated login proved; (provider, issuer, subject) is its key."""

    provider: str
    issuer: str
    subject: str
    tenant_id: str | None = None
    email: str | None = None
    email_verified: bool = False
    # What the person would recognise as the account they used (email or username).
    account: str = ""


@dataclass(frozen=True)
class IdentityCheck:
    """A provider's verdict on a login for an invite: the identity, and the broken rule if any."""

    identity: LoginIdentity
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class ProvisionResult:
    """The IdP account an invite is bound to, and whether the IdP mailed the invitee itself."""

    user_id: str
    created: bool
    data: Mapping[str, Any] = field(default_factory=dict)
    mailed: bool = False


@dataclass(frozen=True)
class Pacing:
    """How hard the worker may push one provider: calls per second (0: unlimited) and parallel calls."""

    rate_per_second: float
    concurrency: int


@dataclass(frozen=True)
class MailPlan:
    """Who mails the invitee of a provisioned account: the IdP (`idp_mails`), and also us (`we_mail_too`)."""

    idp_mails: bool
    we_mail_too: bool


@dataclass(frozen=True)
class BearerSettings:
    """How a realm signs the bearer tokens of its event webhooks: issuer, keys, audience, algorithms, transport."""

    issuer: str
    jwks_url: str
    audience: str | None
    algorithms: frozenset[str]
    verify: bool | str = True
    timeout: float = 10.0


class LoginProvider(Protocol):
    """The login side every provider implements: invite options, the OIDC round trip and the identity rules."""

    name: str
    label: str

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None,
                      extra: Mapping[str, str]) -> dict[str, list[str]]:
        """Field errors for invite options this provider does not accept (`extra`: provider-specific options)."""
        ...

    def account_description(self, target: InviteTarget) -> str:
        """Tell an invitee, in a few words, which account the invite needs."""
        ...

    def authorization_url(self, target: InviteTarget, *, state: str, nonce: str, code_verifier: str,
                          select_account: bool = False) -> str:
        """Where to send the invitee to sign in (PKCE S256, state, nonce, login hints for this invite)."""
        ...

    def complete_login(self, *, code: str, code_verifier: str, nonce: str,
                       iss: str | None = None) -> Mapping[str, Any]:
        """Exchange the code and return fully validated ID token claims; raise LoginFailed otherwise.

        `iss` is the authorization response's issuer parameter (RFC 9207) when the provider sent one.
        """
        ...

    def identity_from(self, claims: Mapping[str, Any]) -> LoginIdentity:
        """The account validated claims prove, keyed as bound identities are (the console looks it up)."""
        ...

    def check_identity(self, claims: Mapping[str, Any], target: InviteTarget, *, match: str) -> IdentityCheck:
        """Apply this provider's identity rules (tenant, domain, account match) to validated claims."""
        ...


class Provisioner(Protocol):
    """Creates, binds and removes IdP accounts for invites."""

    name: str

    def pacing(self) -> Pacing:
        """Rate and concurrency limits for this provider's jobs."""
        ...

    def mail_plan(self, org_choice: str) -> MailPlan:
        """Who mails a new account's invitee, given the org's choice (`keycloak_email`: keycloak, ours, both)."""
        ...

    def provision(self, target: InviteTarget, *, idp_mail: bool, since: datetime | None,
                  before_create: Callable[[], None] | None = None) -> ProvisionResult:
        """Find-or-create the invitee's account; idempotent, safe to repeat after a crash.

        `since`: when an earlier attempt first tried to create the account (None: never);
        `before_create`: called right before an account is created, to record that moment durably.
        """
        ...

    def deprovision(self, user_id: str, *, created: bool) -> str:
        """Undo provisioning of a closed invite; never deletes an account that existed before it."""
        ...

    def set_enabled(self, user_id: str, enabled: bool) -> str:
        """Disable or enable the bound account."""
        ...


class GuestDirectory(Protocol):
    """Guest accounts a provider invited, as its directory sees them."""

    def guest_state(self, user_id: str) -> str | None:
        """The guest's invitation state (e.g. PendingAcceptance, Accepted), or None when the user is gone."""
        ...


class RealmEventSource(Protocol):
    """What signed realm-event webhooks (Keycloak event listeners) need from the provider that sends them."""

    name: str

    def hmac_secret(self) -> str:
        """The shared secret of body signatures (hex HMAC-SHA256); empty when not configured."""
        ...

    def basic_credentials(self) -> tuple[str, str] | None:
        """The user name and password of Basic-authenticated events, when both are configured."""
        ...

    def bearer_settings(self) -> BearerSettings | None:
        """How realm-signed bearer tokens are checked, when they are accepted; raises ConfigError if misconfigured."""
        ...


class ChangeNotificationSource(GuestDirectory, Protocol):
    """What directory change notifications (Microsoft Graph subscriptions on users) need from the provider."""

    name: str

    def client_state(self) -> str:
        """The secret every notification of our subscriptions carries; empty when not configured."""
        ...

    def create_subscription(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Create a change-notification subscription; the answer carries its `id` and `expirationDateTime`."""
        ...

    def renew_subscription(self, subscription_id: str, expiration: str) -> None:
        """Move a subscription's expiry; raises ProviderError `not_found` when the directory dropped it."""
        ...


class SecurityEventSource(Protocol):
    """What security event tokens (Google RISC) need from the provider they concern."""

    name: str

    def audience(self) -> str:
        """The `aud` the tokens for this provider carry (its OAuth client id)."""
        ...

    def configuration_url(self) -> str | None:
        """Where the transmitter publishes its configuration, when not the default."""
        ...


class OrganizationMembership(Protocol):
    """Membership in the IdP's own organizations (Keycloak 26 Organizations), following the org's members."""

    name: str

    def pacing(self) -> Pacing:
        """Rate and concurrency limits for this provider's calls."""
        ...

    def add_member(self, organization: str, user_id: str) -> str:
        """Make the account a member of the organization (its alias or id): `added`, or `already` a member."""
        ...

    def remove_member(self, organization: str, user_id: str) -> str:
        """Take the account out of the organization: `removed`, or `not_member` when it was not one."""
        ...


class Provider(LoginProvider, Protocol):
    """An identity provider configured under [providers.NAME]: login, and the capabilities it offers."""

    def provisioner(self) -> Provisioner | None:
        """The provisioning side, when invites for this provider need an IdP account created or invited first."""
        ...

    def realm_events(self) -> RealmEventSource | None:
        """The signed realm-event webhooks this provider sends, if any."""
        ...

    def change_notifications(self) -> ChangeNotificationSource | None:
        """The directory change notifications this provider sends, if any."""
        ...

    def security_events(self) -> SecurityEventSource | None:
        """The security event tokens sent about this provider's accounts, if any."""
        ...

    def organizations(self) -> OrganizationMembership | None:
        """The IdP organizations members of an org are added to, when this provider has them turned on."""
        ...

    def job_kinds(self) -> Mapping[str, object]:
        """Job kinds this provider adds to the worker, by name (each an idp_bridge.worker.JobKind)."""
        ...
