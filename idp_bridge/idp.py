"""The Provider protocol every IdP plugin implements, and the registry that loads plugins by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from idp_bridge.errors import ConfigError

ENTRY_POINT_GROUP = "idp_bridge.providers"
ANY = "any"


@dataclass(frozen=True)
class InviteTarget:
    """What a provider needs to know about an invite to log in or provision for it."""

    invite_id: str
    org_slug: str
    identifier: str
    email: str | None
    name: str
    tenant_id: str | None = None
    hosted_domain: str | None = None
    keycloak_idp: str | None = None
    idp_user_id: str | None = None
    link: str = ""
    expires_in_seconds: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


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


@runtime_checkable
class Provisioner(Protocol):
    """A provider that creates, binds and removes IdP accounts for invites (provisions() is true)."""

    name: str

    def pacing(self) -> Pacing:
        """Rate and concurrency limits for this provider's jobs."""
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


@runtime_checkable
class Provider(Protocol):
    """An identity provider configured under [providers.NAME]."""

    kind: ClassVar[str]
    name: str
    label: str

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, public_url: str) -> Provider:
        """Build from configuration; raise ConfigError naming the bad setting."""
        ...

    def invite_errors(self, *, tenant_id: str | None, hosted_domain: str | None) -> dict[str, list[str]]:
        """Field errors for invite options this provider does not accept."""
        ...

    def account_description(self, target: InviteTarget) -> str:
        """Tell an invitee, in a few words, which account the invite needs."""
        ...

    def provisions(self) -> bool:
        """Whether invites for this provider need an IdP account created or invited first."""
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

    def check_identity(self, claims: Mapping[str, Any], target: InviteTarget, *, match: str) -> IdentityCheck:
        """Apply this provider's identity rules (tenant, domain, account match) to validated claims."""
        ...


def provider_classes() -> dict[str, type[Provider]]:
    """Provider types registered under the entry-point group, by type name."""
    found: dict[str, type[Provider]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return found


def build_providers(config: Mapping[str, Mapping[str, Any]], *, public_url: str,
                    classes: Mapping[str, type[Provider]] | None = None) -> dict[str, Provider]:
    """Instantiate every configured provider; configuration mistakes stop start-up here."""
    registry = dict(classes) if classes is not None else provider_classes()
    providers: dict[str, Provider] = {}
    for name, options in config.items():
        if name == ANY:
            raise ConfigError(f"providers.{name}", "'any' is reserved; pick another provider name")
        if not isinstance(options, Mapping):
            raise ConfigError(f"providers.{name}", "must be a table")
        kind = options.get("type")
        if not kind:
            raise ConfigError(f"providers.{name}.type", f"missing; one of {', '.join(sorted(registry))}")
        cls = registry.get(str(kind))
        if cls is None:
            raise ConfigError(f"providers.{name}.type",
                              f"unknown provider type {kind!r}; one of {', '.join(sorted(registry))}")
        providers[name] = cls.from_config(name, options, public_url=public_url)
    return providers


def require(options: Mapping[str, Any], name: str, *keys: str) -> dict[str, str]:
    """The given string settings of a provider, each present and non-empty."""
    out: dict[str, str] = {}
    for key in keys:
        value = options.get(key)
        if value is None or str(value).strip() == "":
            env = f"IDP_BRIDGE_PROVIDERS__{name.upper()}__{key.upper()}"
            raise ConfigError(f"providers.{name}.{key}", f"missing (set it in the TOML or {env})")
        out[key] = str(value).strip()
    return out


def require_url(options: Mapping[str, Any], name: str, key: str) -> str:
    """A provider setting that must be an absolute http(s) URL."""
    value = require(options, name, key)[key].rstrip("/")
    if not value.startswith(("https://", "http://")) or "://" not in value or len(value.split("://", 1)[1]) == 0:
        raise ConfigError(f"providers.{name}.{key}", f"{value!r} is not an absolute http(s) URL")
    return value


def number(options: Mapping[str, Any], name: str, key: str, default: float, *, minimum: float = 0.0) -> float:
    """An optional numeric provider setting, at least `minimum`."""
    raw = options.get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"providers.{name}.{key}", f"{raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"providers.{name}.{key}", f"must be at least {minimum:g}")
    return value


def pacing_from(options: Mapping[str, Any], name: str, *, rate: float, concurrency: int) -> Pacing:
    """`rate_limit_per_second` (0 = unlimited) and `max_concurrency` of a provider, with its defaults."""
    return Pacing(rate_per_second=number(options, name, "rate_limit_per_second", rate),
                  concurrency=int(number(options, name, "max_concurrency", concurrency, minimum=1)))


def flag(options: Mapping[str, Any], name: str, key: str, default: bool) -> bool:
    """An optional yes/no provider setting; environment values arrive as strings like "false"."""
    raw = options.get(key, default)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(f"providers.{name}.{key}", f"{raw!r} is not true or false")
