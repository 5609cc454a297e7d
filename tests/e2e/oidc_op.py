"""Run a real OpenID Provider (Node's oidc-provider, tests/e2e/op/server.mjs) for e2e tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OP_DIR = Path(__file__).resolve().parent / "op"
SERVER_SCRIPT = OP_DIR / "server.mjs"
NPM_CI_TIMEOUT_S = 300.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3


class OPError(RuntimeError):
    """The OpenID Provider could not be installed, started or queried."""


@dataclass(frozen=True)
class OPClient:
    """A confidential client registered at the OP (code flow, client_secret_basic)."""

    client_id: str
    client_secret: str
    redirect_uris: Sequence[str]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        """Return the client as oidc-provider client metadata."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": list(self.redirect_uris),
            **self.metadata,
        }


@dataclass(frozen=True)
class OPAccount:
    """An account one signs in as by typing its `login`; its claims go into the ID token."""

    login: str
    sub: str
    email: str | None = None
    email_verified: bool = True
    name: str | None = None
    extra_claims: Mapping[str, Any] = field(default_factory=dict)
    # When set, the OP's login form must be sent with it.
    password: str | None = None

    @property
    def claims(self) -> dict[str, Any]:
        """Return every claim the OP releases for this account."""
        claims: dict[str, Any] = {"sub": self.sub}
        if self.email is not None:
            claims["email"] = self.email
            claims["email_verified"] = self.email_verified
        if self.name is not None:
            claims["name"] = self.name
        claims.update(self.extra_claims)
        return claims

    def to_config(self) -> dict[str, Any]:
        """Return the account in server.mjs's config shape."""
        config: dict[str, Any] = {"login": self.login, "claims": self.claims}
        if self.password is not None:
            config["password"] = self.password
        return config


ClientSpec = OPClient | Mapping[str, Any]
AccountSpec = OPAccount | Mapping[str, Any]


def _client_config(client: ClientSpec) -> dict[str, Any]:
    return client.to_config() if isinstance(client, OPClient) else dict(client)


def _account_config(account: AccountSpec) -> dict[str, Any]:
    return account.to_config() if isinstance(account, OPAccount) else dict(account)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialize npm runs across pytest-xdist workers sharing one checkout."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_node_modules(timeout: float = NPM_CI_TIMEOUT_S) -> None:
    """Install the OP's npm dependencies from package-lock.json when they are missing."""
    marker = OP_DIR / "node_modules" / "oidc-provider" / "package.json"
    if marker.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise OPError("npm is not on PATH; install Node.js 20+ to run the e2e OpenID Provider")
    lock = Path(tempfile.gettempdir()) / f"idp-bridge-e2e-npm-{os.getuid()}.lock"
    with _file_lock(lock):
        if marker.exists():
            return
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=OP_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise OPError(f"npm ci in {OP_DIR} did not finish within {timeout:.0f}s") from exc
        if result.returncode != 0:
            raise OPError(f"npm ci in {OP_DIR} failed ({result.returncode}):\n{result.stderr[-4000:]}")


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway CA (`ca_file`, what clients trust) and the server certificate it signed for 127.0.0.1."""

    ca_file: str
    cert_file: str
    key_file: str


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls_files(directory: Path, *, lifetime: dt.timedelta = dt.timedelta(days=1)) -> TLSFiles:
    """Write a fresh CA and a server certificate for 127.0.0.1 it signed (P-256) into `directory`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp-bridge e2e throwaway CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(ca_file=str(directory / "ca.pem"), cert_file=str(directory / "server.pem"),
                     key_file=str(directory / "server-key.pem"))
    Path(files.ca_file).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(files.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = Path(files.key_file)
    key_path.touch(mode=0o600)
    key_path.write_bytes(_pem_key(key))
    return files


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OpenIDProvider:
    """A real OpenID Provider on 127.0.0.1, started on enter and stopped on exit."""

    def __init__(
        self,
        clients: Sequence[ClientSpec],
        accounts: Sequence[AccountSpec],
        *,
        issuer_path: str = "",
        tls: bool = False,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self._clients = [_client_config(c) for c in clients]
        self._accounts = [_account_config(a) for a in accounts]
        self._issuer_path = "/" + issuer_path.strip("/") if issuer_path.strip("/") else ""
        self._tls = tls
        self._tls_files: TLSFiles | None = None
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._port: int | None = None
        self.metadata: dict[str, Any] = {}

    @property
    def port(self) -> int:
        """Return the port the OP listens on."""
        if self._port is None:
            raise OPError("the OpenID Provider is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """Return the scheme, host and port the OP serves at."""
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        """Return the PEM file of the throwaway CA that signed the OP's certificate (with tls=True)."""
        if self._tls_files is None:
            raise OPError("the OpenID Provider does not serve HTTPS (tls=True) or is not running")
        return self._tls_files.ca_file

    @property
    def verify(self) -> str | bool:
        """Return what `requests` verifies the OP's certificate with."""
        return self.ca_file if self._tls else True

    @property
    def issuer(self) -> str:
        """Return the issuer URL, exactly as it appears in `iss`."""
        return f"{self.base_url}{self._issuer_path}"

    @property
    def discovery_url(self) -> str:
        """Return the URL of the OpenID discovery document."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        """Return the authorization endpoint from discovery."""
        return str(self.metadata["authorization_endpoint"])

    @property
    def token_endpoint(self) -> str:
        """Return the token endpoint from discovery."""
        return str(self.metadata["token_endpoint"])

    @property
    def jwks_uri(self) -> str:
        """Return the JWKS URL from discovery."""
        return str(self.metadata["jwks_uri"])

    def jwks(self) -> dict[str, Any]:
        """Fetch the OP's current public signing keys."""
        response = requests.get(self.jwks_uri, timeout=5, verify=self.verify)
        response.raise_for_status()
        return dict(response.json())

    def authorization_requests(self) -> list[dict[str, str]]:
        """Return the query parameters of every authorization request the OP has received."""
        response = requests.get(f"{self.issuer}/__harness/authorizations", timeout=5, verify=self.verify)
        response.raise_for_status()
        return list(response.json())

    def log(self) -> str:
        """Return what the OP process has printed so far (for failure messages)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise OPError("node is not on PATH; install Node.js 20+ to run the e2e OpenID Provider")
        self._workdir = tempfile.TemporaryDirectory(prefix="idp-bridge-op-")
        try:
            if self._tls:
                self._tls_files = make_tls_files(Path(self._workdir.name))
            # A port picked by bind(0) can be taken before node binds it; retry a few times.
            for _ in range(START_ATTEMPTS):
                if self._start(node):
                    return self
                self._stop_process()
            raise OPError(f"the OpenID Provider did not start:\n{self.log()[-4000:]}")
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_process()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self._tls_files = None

    def _config(self) -> dict[str, Any]:
        """Return server.mjs's configuration for the port just picked."""
        config: dict[str, Any] = {
            "issuer": self.issuer,
            "port": self._port,
            "clients": self._clients,
            "accounts": self._accounts,
        }
        if self._tls_files is not None:
            config["tls"] = {"cert": self._tls_files.cert_file, "key": self._tls_files.key_file}
        return config

    def _start(self, node: str) -> bool:
        """Start node once on a fresh port; return whether discovery answered in time."""
        assert self._workdir is not None
        self._port = free_loopback_port()
        workdir = Path(self._workdir.name)
        config_path = workdir / f"op-{self._port}.json"
        config_path.write_text(json.dumps(self._config()))
        self._log_path = workdir / f"op-{self._port}.log"
        with self._log_path.open("wb") as log:
            # Own process group so stopping also ends anything node spawned; output goes
            # to a file because an unread pipe would eventually block the server.
            self._process = subprocess.Popen(
                [node, str(SERVER_SCRIPT), str(config_path)],
                cwd=OP_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                response = requests.get(self.discovery_url, timeout=2, verify=self.verify)
                if response.status_code == 200:
                    self.metadata = dict(response.json())
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return False

    def _stop_process(self) -> None:
        """Send SIGTERM to the OP's process group, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)


ORGANIZATIONS = "organizations"


class EntraOP(OpenIDProvider):
    """The OP acting as Microsoft Entra ID's v2.0 endpoints for `tenants`, over HTTPS with a throwaway CA.

    `authority` stands for https://login.microsoftonline.com: each tenant's issuer is `{authority}/{tid}/v2.0`
    and signs in the accounts whose `tid` claim is that tenant; `{authority}/organizations/v2.0` signs in every
    account, its discovery names the issuer `{authority}/{tenantid}/v2.0` and each ID token carries the issuer
    of the account's own tenant. No authorization response carries `iss` (Entra does not send it).
    """

    def __init__(
        self,
        clients: Sequence[ClientSpec],
        accounts: Sequence[AccountSpec],
        *,
        tenants: Sequence[str],
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        super().__init__(clients, accounts, tls=True, start_timeout=start_timeout)
        self.tenants = [tid.lower() for tid in tenants]

    @property
    def authority(self) -> str:
        """Return what the entra provider's `authority` option names (instead of login.microsoftonline.com)."""
        return self.base_url

    def issuer_of(self, tenant: str) -> str:
        """Return the issuer of `tenant` (a GUID, `organizations`, or the template `{tenantid}`)."""
        return f"{self.authority}/{tenant}/v2.0"

    def discovery_url_of(self, tenant: str) -> str:
        """Return the discovery URL of a tenant's endpoint, or of the multi-tenant `organizations` one."""
        return f"{self.issuer_of(tenant)}/.well-known/openid-configuration"

    @property
    def issuer(self) -> str:
        """Return the multi-tenant endpoint's base; its discovery names the `{tenantid}` template, its tokens
        each their tenant's issuer (see issuer_of)."""
        return self.issuer_of(ORGANIZATIONS)

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        config["issuer"] = self.authority
        config["entra"] = {"tenants": self.tenants}
        return config
