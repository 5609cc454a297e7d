"""Settings: a TOML file overridden by IDP_BRIDGE_* environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from idp_bridge.errors import ConfigError
from idp_bridge.jsontext import control_character
from idp_bridge.presets import DEFAULT_CONFIG_NAME, packaged, roles_presets

ENV_PREFIX = "IDP_BRIDGE_"
DEFAULT_CONFIG = Path("config") / DEFAULT_CONFIG_NAME
# Keys whose values may be given as KEY_file = "/path" so the secret itself stays out of the TOML.
SECRET_SUFFIX = "_file"


class RoleSettings(BaseModel):
    """One role: its permissions and whether new invites get it by default."""

    model_config = ConfigDict(extra="forbid")

    permissions: list[str] = Field(default_factory=list)
    default: bool = False
    owner: bool = False
    description: str = ""


DEFAULT_ROLES: dict[str, RoleSettings] = {
    "OWNER": RoleSettings(
        permissions=["users:read", "users:invite", "users:edit", "users:delete", "webhooks:manage",
                     "audit:read"],
        owner=True, description="Full control of the organization, including its owners."),
    "ADMIN": RoleSettings(
        permissions=["users:read", "users:invite", "users:edit", "users:delete", "webhooks:manage",
                     "audit:read"],
        description="Manages members and invitations."),
    "MEMBER": RoleSettings(permissions=["users:read"], default=True, description="Uses the organization."),
}


class Settings(BaseModel):
    """Everything the service reads from configuration."""

    model_config = ConfigDict(extra="forbid")

    instance_dir: Path = Path("instance")
    database_url: str = ""
    public_url: str = "http://127.0.0.1:8080"
    secret_key: str = ""
    # Older secret keys that still unseal queued links and secrets and check invite codes after a key change.
    secret_key_fallbacks: list[str] = Field(default_factory=list)
    redirect_allowlist: list[str] = Field(default_factory=list)
    support_contact: str = ""
    product_name: str = "idp-bridge"

    roles_file: str = ""
    roles: dict[str, RoleSettings] = Field(default_factory=dict)

    mail_transport: Literal["file", "smtp"] = "file"
    mail_from: str = "idp-bridge <no-reply@localhost>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_timeout: float = 10.0

    worker_poll_seconds: float = 1.0
    job_max_attempts: int = Field(default=8, ge=1, le=100)
    job_backoff_base_seconds: float = Field(default=2.0, gt=0)
    job_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    # A job a worker claimed but never finished (the worker died) runs again once this has passed.
    job_lease_seconds: float = Field(default=300.0, ge=1)
    email_rate_per_second: float = Field(default=10.0, gt=0)

    # Where the invitee pages' rate-limit counters live: database:// (the deployment's database, shared by every
    # process and instance), redis://… (pip install 'idp-bridge[redis]'), or memory:// (one process only).
    rate_limit_storage_url: str = "database://"
    # Per client IP, Flask-Limiter notation; code tries get their own, tighter limit.
    invite_page_rate_limit: str = "120/minute"
    invite_code_rate_limit: str = "20/minute"
    # API requests that fail to authenticate (no, malformed, unknown or revoked key), per client IP; past it
    # every API request from that IP gets 429 until the window ends.
    api_auth_failure_rate_limit: str = "30/minute"
    # The admin console: a signed-in session ends after this long without a request, and after this long at most;
    # its pages are limited per session (Flask-Limiter notation), not per IP.
    console_session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    console_session_max_hours: int = Field(default=12, ge=1, le=24 * 30)
    console_rate_limit: str = "600/minute"
    # Origins that may show the console in a frame (CSP frame-ancestors); empty: none may.
    console_frame_ancestors: list[str] = Field(default_factory=list)
    # Hosts an org's branding logo may be shown from (https only); a logo elsewhere is left out for its name.
    branding_image_hosts: list[str] = Field(default_factory=list)
    trust_proxy_headers: int = Field(default=0, ge=0, le=5)
    # One line per request on stdout from `serve`; off where a reverse proxy already logs requests.
    access_log: bool = True

    # Networks (CIDR) outbound webhooks may reach besides public addresses, e.g. ["127.0.0.0/8"] for development.
    webhook_allow_networks: list[str] = Field(default_factory=list)
    # DNS resolvers as "host" or "host:port"; empty: the system's.
    dns_nameservers: list[str] = Field(default_factory=list)

    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("api_auth_failure_rate_limit", "console_rate_limit")
    @classmethod
    def _is_a_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError("must be a rate limit such as 30/minute") from None
        return value

    @field_validator("console_frame_ancestors")
    @classmethod
    def _frame_ancestors_are_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[A-Za-z0-9.*-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not a network in CIDR notation (e.g. 127.0.0.0/8)") from None
        return value

    @field_validator("dns_nameservers")
    @classmethod
    def _nameservers_are_addresses(cls, value: list[str]) -> list[str]:
        for text in value:
            nameserver_address(text)
        return value

    @field_validator("product_name", "support_contact", "mail_from")
    @classmethod
    def _one_line(cls, value: str) -> str:
        # Shown in page titles and mail headers: one line break there would stop every invitation mail.
        found = control_character(value)
        if found is not None:
            raise ValueError(f"must not contain control characters or line breaks (found {found})")
        return value

    @property
    def mail_dir(self) -> Path:
        """Where the file transport writes one .eml per message."""
        return self.instance_dir / "mail"

    def role_names(self) -> list[str]:
        """Configured role names, in configuration order."""
        return list(self.roles)

    def default_role(self) -> str:
        """The role an invite gets when it names none."""
        for name, role in self.roles.items():
            if role.default:
                return name
        return next(iter(self.roles))


def nameserver_address(text: str) -> tuple[str, int]:
    """A dns_nameservers entry ("host", "host:port", "[v6]:port") as (IP address, port)."""
    host, port = text.strip(), "53"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.startswith("["):
            host, _, rest = host[1:].partition("]")
            port = rest.removeprefix(":") if rest else port
        else:
            host, _, port = host.rpartition(":")
    try:
        number = int(port)
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address, optionally with :port") from None
    if not 0 < number < 65536:
        raise ValueError(f"{text!r} has a port outside 1-65535")
    return host, number


def _coerce(raw: str) -> Any:
    """Read an environment value: TOML syntax when it parses, the plain string otherwise."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn IDP_BRIDGE_A__B__C=value into {"a": {"b": {"c": value}}}."""
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX):].split("__") if part]
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            leaf = path[-1]
            # Provider keys and secrets stay strings; scalar settings get TOML typing (numbers, bools, lists).
            node[leaf] = raw if len(path) > 1 else _coerce(raw)
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_secret_files(tree: dict[str, Any]) -> dict[str, Any]:
    """Replace `x_file = "/path"` by `x = <file contents>` wherever x is not set directly."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out[key] = _resolve_secret_files(value)
        elif key.endswith(SECRET_SUFFIX) and key != "roles_file" and isinstance(value, str):
            target = key[: -len(SECRET_SUFFIX)]
            if not tree.get(target):
                try:
                    out[target] = Path(value).read_text().strip()
                except OSError as exc:
                    raise ConfigError(key, f"cannot read {value}: {exc.strerror}") from exc
        else:
            out.setdefault(key, value)
    return out


def _roles_source(name: str, config_dir: Path | None) -> Path | Traversable:
    """Where a roles_file lives: an absolute path, else next to the config file (or in the working directory
    without one), else the preset of that name shipped in the package."""
    path = Path(name)
    if path.is_absolute():
        return path
    local = config_dir / path if config_dir is not None else path
    if local.is_file():
        return local
    return packaged(name) or local


def _load_roles(path: Path | Traversable) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        shipped = ", ".join(roles_presets())
        raise ConfigError("roles_file", f"cannot read {path}: {exc.strerror} (presets shipped with idp-bridge: "
                                        f"{shipped})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("roles_file", f"{path} is not valid TOML: {exc}") from exc
    roles = data.get("roles", data)
    if not isinstance(roles, dict):
        raise ConfigError("roles_file", f"{path} must contain [roles.NAME] tables")
    return roles


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file, apply environment overrides and explicit overrides, validate."""
    env = os.environ if environ is None else environ
    config_path = Path(env.get(ENV_PREFIX + "CONFIG", str(DEFAULT_CONFIG)))
    source: Path | Traversable | None = config_path if config_path.is_file() else None
    if source is None and ENV_PREFIX + "CONFIG" in env:
        raise ConfigError("IDP_BRIDGE_CONFIG", f"{config_path} does not exist")
    if source is None:
        # Outside a checkout (an installed wheel, a container): the default configuration shipped in the package.
        source = packaged(DEFAULT_CONFIG_NAME)
    tree: dict[str, Any] = {}
    if source is not None:
        try:
            tree = tomllib.loads(source.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("IDP_BRIDGE_CONFIG", f"{source} is not valid TOML: {exc}") from exc
    tree = _merge(tree, _env_overrides(env))
    tree = _merge(tree, dict(overrides or {}))
    tree = _resolve_secret_files(tree)

    if tree.get("roles_file") and not tree.get("roles"):
        config_dir = config_path.parent if config_path.is_file() else None
        tree["roles"] = _load_roles(_roles_source(str(tree["roles_file"]), config_dir))
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_field_name(first["loc"]), first["msg"]) from exc

    if not settings.roles:
        settings.roles = dict(DEFAULT_ROLES)
    _check_roles(settings)
    settings.instance_dir = settings.instance_dir.resolve()
    if not settings.database_url:
        settings.database_url = f"sqlite:///{settings.instance_dir / 'idp-bridge.sqlite3'}"
    if not settings.redirect_allowlist:
        settings.redirect_allowlist = [settings.public_url + "/"]
    return settings


def _check_roles(settings: Settings) -> None:
    from idp_bridge.permissions import ALL_PERMISSIONS

    defaults = [name for name, role in settings.roles.items() if role.default]
    if len(defaults) > 1:
        raise ConfigError("roles", f"only one role may be the default, not {', '.join(defaults)}")
    for name, role in settings.roles.items():
        unknown = sorted(set(role.permissions) - ALL_PERMISSIONS)
        if unknown:
            raise ConfigError(f"roles.{name}.permissions", f"unknown permission {', '.join(unknown)}")


def ensure_instance(settings: Settings) -> None:
    """Create the instance dir (private: 0700) and, when no secret key is configured, generate one into it."""
    settings.instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.secret_key:
        return
    key_file = settings.instance_dir / "secret_key"
    if not key_file.exists():
        # O_EXCL so two processes starting at once cannot write different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
    settings.secret_key = key_file.read_text().strip()
