"""What every way of running the HTTP service shares: the gunicorn settings of `idp-bridge serve` and of
gunicorn.conf.py, and the checks made before serving (a shared secret key, a current schema, a usable rate-limit
storage)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from idp_bridge import metrics
from idp_bridge.errors import BridgeError, ConfigError
from idp_bridge.settings import Settings, load_settings
from idp_bridge.store.db import embedded

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy import Engine

# gunicorn.conf.py's own environment variables (IDP_BRIDGE_* are the service's settings).
BIND_ENV = "GUNICORN_BIND"
WORKERS_ENV = "WEB_CONCURRENCY"
THREADS_ENV = "GUNICORN_THREADS"
DEFAULT_BIND = "127.0.0.1:8080"


class SchemaNotCurrent(BridgeError):
    """The database is not at the migrations this version ships; the migration step has not run."""

    code = "schema_not_current"
    title = "The database schema is not current"


def require_secret_key(settings: Settings) -> None:
    """Outside embedded SQLite, refuse to run on a key this process would generate for itself.

    Each host or container would generate its own, and then cannot open the mail links, codes and webhook
    secrets another one sealed: queued invitations are lost.
    """
    if not settings.secret_key and not embedded(settings.database_url):
        raise ConfigError("secret_key", "a shared database needs an explicit secret key: set "
                          "IDP_BRIDGE_SECRET_KEY (or secret_key / secret_key_file in the configuration) "
                          "to the same value on every instance")


def check_schema(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the database is at every head of the shipped migrations."""
    from alembic.script import ScriptDirectory

    from idp_bridge.migrate import alembic_config, current_heads

    expected = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    current = current_heads(engine)
    if current != expected:
        found = ", ".join(sorted(current)) or "no revision (an empty database)"
        raise SchemaNotCurrent(f"the database schema is at {found}, this version needs "
                               f"{', '.join(sorted(expected))}: run 'idp-bridge db upgrade' first")


def _child_exit(_arbiter: Any, child: Any) -> None:
    metrics.process_exited(child.pid)


def gunicorn_options(*, access_log: bool) -> dict[str, Any]:
    """The gunicorn settings every idp-bridge server runs with; the caller adds where and how much to serve."""
    from gunicorn.config import KNOWN_SETTINGS

    options: dict[str, Any] = {
        "worker_class": "gthread",
        "accesslog": "-" if access_log else None,
        # Invite tokens in paths and the login callback's code and state never reach the log.
        "logger_class": "idp_bridge.web.redact.RedactingLogger",
        "graceful_timeout": 10,
        "timeout": 60,
        "child_exit": _child_exit,
    }
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        # gunicorn 27's control socket lives at one path per user: every server of that user on the host would
        # contend for it, and nothing of ours uses it.
        options["control_socket_disable"] = True
    return options


def prepare(settings: Settings) -> None:
    """Before gunicorn forks its workers: every check that would otherwise fail in each worker, and metrics
    shared by all of them."""
    from idp_bridge.bootstrap import build
    from idp_bridge.web.pages.ratelimit import open_storage

    require_secret_key(settings)
    bridge = build(settings)
    try:
        check_schema(bridge.engine)
        open_storage(settings.rate_limit_storage_url, bridge.engine)
    finally:
        bridge.close()
    metrics.console_script()
    metrics.share_between_processes(settings.instance_dir, sweep=True)


def application() -> Flask:
    """The app for a WSGI server, with settings read as `serve` reads them; it never migrates."""
    from idp_bridge.bootstrap import create_app

    settings = load_settings()
    require_secret_key(settings)
    app = create_app(settings=settings)
    check_schema(app.extensions["idp_bridge"].engine)
    return app


def _fail(message: str, code: int) -> NoReturn:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(code)


def _or_exit(step: Callable[[], Any]) -> Any:
    """Run a start-up step; an expected error becomes one line on stderr and the CLI's exit codes."""
    try:
        return step()
    except ConfigError as exc:
        _fail(f"configuration: {exc.detail}", 2)
    except BridgeError as exc:
        _fail(exc.detail, 1)


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 256:
        _fail(f"{name} must be a whole number from 1 to 256, not {raw!r}", 2)
    return int(raw)


def gunicorn_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """Everything gunicorn.conf.py sets: bind, workers and threads from the environment, the options `serve`
    uses, and a start hook that checks the deployment in the master."""
    settings: Settings = _or_exit(lambda: load_settings(environ=environ))

    def on_starting(_arbiter: Any) -> None:
        _or_exit(lambda: prepare(settings))

    return {
        "bind": environ.get(BIND_ENV, "").strip() or DEFAULT_BIND,
        "workers": _count(environ, WORKERS_ENV, 2),
        "threads": _count(environ, THREADS_ENV, 8),
        **gunicorn_options(access_log=settings.access_log),
        "on_starting": on_starting,
    }
