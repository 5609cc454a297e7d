"""Settings: a TOML file overridden by IDP_BRIDGE_* environment variables."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from idp_bridge.errors import ConfigError
from idp_bridge.jsontext import control_character
from idp_bridge.presets import DEFAULT_CONFIG_NAME, packaged, roles_presets

ENV_PREFIX = "IDP_BRIDGE_"
DEFAULT_CONFIG = Path("config") / DEFAULT_CONFIG_NAME
# Keys whose values may be given as KEY_file = "/path" so the secret itself stays out of the TOML.
SECRET_SUFFIX = "_file"
# Keys ending in _file whose value is the path itself, never read into another key: the roles preset, and a
# provider's private CA bundle.
PATH_KEYS = frozenset({"roles_file", "ca_file"})

log = logging.getLogger(__name__)


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


class ScimSettings(BaseModel):
    """The SCIM service provider: which directory groups give which role."""

    model_config = ConfigDict(extra="forbid")

    # Group displayName → role. A member of several mapped groups takes the role of the first one listed here,
    # of none the default role. Groups are served only when this is set.
    group_roles: dict[str, str] = Field(default_factory=dict)


class Settings(BaseSettings):
    """Everything the service reads from configuration: a TOML file overridden by IDP_BRIDGE_* variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False,
                                      extra="forbid")

    instance_dir: Path = Field(Path("instance"), description=(
        "Where the SQLite database, the generated secret key and the file mail outbox live."))
    database_url: str = Field("", description=(
        "SQLAlchemy URL of the database; empty: a SQLite file in the instance dir. PostgreSQL: "
        "`postgresql+psycopg://user:pass@host:5432/db`."))
    public_url: str = Field("http://127.0.0.1:8080", description=(
        "The address invitees and IdPs reach this service at; every link is built from it, never from the Host "
        "header. Unset, `serve` uses the address it listens on (`--host`, `--port`)."))
    secret_key: str = Field("", description=(
        "Seals outbox links, login states and webhook signing secrets; keys invite-code hashes and CSRF tokens. "
        "Empty: generated into the instance dir (SQLite only). Required with any other database: `serve`, "
        "`worker` and `invite import` refuse to start without it; give every instance the same value."))
    secret_key_fallbacks: list[str] = Field(default_factory=list, description=(
        "Older keys, newest first: what they sealed or keyed keeps working (queued mail, invite codes, logins "
        "in progress, webhook secrets, cookies); new values use the current key."))
    redirect_allowlist: list[str] = Field(default_factory=list, description=(
        "URL prefixes an organization's `redirect_url` may use; empty: `public_url` + `/`."))
    support_contact: str = Field("", description="Shown in mails and on invite pages.")
    product_name: str = Field("idp-bridge", description="The product name in page titles and mails.")

    roles_file: str = Field("", description=(
        "A roles preset (e.g. `roles/platform.toml`, relative to the configuration file); used when no "
        "`[roles.NAME]` tables are given. Neither: the built-in OWNER, ADMIN, MEMBER."))
    roles: dict[str, RoleSettings] = Field(default_factory=dict, description=(
        "`[roles.NAME]` tables: `permissions`, `default`, `owner`, `description`."))

    mail_transport: Literal["file", "smtp"] = Field("file", description=(
        "`file` writes one `.eml` per message to `<instance_dir>/mail/`; `smtp` sends through `smtp_host`. "
        "On a database other than SQLite, `serve` and `worker` refuse to start unless it is set explicitly."))
    mail_from: str = Field("idp-bridge <no-reply@localhost>", description="The sender of every mail.")
    smtp_host: str = Field("127.0.0.1", description="SMTP relay host.")
    smtp_port: int = Field(25, description="SMTP relay port.")
    smtp_username: str = Field("", description="SMTP login; empty: no authentication.")
    smtp_password: str = Field("", description="SMTP password (a secret: environment or `smtp_password_file`).")
    smtp_security: Literal["none", "starttls", "ssl"] = Field("none", description=(
        "`none`, `starttls` or `ssl` (implicit TLS)."))
    smtp_timeout: float = Field(10.0, description="Seconds before an SMTP connection or command gives up.")

    worker_poll_seconds: float = Field(1.0, description="How often an idle worker looks for due jobs.")
    job_max_attempts: int = Field(default=8, ge=1, le=100, description="Attempts before a job fails for good.")
    job_backoff_base_seconds: float = Field(default=2.0, gt=0, description="First retry delay; doubles each attempt.")
    job_backoff_max_seconds: float = Field(default=3600.0, gt=0, description="Longest retry delay.")
    job_lease_seconds: float = Field(default=300.0, ge=1, description=(
        "A job a worker claimed but never finished (the worker died) runs again once this has passed; keep it "
        "above the longest IdP timeout."))
    email_rate_per_second: float = Field(
        default=10.0, gt=0,
        description="Invitation mails per second for the whole deployment: every worker process takes its turn "
                    "from one pace kept where rate_limit_storage_url says (the database by default).")
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port on which a standalone `idp-bridge worker` serves its Prometheus metrics "
                    "(`worker --metrics-port` overrides it); unset: no metrics endpoint.")
    worker_metrics_host: str = Field(default="127.0.0.1",
                                     description="Address the worker's metrics endpoint listens on.")

    # Retention: the worker deletes rows older than these windows, in batches; 0 keeps them forever.
    audit_retention_days: int = Field(default=365, ge=0,
                                      description="Days audit events are kept (0: forever).")
    job_retention_days: int = Field(default=14, ge=0,
                                    description="Days finished (done or failed) outbox jobs are kept after they "
                                                "finished (0: forever). Queued and running jobs are never deleted.")
    delivery_log_retention_days: int = Field(
        default=30, ge=0,
        description="Days outbound webhook delivery logs are kept: finished deliveries after their last attempt, "
                    "and every attempt (0: forever). Pending deliveries are never deleted.")
    inbox_event_retention_days: int = Field(
        default=30, ge=0,
        description="Days processed or failed inbound IdP events are kept after they were received (0: forever). "
                    "Events still waiting to be processed are never deleted.")
    expired_link_retention_days: int = Field(
        default=90, ge=0,
        description="Days the link records of expired or revoked invites are kept after the invite closed "
                    "(0: forever). Until then their link shows that the invitation expired or was revoked; "
                    "after, that the link is not valid.")
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000,
                                      description="Rows deleted per transaction by the retention task.")

    rate_limit_storage_url: str = Field("database://", description=(
        "Where rate-limit counters live: `database://` (shared by every process and instance: in PostgreSQL, or "
        "with SQLite in the 0600 file `<database file>-ratelimits` beside it, shared memory of every process of "
        "the host, or in the database when that file cannot be opened), `redis://host:port/db` "
        "(`pip install 'idp-bridge[redis]'`), or `memory://` (one process only)."))
    invite_page_rate_limit: str = Field("120/minute", description="Per client IP on the invite pages.")
    invite_code_rate_limit: str = Field("20/minute", description="Per client IP on invite-code tries.")
    api_auth_failure_rate_limit: str = Field("30/minute", description=(
        "API requests that fail to authenticate (no, malformed, unknown or revoked key), per client IP; past it "
        "every API request from that IP gets 429 until the window ends."))
    console_session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60, description=(
        "The admin console: a signed-in session ends after this many minutes without a request."))
    console_session_max_hours: int = Field(default=12, ge=1, le=24 * 30, description=(
        "The admin console: a signed-in session ends this many hours after sign-in at the latest."))
    console_rate_limit: str = Field("600/minute", description=(
        "Requests per signed-in console session (Flask-Limiter notation); console pages are not under the "
        "invite pages' per-IP limit."))
    console_frame_ancestors: list[str] = Field(default_factory=list, description=(
        "Origins that may show the console in a frame (CSP `frame-ancestors`); empty: none may."))
    branding_image_hosts: list[str] = Field(default_factory=list, description=(
        "Hosts an organization's branding logo may be shown from (https only); a logo elsewhere is left out and "
        "the display name shown alone."))
    trust_proxy_headers: int = Field(default=0, ge=0, le=5, description=(
        "Number of proxies in front whose `X-Forwarded-For` and `X-Forwarded-Proto` are trusted."))
    access_log: bool = Field(True, description=(
        "`serve` logs one line per request to stdout; off where a reverse proxy already logs requests. Invite "
        "tokens and undocumented query values are written as `[redacted]`."))
    log_format: Literal["text", "json"] = Field("text", description=(
        "How log lines (on stderr; `serve`'s access log on stdout) are written: `text`, one readable line per "
        "event; `json`, one JSON object per line with `time`, `level`, `logger`, `message` and, when known, "
        "`request_id`, `org` and `job`."))

    webhook_allow_networks: list[str] = Field(default_factory=list, description=(
        "CIDR networks outbound webhooks may reach besides public addresses, e.g. `[\"127.0.0.0/8\"]` for a "
        "receiver on this machine."))
    dns_nameservers: list[str] = Field(default_factory=list, description=(
        "DNS resolvers (`\"ip\"` or `\"ip:port\"`) for webhook hosts and domain verification TXT records; "
        "empty: the system's."))

    providers: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "`[providers.NAME]` tables with `type = \"keycloak\" | \"google\" | \"entra\" | \"oidc\"`; see the "
        "README's Configuration section for each type's keys. A keycloak provider's `organizations = true` "
        "(default false; Keycloak 26+) adds the ACTIVE members of an org whose `keycloak_organization` is set to "
        "that Keycloak organization and removes them when DELETED."))
    scim: ScimSettings = Field(default_factory=ScimSettings, description=(
        "`[scim]`: `group_roles`, a table of directory group displayName → role; a member of several mapped "
        "groups takes the role of the first one listed, of none the default role. SCIM Groups are served only "
        "when it is set."))

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values, then the environment, then the TOML file (what `Settings()` alone reads)."""
        return init_settings, EnvironmentSource(settings_cls, os.environ), TomlSource(settings_cls,
                                                                                     config_path(os.environ))

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


class EnvironmentSource(EnvSettingsSource):
    """The IDP_BRIDGE_* variables of one environment; lists and tables may be written in TOML or JSON, and
    IDP_BRIDGE_<KEY>_FILE names a file holding the value of KEY."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self.environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return super().decode_complex_value(field_name, field, value)

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:
            raise ConfigError(field_name, f"{ENV_PREFIX}{field_name.upper()} is neither TOML nor JSON "
                                          "(e.g. [\"a\", \"b\"])") from None

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        for name in self.settings_cls.model_fields:
            path = self.env_vars.get(f"{self.env_prefix}{name}{SECRET_SUFFIX}".lower())
            if path is not None and name != "roles_file":
                values[name + SECRET_SUFFIX] = path
        return _resolve_secret_files(values)


class TomlSource(TomlConfigSettingsSource):
    """The configuration file, with `x_file = "/path"` keys read into `x`."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | Traversable | None) -> None:
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            data = tomllib.loads(file_path.read_text())
        except OSError as exc:
            raise ConfigError("IDP_BRIDGE_CONFIG", f"cannot read {file_path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("IDP_BRIDGE_CONFIG", f"{file_path} is not valid TOML: {exc}") from exc
        return _resolve_secret_files(data)


def config_path(environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read: IDP_BRIDGE_CONFIG (which must exist), else config/idp-bridge.toml when
    present, else (outside a checkout: an installed wheel, a container) the default configuration shipped in the
    package."""
    named = environ.get(ENV_PREFIX + "CONFIG")
    if named is not None:
        if not Path(named).is_file():
            raise ConfigError("IDP_BRIDGE_CONFIG", f"{named} does not exist")
        return Path(named)
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    # Outside a checkout (an installed wheel, a container): the default configuration shipped in the package.
    shipped = packaged(DEFAULT_CONFIG_NAME)
    return Path(str(shipped)) if shipped is not None else None


def _resolve_secret_files(tree: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Replace `x_file = "/path"` by `x = <file contents>` wherever x is not set beside it."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out[key] = _resolve_secret_files(value, f"{where}{key}.")
        elif key.endswith(SECRET_SUFFIX) and key not in PATH_KEYS and isinstance(value, str):
            target = key[: -len(SECRET_SUFFIX)]
            if not tree.get(target):
                try:
                    out[target] = Path(value).read_text().strip()
                except OSError as exc:
                    raise ConfigError(where + key, f"cannot read {value}: {exc.strerror}") from exc
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


def _load_roles(path: Path | Traversable) -> dict[str, RoleSettings]:
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
    try:
        return _ROLES.validate_python(roles)
    except ValidationError as exc:
        raise _config_error(exc, prefix=("roles",)) from exc


_ROLES = TypeAdapter(dict[str, RoleSettings])


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at `loc` accepts (empty when it takes any)."""
    node: Any = Settings
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = node.model_fields[str(part)].annotation
        elif get_origin(node) is dict:
            node = get_args(node)[1]
        else:
            return []
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _config_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> ConfigError:
    """The first validation error as a ConfigError naming the setting; an unknown key gets a suggestion."""
    first = exc.errors()[0]
    loc = (*prefix, *first["loc"])
    name = ".".join(str(part) for part in loc)
    if first["type"] != "extra_forbidden":
        return ConfigError(name, first["msg"])
    close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc[:-1]), n=1)
    hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?" if close else ""
    return ConfigError(name, f"no such setting{hint}")


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """IDP_BRIDGE_* variables that name no setting (e.g. Kubernetes service links: IDP_BRIDGE_PORT=tcp://…)."""
    fields = Settings.model_fields
    known = set(fields) | {name + SECRET_SUFFIX for name in fields} | {"config"}
    tables = {name for name, field in fields.items() if get_origin(field.annotation) is dict}
    unknown = []
    for key in environ:
        if not key.upper().startswith(ENV_PREFIX):
            continue
        head, nested, _ = key[len(ENV_PREFIX):].lower().partition("__")
        if head not in known or (nested and head not in tables):
            unknown.append(key)
    return sorted(unknown)


_warned: set[tuple[str, ...]] = set()


def warn_unknown_environment(environ: Mapping[str, str] | None = None) -> None:
    """Log, once per process, one line naming the IDP_BRIDGE_* variables that are no setting (never their values)."""
    names = tuple(unknown_environment(os.environ if environ is None else environ))
    if names and names not in _warned:
        _warned.add(names)
        log.warning("ignoring environment variables that name no setting: %s", ", ".join(names))


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file, apply environment overrides and explicit overrides, validate."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    sources = (InitSettingsSource(Settings, _resolve_secret_files(overrides or {})),
               EnvironmentSource(Settings, env), TomlSource(Settings, path))
    try:
        # The field-derived __init__ type checkers see does not list BaseSettings' own `_build_sources`.
        settings = Settings(_build_sources=(sources, {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        raise _config_error(exc) from exc

    if settings.roles_file and not settings.roles:
        settings.roles = _load_roles(_roles_source(settings.roles_file, path.parent if path is not None else None))
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
    for group, role_name in settings.scim.group_roles.items():
        if role_name not in settings.roles:
            raise ConfigError(f"scim.group_roles.{group}",
                              f"unknown role {role_name!r}; one of {', '.join(settings.roles)}")


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
