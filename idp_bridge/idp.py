"""The Provider protocol every IdP plugin implements, and the registry that loads plugins by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
