"""The provider plugins: types registered under an entry-point group, built by name from configuration (part of
the composition root: it hands each provider the shared HTTP helper)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol

from idp_bridge.domain.providers import ANY, Provider
from idp_bridge.errors import ConfigError
from providers.http import ProviderHTTP

ENTRY_POINT_GROUP = "idp_bridge.providers"


class ProviderType(Protocol):
    """A provider plugin: a class built from its [providers.NAME] table and the deployment's shared HTTP."""

    def from_config(self, name: str, options: Mapping[str, Any], *, public_url: str,
                    http: ProviderHTTP | None = None) -> Provider:
        """Build from configuration; raise ConfigError naming the bad setting."""
        ...


def provider_classes() -> dict[str, ProviderType]:
    """Provider types registered under the entry-point group, by type name."""
    found: dict[str, ProviderType] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return found


def _check_keys(name: str, kind: str, options: Mapping[str, Any], known: frozenset[str] | None) -> None:
    """A key the provider type does not take is a mistake, named with the key it most resembles.

    Only for types that list their keys (`OPTIONS`); third-party types may read what they like.
    """
    if known is None:
        return
    for key in sorted(set(options) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"; did you mean providers.{name}.{close[0]}?" if close else ""
        raise ConfigError(f"providers.{name}.{key}", f"not a setting of a {kind} provider{hint}")


def build_providers(config: Mapping[str, Mapping[str, Any]], *, public_url: str,
                    classes: Mapping[str, ProviderType] | None = None,
                    http: ProviderHTTP | None = None) -> dict[str, Provider]:
    """Instantiate every configured provider; configuration mistakes stop start-up here."""
    registry = dict(classes) if classes is not None else provider_classes()
    shared = http if http is not None else ProviderHTTP()
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
        _check_keys(name, str(kind), options, getattr(cls, "OPTIONS", None))
        providers[name] = cls.from_config(name, options, public_url=public_url, http=shared)
    return providers
