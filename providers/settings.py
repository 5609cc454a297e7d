"""Reading a provider's settings ([providers.NAME] in the TOML, or IDP_BRIDGE_PROVIDERS__NAME__KEY)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp_bridge.domain.providers import Pacing
from idp_bridge.errors import ConfigError


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


def text(options: Mapping[str, Any], key: str) -> str:
    """An optional string setting, empty when unset."""
    return str(options.get(key) or "")


def ca_bundle(options: Mapping[str, Any]) -> bool | str:
    """`ca_file` when set (a private CA), else the default trust store."""
    value = options.get("ca_file")
    return str(value) if value else True
