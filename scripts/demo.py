"""Try idp-bridge in one command (`make demo`): a real OpenID Provider, idp-bridge configured against it, an
organization, an API key and an invitation whose link, opened in a browser, is redeemed by signing in at the OP.

The OpenID Provider is the npm `oidc-provider` of tests/e2e/op (its packages are installed when missing).
Everything the demo writes lives in its instance directory (default ./demo-instance), made afresh on every run:
the configuration, the SQLite database, the mail outbox and the logs of both servers. Ctrl-C stops both.

Standard library only: it drives the `idp-bridge` command and the HTTP API as a user would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
OP_DIR = ROOT / "tests" / "e2e" / "op"
MARKER = ".idp-bridge-demo"
ORG = "demo"
PROVIDER = "oidc"
CLIENT_ID = "idp-bridge-demo"
ACCOUNT_LOGIN = "ada"
ACCOUNT_EMAIL = "ada@example.com"
ACCOUNT_NAME = "Ada Lovelace"
PERMISSIONS = ("users:invite", "users:read", "users:edit", "users:delete", "audit:read")

NPM_TIMEOUT_S = 300.0
OP_START_TIMEOUT_S = 30.0
SERVE_START_TIMEOUT_S = 90.0
COMMAND_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_CHARS = 3000


class DemoError(Exception):
    """Something the demo needs is missing or did not start; the message says what."""


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) arrived before the demo was ready."""


def say(text: str = "") -> None:
    print(text, flush=True)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def log_tail(path: Path) -> str:
    if not path.exists():
        return ""
    return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def prepare_instance(instance: Path) -> None:
    """Make the instance directory afresh; refuse to empty a directory the demo did not make."""
    if instance.exists():
        if not (instance / MARKER).exists() and any(instance.iterdir()):
            raise DemoError(f"{instance} exists and was not made by the demo; remove it or choose another "
                            "directory (make demo DEMO_DIR=...)")
        shutil.rmtree(instance)
    instance.mkdir(mode=0o700, parents=True)
    (instance / MARKER).write_text("made by `make demo`; emptied on its next run\n")


def ensure_op_packages() -> None:
    """Install the OpenID Provider's npm packages from its package-lock.json when they are missing."""
    if (OP_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise DemoError("npm is not on PATH; install Node.js 20 or newer to run the demo's OpenID Provider")
    say(f"installing the OpenID Provider's packages (npm ci in {OP_DIR})")
    try:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=OP_DIR,
                              capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"npm ci in {OP_DIR} did not finish within {NPM_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        raise DemoError(f"npm ci in {OP_DIR} failed ({done.returncode}):\n{done.stderr[-LOG_TAIL_CHARS:]}")


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string without control characters is a valid TOML basic string


def write_config(instance: Path, public_url: str, issuer: str, client_secret: str) -> Path:
    config = instance / "idp-bridge.toml"
    config.write_text(
        "# Written by `make demo` (scripts/demo.py) for this run only.\n"
        f"instance_dir = {toml_string(str(instance))}\n"
        f"public_url = {toml_string(public_url)}\n"
        'mail_transport = "file"\n'
        "\n"
        f"[providers.{PROVIDER}]\n"
        'type = "oidc"\n'
        f"issuer = {toml_string(issuer)}\n"
        f"client_id = {toml_string(CLIENT_ID)}\n"
        f"client_secret = {toml_string(client_secret)}\n"
        'label = "the demo OpenID Provider"\n')
    config.chmod(0o600)
    return config


class Demo:
    """The two servers of a demo run, started in their own process groups and stopped together."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.port: int = args.port
        self.op_port: int = args.op_port
        self.instance = Path(args.instance_dir).resolve()
        self.idp_bridge: str = args.idp_bridge
        self.public_url = f"http://{HOST}:{self.port}"
        self.issuer = f"http://{HOST}:{self.op_port}"
        self.client_secret = secrets.token_urlsafe(24)
        self.password = "demo-" + secrets.token_hex(4)
        self.env: dict[str, str] = {}
        self.op: subprocess.Popen[bytes] | None = None
        self.serve: subprocess.Popen[bytes] | None = None
        # The stop signals received so far (set by the signal handler).
        self.stopping: list[int] = []

    @property
    def op_log(self) -> Path:
        return self.instance / "op.log"

    @property
    def serve_log(self) -> Path:
        return self.instance / "serve.log"

    def check_ports(self) -> None:
        if self.port == self.op_port:
            raise DemoError(f"PORT and OP_PORT are both {self.port}; give them different values")
        for name, port in (("PORT", self.port), ("OP_PORT", self.op_port)):
            if not port_is_free(port):
                raise DemoError(f"{HOST}:{port} is already in use; choose another port (make demo {name}=...)")

    def start_op(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise DemoError("node is not on PATH; install Node.js 20 or newer to run the demo's OpenID Provider")
        ensure_op_packages()
        config = self.instance / "op.json"
        config.write_text(json.dumps({
            "issuer": self.issuer,
            "port": self.op_port,
            "clients": [{"client_id": CLIENT_ID, "client_secret": self.client_secret,
                         "redirect_uris": [f"{self.public_url}/auth/callback/{PROVIDER}"]}],
            "accounts": [{"login": ACCOUNT_LOGIN, "password": self.password,
                          "claims": {"sub": "demo-ada", "email": ACCOUNT_EMAIL, "email_verified": True,
                                     "name": ACCOUNT_NAME}}],
        }))
        config.chmod(0o600)
        self.op = self._spawn([node, str(OP_DIR / "server.mjs"), str(config)], OP_DIR, self.op_log)
        self._wait_until(self.op, f"{self.issuer}/.well-known/openid-configuration", OP_START_TIMEOUT_S,
                         "the OpenID Provider", self.op_log)

    def start_serve(self) -> None:
        self.serve = self._spawn([self.idp_bridge, "serve", "--host", HOST, "--port", str(self.port),
                                  "--workers", "1", "--threads", "4"], Path.cwd(), self.serve_log)
        self._wait_until(self.serve, f"{self.public_url}/readyz", SERVE_START_TIMEOUT_S, "idp-bridge serve",
                         self.serve_log)

    def _spawn(self, command: list[str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("wb") as log:
            # A process group of its own: the terminal's Ctrl-C reaches this script, which stops each group
            # (gunicorn's workers and the job worker included) in turn.
            return subprocess.Popen(command, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_until(self, process: subprocess.Popen[bytes], url: str, timeout: float, what: str, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stopping:
                raise Interrupted
            if process.poll() is not None:
                raise DemoError(f"{what} exited ({process.returncode}) while starting; its log ({log}):\n"
                                f"{log_tail(log)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise DemoError(f"{what} did not answer {url} within {timeout:.0f} s; its log ({log}):\n{log_tail(log)}")

    def cli(self, *args: str) -> str:
        try:
            done = subprocess.run([self.idp_bridge, *args], env=self.env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DemoError(f"idp-bridge {' '.join(args)} did not finish within {COMMAND_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            raise DemoError(f"idp-bridge {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def api(self, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.public_url}/api/v1{path}", data=data, method=method,
                                         headers={"Authorization": f"Bearer {key}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT_S) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:
            raise DemoError(f"{method} {path} answered {exc.code}: {exc.read().decode(errors='replace')}") from exc

    def set_up(self) -> tuple[str, str]:
        """Start both servers, make the org, its key and the invite; return the API key and the invite link."""
        self.check_ports()
        prepare_instance(self.instance)
        config = write_config(self.instance, self.public_url, self.issuer, self.client_secret)
        # Only the demo's own configuration: IDP_BRIDGE_* variables of the calling shell would point it elsewhere.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("IDP_BRIDGE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        self.env["IDP_BRIDGE_CONFIG"] = str(config)

        say(f"starting the OpenID Provider at {self.issuer}")
        self.start_op()
        say(f"starting idp-bridge serve at {self.public_url}")
        self.start_serve()

        self.cli("org", "create", ORG, "--name", "Demo organization")
        key = self.cli("api-key", "create", "--org", ORG, "--name", "demo",
                       *(arg for permission in PERMISSIONS for arg in ("--permission", permission)))
        key = key.strip().splitlines()[0]
        invite = self.api("POST", f"/orgs/{ORG}/invites", key,
                          {"identifier": ACCOUNT_EMAIL, "name": ACCOUNT_NAME, "role": "ADMIN",
                           "provider": PROVIDER})
        if invite.get("warnings"):
            raise DemoError(f"the invite was created with warnings: {invite['warnings']}")
        return key, str(invite["link"])

    def report(self, key: str, link: str) -> None:
        rel = os.path.relpath(self.instance)
        say()
        say("idp-bridge demo is ready.")
        say()
        say("Open this invitation link in a browser:")
        say(f"  Invitation link: {link}")
        say("and sign in at the OpenID Provider with")
        say(f"  login:    {ACCOUNT_LOGIN}")
        say(f"  password: {self.password}")
        say(f"The invite is then redeemed: {ACCOUNT_EMAIL} becomes an ACTIVE member of the org {ORG!r}.")
        say()
        say(f"  idp-bridge:           {self.public_url}   (log: {rel}/serve.log, mail: {rel}/mail/)")
        say(f"  OpenID Provider:      {self.issuer}   (log: {rel}/op.log)")
        say(f"  API key (org {ORG}):  {key}")
        say(f"  members:              curl -s {self.public_url}/api/v1/orgs/{ORG}/members "
            f"-H 'Authorization: Bearer {key}'")
        say()
        say("Ctrl-C stops both.")

    def watch(self) -> None:
        """Return when a stop signal arrived; raise when a server exits by itself."""
        while not self.stopping:
            for process, what, log in ((self.op, "the OpenID Provider", self.op_log),
                                       (self.serve, "idp-bridge serve", self.serve_log)):
                if process is not None and process.poll() is not None:
                    raise DemoError(f"{what} exited ({process.returncode}); its log ({log}):\n{log_tail(log)}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop serve, then the OP: SIGTERM to the process group, SIGKILL when it lingers."""
        for process in (self.serve, self.op):
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8080, help="idp-bridge's port (make demo PORT=...)")
    parser.add_argument("--op-port", type=int, default=9080, help="the OpenID Provider's port (OP_PORT=...)")
    parser.add_argument("--instance-dir", default="demo-instance", help="the demo's directory (DEMO_DIR=...)")
    parser.add_argument("--idp-bridge", default=str(Path(sys.executable).with_name("idp-bridge")),
                        help="the idp-bridge command")
    args = parser.parse_args(argv)
    for name in ("port", "op_port"):
        if not 0 < getattr(args, name) < 65536:
            parser.error(f"--{name.replace('_', '-')} must be a port number (1-65535)")
    if not Path(args.idp_bridge).exists() and shutil.which(args.idp_bridge) is None:
        parser.error(f"{args.idp_bridge} does not exist (make demo installs idp-bridge into .venv first)")
    return args


def main(argv: list[str] | None = None) -> int:
    demo = Demo(parse_args(argv))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        demo.stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        key, link = demo.set_up()
        if demo.stopping:
            raise Interrupted
        demo.report(key, link)
        demo.watch()
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except Interrupted:
        print("demo: interrupted before it was ready", file=sys.stderr, flush=True)
        return 130
    finally:
        demo.stop()
    say("demo stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
