"""The `idp-bridge` command: serve, worker, db, org, api-key, invite, member, domain, graph."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel
from sqlalchemy.orm import Session

from idp_bridge import audit, logs, metrics
from idp_bridge.bootstrap import build
from idp_bridge.bridge import Bridge
from idp_bridge.errors import BridgeError, ConfigError, ValidationFailed
from idp_bridge.inputs import OrgCreate, parse
from idp_bridge.models import Organization
from idp_bridge.pagination import MAX_LIMIT, Page
from idp_bridge.permissions import ALL_PERMISSIONS
from idp_bridge.server import gunicorn_options, require_secret_key
from idp_bridge.settings import ENV_PREFIX, Settings, load_settings, warn_unknown_environment
from idp_bridge.store.db import embedded, read_only, transaction
from idp_bridge.supervisor import Heartbeat, WorkerSupervisor, heartbeat_path


class State:
    """Lazily built Bridge, so `--help` works without a database or valid configuration."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._bridge: Bridge | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            logs.configure(self._settings.log_format)
            warn_unknown_environment()
        return self._settings

    def follow_listen_address(self, host: str, port: int) -> Callable[[], None]:
        """Unless public_url is configured, build links from the address `serve` listens on; returns what undoes it.

        Set in the environment, so the web workers and the job worker this process starts build the same links.
        """
        key = ENV_PREFIX + "PUBLIC_URL"
        previous = os.environ.get(key)

        def restore() -> None:
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
            self._settings = None

        if "public_url" in self.settings.model_fields_set:
            return lambda: None
        if host in WILDCARD_HOSTS:
            log.warning("public_url is not set and serve listens on every address (%s): links point at this "
                        "machine's loopback; set public_url to the address invitees reach", host)
        where = LOOPBACK.get(host, f"[{host}]" if ":" in host else host)
        os.environ[key] = f"http://{where}:{port}"
        self._settings = None
        return restore

    def require_mail_transport(self) -> None:
        """Outside embedded SQLite, refuse to write mail as files unless that was asked for.

        A production deployment left on the default would queue every invitation as an .eml file nobody reads.
        """
        settings = self.settings
        if "mail_transport" not in settings.model_fields_set and not embedded(settings.database_url):
            raise ConfigError("mail_transport", "no mail transport is configured for a shared database: set "
                              'mail_transport = "smtp" and smtp_host (IDP_BRIDGE_MAIL_TRANSPORT=smtp, '
                              'IDP_BRIDGE_SMTP_HOST=...), or mail_transport = "file" to write each mail as an '
                              f".eml file in {settings.mail_dir} on purpose")

    @property
    def bridge(self) -> Bridge:
        if self._bridge is None:
            self._bridge = build(self.settings)
        return self._bridge

    def require_secret_key(self) -> None:
        """Outside embedded SQLite, refuse to run on a key this process would generate for itself."""
        require_secret_key(self.settings)


pass_state = click.make_pass_decorator(State, ensure=True)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)
# Addresses that mean "every interface": no link can point there, so links use the loopback address instead.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


LIST_LIMIT = 10_000


limit_option = click.option("--limit", default=50, show_default=True, type=click.IntRange(1, LIST_LIMIT),
                            help="Show at most this many.")


json_option = click.option("--json", "as_json", is_flag=True,
                           help="One JSON array of objects with the API's field names.")


def show(items: Sequence[BaseModel], columns: dict[str, Callable[[Any], object]], as_json: bool) -> None:
    """A listing: the API's representations as one JSON array, or an aligned table (`-` for nothing)."""
    if as_json:
        click.echo(json.dumps([item.model_dump(mode="json") for item in items], indent=2, ensure_ascii=False))
        return
    rows = [list(columns)] + [["-" if (value := get(item)) is None or value == "" else str(value)
                               for get in columns.values()] for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def pages(search: Callable[[int, str | None], Page[T]], limit: int) -> list[T]:
    """Up to `limit` items of a paginated search, a page of at most MAX_LIMIT at a time."""
    found: list[T] = []
    cursor: str | None = None
    while len(found) < limit:
        page = search(min(MAX_LIMIT, limit - len(found)), cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return found


def when(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else None


def _upgrade(bridge: Bridge) -> None:
    from idp_bridge.migrate import upgrade
    from idp_bridge.services.webhooks import reseal_secrets

    upgrade(bridge.engine)
    # Webhook secrets stored in plaintext before revision 0003, or sealed with a key that is now a fallback,
    # are sealed with the current key at start, so an old key is not needed for them for long.
    with transaction(bridge.sessions) as session:
        reseal_secrets(session, bridge.secret_keys)


class BridgeGroup(click.Group):
    """Turns expected errors into one clear line and a non-zero exit, however the CLI is invoked."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(f"configuration: {exc.detail}", 2)
        except ValidationFailed as exc:
            fail("; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in exc.errors.items()), 2)
        except BridgeError as exc:
            fail(exc.detail, 1)


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="idp-bridge", prog_name="idp-bridge", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
def cli(verbose: bool) -> None:
    """idp-bridge: organization invitations on real identity providers."""
    # Text until the settings are read: they may ask for JSON.
    logs.configure("text", level=logging.DEBUG if verbose else logging.INFO)
    # Migrations are routine at every start; their step-by-step log is noise.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


def claim_address(host: str, port: int) -> list[socket.socket]:
    """Make sure nothing else serves host:port, and hold it for this server; fails with a clear message if taken.

    The web workers listen with SO_REUSEPORT, which the kernel grants to any process of the same user: a second
    server started on a taken port would silently take half its connections. An exclusive test bind (no
    SO_REUSEPORT) fails on any socket listening there, ours included; the held lock closes the window while
    two servers start at once. Keep the returned sockets open for as long as the server runs.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    taken = (f"cannot listen on {where}: the address is already in use (another idp-bridge serve or another "
             "program listens there); stop it or choose another --port")
    held: list[socket.socket] = []
    if sys.platform.startswith("linux"):
        # An abstract Unix socket name lives in the network namespace, like the port, and goes away with the
        # last process holding it: no file to clean up after a crash.
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(f"\0idp-bridge-serve:{where}")
        except OSError as exc:
            lock.close()
            if exc.errno == errno.EADDRINUSE:
                fail(taken)
            raise
        held.append(lock)
    try:
        # The family gunicorn binds with: IPv6 for an IPv6 literal, IPv4 for everything else.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"cannot listen on {where}: {exc.strerror}", 2)
    _, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the server's own sockets do: connections of an earlier run still in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            for sock in held:
                sock.close()
            if exc.errno == errno.EADDRINUSE:
                fail(taken)
            fail(f"cannot listen on {where}: {exc.strerror}")
    return held


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", "web_workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="HTTP worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Threads per process.")
@click.option("--with-worker/--no-worker", default=True, show_default=True,
              help="Also run the job worker (mail, provisioning, webhooks) beside the server.")
@pass_state
def serve(state: State, host: str, port: int, web_workers: int, threads: int, with_worker: bool) -> None:
    """Run the service (creates or upgrades the database first)."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    from idp_bridge.web.pages.ratelimit import open_storage

    # Undone when the command ends (in-process callers such as tests share this environment).
    click.get_current_context().call_on_close(state.follow_listen_address(host, port))
    state.require_secret_key()
    state.require_mail_transport()
    bridge = state.bridge  # configuration errors first: they are the more useful message
    _upgrade(bridge)
    # Before any worker forks: a rate-limit storage that cannot work stops start-up with the setting's name,
    # instead of every worker failing to boot.
    open_storage(bridge.settings.rate_limit_storage_url, bridge.engine)
    held = claim_address(host, port)
    access_log = bridge.settings.access_log
    # Before gunicorn forks its workers and before the job worker starts: they all count into one directory.
    metrics.share_between_processes(bridge.settings.instance_dir, sweep=True)
    bridge.close()

    supervisor = None
    if with_worker:
        supervisor = WorkerSupervisor([sys.executable, "-m", "idp_bridge.cli", "worker"],
                                      heartbeat_path(bridge.settings.instance_dir))

    class Master(Arbiter):  # type: ignore[misc]
        """gunicorn's master, which also keeps the job worker running."""

        def start(self) -> None:
            super().start()
            if supervisor is not None:
                supervisor.start()

        def reap_workers(self) -> None:
            # The job worker is a child of this process too: take its exit status before gunicorn's
            # waitpid(-1) reaps it as an unknown child.
            if supervisor is not None:
                supervisor.poll()
            super().reap_workers()

        def manage_workers(self) -> None:
            super().manage_workers()
            if supervisor is not None:
                supervisor.poll()

        def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
            if supervisor is not None:
                supervisor.stop()
            super().halt(reason, exit_status)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            self.cfg.set("workers", web_workers)
            self.cfg.set("threads", threads)
            # The same as gunicorn.conf.py's: gthread, the redacting access log, timeouts, shared metrics.
            for name, value in gunicorn_options(access_log=access_log).items():
                self.cfg.set(name, value)
            # Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections over them;
            # on one shared socket a single worker can win every accept and carry all keep-alive clients alone.
            # claim_address keeps every other server off the port.
            self.cfg.set("reuse_port", True)

        def load(self) -> Any:
            from idp_bridge.bootstrap import create_app

            app = create_app()
            # /readyz reports a missing job worker only where serve runs one.
            app.config["READYZ_JOB_WORKER"] = with_worker
            return app

        def run(self) -> None:
            try:
                Master(self).run()
            except RuntimeError as exc:
                fail(str(exc))

    try:
        Server().run()
    finally:
        for sock in held:
            sock.close()
        if supervisor is not None:
            supervisor.stop()


@cli.command()
@click.option("--once", is_flag=True, help="Run what is due now, then exit.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 256))
# Passed by serve's supervisor only: the pid of a worker on this host that it saw die.
@click.option("--release-leases-of", "dead_pids", multiple=True, type=click.IntRange(1), hidden=True)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve this worker's Prometheus metrics on this port (worker_metrics_host, default 127.0.0.1); "
                   "default: the worker_metrics_port setting, unset: none.")
@pass_state
def worker(state: State, once: bool, concurrency: int, dead_pids: tuple[int, ...], metrics_port: int | None) -> None:
    """Run outbox jobs: invitation mail, provisioning, webhook delivery, expiry sweeps, retention."""
    from idp_bridge.bootstrap import make_worker
    from idp_bridge.jobs import release_leases_of
    from idp_bridge.worker import worker_id_prefix

    state.require_secret_key()
    state.require_mail_transport()
    bridge = state.bridge
    _upgrade(bridge)
    if dead_pids:
        with transaction(bridge.sessions) as session:
            released = release_leases_of(session, [worker_id_prefix(pid) for pid in dead_pids])
        if released:
            logging.getLogger(__name__).warning("requeued %d jobs the worker that died (pid %s) was running",
                                                released, ", ".join(map(str, dead_pids)))
    runner = make_worker(bridge, concurrency=concurrency)
    port = metrics_port or bridge.settings.worker_metrics_port
    if port is None:
        # Added up with serve's processes and answered on serve's /metrics.
        metrics.share_between_processes(bridge.settings.instance_dir, sweep=False)
    else:
        # Scraped on its own: it reports only its own counts, so nothing is counted twice.
        host = bridge.settings.worker_metrics_host
        try:
            metrics.serve_this_process(bridge, runner.kinds, host, port)
        except OSError as exc:
            fail(f"worker metrics cannot listen on {host}:{port}: {exc.strerror or exc}", 2)
        click.echo(f"worker metrics on http://{host}:{port}/metrics")
    if not once:
        runner.heartbeat = Heartbeat(heartbeat_path(bridge.settings.instance_dir))
        runner.heartbeat()
    if once:
        counts = runner.run_once()
        click.echo(f"jobs: {counts['done']} done, {counts['retry']} to retry, {counts['failed']} failed")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"worker {runner.worker_id} running; Ctrl-C stops it")
    runner.run_forever(stop)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: State) -> None:
    """Apply Alembic migrations up to the newest."""
    _upgrade(state.bridge)
    click.echo("database is up to date")


@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
@pass_state
def db_downgrade(state: State, revision: str) -> None:
    """Take the schema back to REVISION (an id, `-1` for one step, `base` for none); data in what is undone goes."""
    from alembic.util import CommandError

    from idp_bridge.migrate import current, downgrade

    engine = state.bridge.engine
    try:
        downgrade(engine, revision)
    except CommandError as exc:
        fail(f"cannot downgrade to {revision!r}: {exc}")
    at = current(engine)
    click.echo(f"database is at {', '.join(r.revision for r in at) or 'base (no revision applied)'}")


@db.command("current")
@pass_state
def db_current(state: State) -> None:
    """Show the revision the database is at; `(head)` marks the newest."""
    from idp_bridge.migrate import current

    at = current(state.bridge.engine)
    if not at:
        click.echo("base (no revision applied): run `idp-bridge db upgrade`")
    for rev in at:
        click.echo(f"{rev.revision}{' (head)' if rev.head else ''}  {rev.description}")


@db.command("check")
@pass_state
def db_check(state: State) -> None:
    """Compare the models with the schema the migrations built; exit 1 listing any difference."""
    from idp_bridge.migrate import current, drift, scripts

    engine = state.bridge.engine
    at = {rev.revision for rev in current(engine)}
    heads = set(scripts().get_heads())
    if at != heads:
        fail(f"the database is at {', '.join(sorted(at)) or 'base'}, not at the newest revision "
             f"{', '.join(sorted(heads))}: run `idp-bridge db upgrade` first")
    found = drift(engine)
    if found:
        click.echo("The models and the migrations differ (write a migration for them):", err=True)
        for line in found:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    click.echo("models and migrations agree")


@cli.group()
def org() -> None:
    """Organizations."""


@org.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Display name.")
@click.option("--member-limit", type=int, default=10, show_default=True)
@click.option("--invite-ttl-hours", type=int, default=336, show_default=True)
@click.option("--require-invite-code", is_flag=True)
@click.option("--redirect-url", default=None)
@pass_state
def org_create(state: State, slug: str, name: str, member_limit: int, invite_ttl_hours: int,
               require_invite_code: bool, redirect_url: str | None) -> None:
    """Create an organization."""
    from idp_bridge.services import orgs

    bridge = state.bridge
    _upgrade(bridge)
    data = parse(OrgCreate, {"slug": slug, "name": name, "member_limit": member_limit,
                             "invite_ttl_hours": invite_ttl_hours, "require_invite_code": require_invite_code,
                             "redirect_url": redirect_url})
    with transaction(bridge.sessions) as session:
        created = orgs.create(session, bridge, audit.CLI, data)
        click.echo(f"created organization {created.slug} ({created.id})")


@org.command("list")
@limit_option
@json_option
@pass_state
def org_list(state: State, limit: int, as_json: bool) -> None:
    """List organizations by slug, with the seats in use."""
    from idp_bridge.schemas import org_out
    from idp_bridge.services import invites, orgs

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        items = [org_out(o, invites.seats_used(session, o)) for o in orgs.list_all(session, limit=limit)]
    show(items, {"SLUG": lambda o: o.slug, "NAME": lambda o: o.name,
                 "SEATS": lambda o: f"{o.seats_used}/{o.member_limit}", "CREATED": lambda o: when(o.created_at),
                 "ID": lambda o: o.id}, as_json)


@cli.group("api-key")
def api_key() -> None:
    """API keys."""


@api_key.command("create")
@click.option("--org", "org_slug", help="Scope the key to this organization.")
@click.option("--platform", is_flag=True, help="A platform-wide key (all organizations).")
@click.option("--permission", "permissions", multiple=True, required=True,
              type=click.Choice(sorted(ALL_PERMISSIONS)), help="Repeat for each permission.")
@click.option("--name", default="", help="A label for the key.")
@pass_state
def api_key_create(state: State, org_slug: str | None, platform: bool, permissions: tuple[str, ...],
                   name: str) -> None:
    """Create an API key; it is printed once and only its hash is kept."""
    from idp_bridge.services import api_keys, orgs

    if bool(org_slug) == platform:
        fail("give exactly one of --org SLUG or --platform", 2)
    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        scope = orgs.get(session, org_slug) if org_slug else None
        key, secret = api_keys.create(session, audit.CLI, org=scope, permissions=list(permissions), name=name)
        click.echo(secret)
        click.echo(f"key id {key.id}; scope {org_slug or 'platform'}; permissions {', '.join(key.permissions)}",
                   err=True)
        click.echo("Store it now: it is not shown again.", err=True)


def key_scope(session: Session, org_slug: str | None, platform: bool) -> Organization | None:
    """The org of --org SLUG, or None for --platform; exactly one must be given."""
    from idp_bridge.services import orgs

    if bool(org_slug) == platform:
        fail("give exactly one of --org SLUG or --platform", 2)
    return orgs.get(session, org_slug) if org_slug else None


scope_options = [click.option("--org", "org_slug", help="Keys of this organization."),
                 click.option("--platform", is_flag=True, help="Platform-wide keys.")]


def with_scope(command: F) -> F:
    for option in reversed(scope_options):
        command = option(command)
    return command


@api_key.command("list")
@with_scope
@limit_option
@json_option
@pass_state
def api_key_list(state: State, org_slug: str | None, platform: bool, limit: int, as_json: bool) -> None:
    """List the live API keys of an organization or the platform (never the keys themselves)."""
    from idp_bridge.schemas import api_key_out
    from idp_bridge.services import api_keys

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        scope = key_scope(session, org_slug, platform)
        items = [api_key_out(k, org_slug) for k in api_keys.list_for(session, scope, limit=limit)]
    show(items, {"ID": lambda k: k.id, "NAME": lambda k: k.name, "PREFIX": lambda k: k.prefix,
                 "PERMISSIONS": lambda k: ",".join(k.permissions), "CREATED": lambda k: when(k.created_at),
                 "LAST USED": lambda k: when(k.last_used_at)}, as_json)


@api_key.command("rotate")
@click.argument("key_id")
@with_scope
@pass_state
def api_key_rotate(state: State, key_id: str, org_slug: str | None, platform: bool) -> None:
    """Replace a key with a new one of the same permissions; the old one stops working. Prints the new key once."""
    from idp_bridge.services import api_keys

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        scope = key_scope(session, org_slug, platform)
        key, secret = api_keys.rotate(session, audit.CLI, scope, key_id, caller=None)
        click.echo(secret)
        click.echo(f"key {key_id} revoked; new key id {key.id}; permissions {', '.join(key.permissions)}",
                   err=True)
        click.echo("Store it now: it is not shown again.", err=True)


@api_key.command("revoke")
@click.argument("key_id")
@with_scope
@pass_state
def api_key_revoke(state: State, key_id: str, org_slug: str | None, platform: bool) -> None:
    """Revoke a key at once."""
    from idp_bridge.services import api_keys

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        api_keys.delete(session, audit.CLI, key_scope(session, org_slug, platform), key_id, caller=None)
    click.echo(f"revoked API key {key_id}")


@cli.group()
def invite() -> None:
    """Invitations."""


@invite.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org_slug", required=True, help="The organization to invite into.")
@click.option("--dry-run", is_flag=True, help="Check every row and show the result; write nothing.")
@click.option("--atomic", is_flag=True, help="Write nothing when any row is invalid.")
@click.option("--role", default=None, help="Role for rows that name none.")
@click.option("--errors-out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the failed rows with their reasons here, to fix and import again.")
@pass_state
def invite_import(state: State, file: Path, org_slug: str, dry_run: bool, atomic: bool, role: str | None,
                  errors_out: Path | None) -> None:
    """Invite everyone in a CSV file (header row with an identifier or email column); exit 1 if a row fails."""
    from idp_bridge.cli_import import run

    state.require_secret_key()  # the links and codes it seals must open in the worker
    bridge = state.bridge
    _upgrade(bridge)
    sys.exit(run(bridge, file, org_slug, dry_run=dry_run, atomic=atomic, role=role, errors_out=errors_out))


@invite.command("list")
@click.option("--org", "org_slug", required=True, help="The organization.")
@click.option("--status", default=None, help="PENDING, ACCEPTED, EXPIRED or REVOKED (comma-separated for several).")
@click.option("--provider", default=None, help="Only invites naming this provider (or `any`).")
@limit_option
@json_option
@pass_state
def invite_list(state: State, org_slug: str, status: str | None, provider: str | None, limit: int,
                as_json: bool) -> None:
    """List an organization's invites, newest first."""
    from idp_bridge.schemas import invite_out
    from idp_bridge.services import invites, orgs

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        found = orgs.get(session, org_slug)
        items = [invite_out(i, found.slug) for i in pages(
            lambda n, cursor: invites.search(session, found, status=status, provider=provider, limit=n,
                                             cursor=cursor), limit)]
    show(items, {"ID": lambda i: i.id, "IDENTIFIER": lambda i: i.identifier, "STATUS": lambda i: i.status,
                 "ROLE": lambda i: i.role, "PROVIDER": lambda i: i.provider,
                 "EXPIRES": lambda i: when(i.expires_at)}, as_json)


@invite.command("resend")
@click.argument("invite_id")
@click.option("--org", "org_slug", required=True, help="The invite's organization.")
@pass_state
def invite_resend(state: State, invite_id: str, org_slug: str) -> None:
    """Mail a pending or expired invite again with a new link (the old link stops working); prints the link."""
    from idp_bridge.services import invites, orgs

    state.require_secret_key()  # the link it seals must open in the worker
    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        issued = invites.resend(session, bridge, audit.CLI, orgs.get(session, org_slug), invite_id)
        click.echo(issued.link)
        if issued.code:
            click.echo(f"code {issued.code}")
        click.echo(f"invite {invite_id} to {issued.invite.identifier} sent again "
                   f"(expires {when(issued.invite.expires_at)})", err=True)
        for warning in issued.warnings:
            click.echo(f"Warning: {warning}", err=True)


@invite.command("revoke")
@click.argument("invite_id")
@click.option("--org", "org_slug", required=True, help="The invite's organization.")
@pass_state
def invite_revoke(state: State, invite_id: str, org_slug: str) -> None:
    """Revoke a pending invite: its link stops working and its invited member is removed."""
    from idp_bridge.services import invites, orgs

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        revoked = invites.revoke(session, audit.CLI, orgs.get(session, org_slug), invite_id)
        click.echo(f"revoked invite {revoked.id} to {revoked.identifier}")


@cli.group()
def member() -> None:
    """Members."""


@member.command("list")
@click.option("--org", "org_slug", required=True, help="The organization.")
@click.option("--status", default=None,
              help="INVITED, ACTIVE, DEACTIVATED or DELETED (comma-separated; default: all but DELETED).")
@click.option("--role", default=None, help="Role name(s), comma-separated.")
@click.option("--provider", default=None, help="Only members of this provider.")
@limit_option
@json_option
@pass_state
def member_list(state: State, org_slug: str, status: str | None, role: str | None, provider: str | None,
                limit: int, as_json: bool) -> None:
    """List an organization's members, newest first."""
    from idp_bridge.schemas import member_out
    from idp_bridge.services import members, orgs

    bridge = state.bridge
    _upgrade(bridge)
    permissions = {name: role.permissions for name, role in bridge.settings.roles.items()}
    with transaction(bridge.sessions) as session:
        found = orgs.get(session, org_slug)
        items = [member_out(m, found.slug, permissions) for m in pages(
            lambda n, cursor: members.search(session, found, status=status, role=role, provider=provider,
                                             limit=n, cursor=cursor), limit)]
    show(items, {"ID": lambda m: m.id, "IDENTIFIER": lambda m: m.identifier, "STATUS": lambda m: m.status,
                 "ROLE": lambda m: m.role, "PROVIDER": lambda m: m.provider, "NAME": lambda m: m.name}, as_json)


@cli.group()
def domain() -> None:
    """Verified domains (join by domain)."""


@domain.command("add")
@click.argument("name")
@click.option("--org", "org_slug", required=True, help="The organization claiming the domain.")
@pass_state
def domain_add(state: State, name: str, org_slug: str) -> None:
    """Claim a domain; prints the TXT record to publish before `domain verify`."""
    from idp_bridge.domain.joining import challenge_name
    from idp_bridge.services import domains, orgs

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        row = domains.add(session, audit.CLI, orgs.get(session, org_slug), name)
        click.echo(f"{challenge_name(row.domain)} TXT {domains.challenge_value(row)}")
        click.echo(f"domain {row.domain} added ({row.id}); publish the TXT record above, then run "
                   f"'idp-bridge domain verify {row.domain} --org {org_slug}'", err=True)


@domain.command("verify")
@click.argument("name_or_id")
@click.option("--org", "org_slug", required=True, help="The domain's organization.")
@pass_state
def domain_verify(state: State, name_or_id: str, org_slug: str) -> None:
    """Look the domain's TXT challenge up; exit 1 naming the values found when it does not match."""
    from idp_bridge.services import domains, orgs

    bridge = state.bridge
    _upgrade(bridge)
    with read_only(), transaction(bridge.sessions) as session:
        org = orgs.get(session, org_slug)
        challenge = domains.challenge_for(session, org, name_or_id)
    finding = domains.look_up(bridge.txt_lookup, challenge)
    with transaction(bridge.sessions) as session:
        row = domains.record(session, audit.CLI, org, challenge, finding)
        click.echo(f"domain {row.domain} verified")


@domain.command("list")
@click.option("--org", "org_slug", required=True, help="The organization.")
@json_option
@pass_state
def domain_list(state: State, org_slug: str, as_json: bool) -> None:
    """List an organization's domains with their status and TXT challenge."""
    from idp_bridge.schemas import domain_out
    from idp_bridge.services import domains, orgs

    bridge = state.bridge
    _upgrade(bridge)
    with transaction(bridge.sessions) as session:
        found = orgs.get(session, org_slug)
        items = [domain_out(row, found.slug, domains.challenge_value(row))
                 for row in domains.list_for(session, found)]
    show(items, {"DOMAIN": lambda d: d.domain, "STATUS": lambda d: d.status,
                 "TXT NAME": lambda d: d.challenge.name, "TXT VALUE": lambda d: d.challenge.value,
                 "VERIFIED": lambda d: when(d.verified_at), "ID": lambda d: d.id}, as_json)


@cli.group()
def graph() -> None:
    """Microsoft Graph change notifications."""


@graph.command("subscribe")
@click.option("--provider", "provider_names", multiple=True,
              help="Entra provider name (default: every entra provider with graph_client_state).")
@pass_state
def graph_subscribe(state: State, provider_names: tuple[str, ...]) -> None:
    """Create the users subscription of each Entra provider; the worker renews it before it expires."""
    from idp_bridge.bootstrap import graph_subscribe as subscribe

    bridge = state.bridge
    _upgrade(bridge)
    created = subscribe(bridge, list(provider_names))
    if not created:
        fail("no entra provider with graph_client_state is configured", 2)
    for name, sub in created:
        click.echo(f"{name}: subscription {sub.id} on {sub.resource} until {sub.expires_at.isoformat()}")


def main() -> None:
    """Entry point of the `idp-bridge` console script."""
    metrics.console_script()
    cli()


if __name__ == "__main__":
    main()
