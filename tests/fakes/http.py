"""Shared plumbing of the HTTP fakes: request/response values, faults, `responses` and a real server."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import random
import re
import secrets
import ssl
import tempfile
import threading
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import requests
import responses
from requests import PreparedRequest

TimeoutKind = Literal["read", "connect"]
FAULT_KINDS = ("ok", "503", "429", "timeout", "commit_503", "commit_timeout")


@dataclass(frozen=True)
class FakeRequest:
    """One HTTP request as a fake sees it, whichever transport carried it."""

    method: str
    root: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    peer: str | None = None

    @property
    def url(self) -> str:
        """The absolute URL without the query string."""
        return self.root + self.path

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not JSON)."""
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        """The body parsed as application/x-www-form-urlencoded, first value per name."""
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {name: values[0] for name, values in parsed.items()}


@dataclass
class FakeResponse:
    """What a fake answers; `hang` makes the client time out instead of receiving it."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: TimeoutKind | None = None
    hang_s: float = 0.0

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> FakeResponse:
        """A JSON response."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return cls(status, body, {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def text(
        cls,
        status: int,
        text: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/plain;charset=utf-8",
    ) -> FakeResponse:
        """A plain-text response."""
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def empty(cls, status: int, headers: Mapping[str, str] | None = None) -> FakeResponse:
        """A response without a body (204, 201 with Location, ...)."""
        return cls(status, b"", dict(headers or {}))

    @classmethod
    def timeout(cls, kind: TimeoutKind = "read", hang_s: float = 2.0) -> FakeResponse:
        """No answer at all: `responses` raises a requests timeout, the server stalls `hang_s`."""
        return cls(0, hang=kind, hang_s=hang_s)

    def json_body(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body.decode("utf-8"))


Handler = Callable[[FakeRequest], FakeResponse]


def is_mutation(request: FakeRequest) -> bool:
    """True for methods that change state; handy as `FaultPlan(applies_to=is_mutation)`."""
    return request.method in {"POST", "PUT", "PATCH", "DELETE"}


def on(method: str, path_regex: str) -> Callable[[FakeRequest], bool]:
    """A FaultPlan predicate: this method, and a path the regex finds (re.search)."""
    pattern = re.compile(path_regex)
    return lambda request: request.method == method and pattern.search(request.path) is not None


@dataclass
class FaultPlan:
    """Seeded fault injection, decided per request before the fake touches its state.

    `script` forces the outcome of the first matching requests ("ok", "503", "429",
    "timeout", "commit_503", "commit_timeout") before the probabilities take over.
    `commit_*` outcomes let the state change happen and then fail, which is what a
    client retrying a create must survive without creating a second account.
    """

    p_503: float = 0.0
    p_429: float = 0.0
    retry_after: int = 1
    p_timeout: float = 0.0
    p_commit_then_fail: float = 0.0
    commit_fail_with: Literal["503", "timeout"] = "503"
    timeout_kind: TimeoutKind = "read"
    hang_s: float = 2.0
    seed: int = 0
    script: Sequence[str] = ()
    applies_to: Callable[[FakeRequest], bool] | None = None
    injected: list[tuple[str, str, str]] = field(default_factory=list, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)
    _queue: deque[str] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        total = self.p_503 + self.p_429 + self.p_timeout + self.p_commit_then_fail
        if total > 1.0:
            raise ValueError(f"fault probabilities add up to {total}, more than 1")
        unknown = [kind for kind in self.script if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown scripted faults {unknown}; use {FAULT_KINDS}")
        self._rng = random.Random(self.seed)
        self._queue = deque(self.script)

    def push(self, *kinds: str) -> None:
        """Force the outcome of the next matching requests."""
        unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown scripted faults {unknown}; use {FAULT_KINDS}")
        with self._lock:
            self._queue.extend(kinds)

    def draw(self, request: FakeRequest) -> str | None:
        """The fault for this request, or None; consumes one random draw per matching request."""
        if self.applies_to is not None and not self.applies_to(request):
            return None
        with self._lock:
            if self._queue:
                kind: str | None = self._queue.popleft()
            else:
                kind = self._from_probabilities()
            if kind == "ok":
                kind = None
            if kind is not None:
                self.injected.append((kind, request.method, request.path))
            return kind

    def _from_probabilities(self) -> str | None:
        # One draw per request keeps a seeded run reproducible whatever the outcome.
        roll = self._rng.random()
        for kind, p in (
            ("timeout", self.p_timeout),
            ("503", self.p_503),
            ("429", self.p_429),
            ("commit_" + self.commit_fail_with, self.p_commit_then_fail),
        ):
            if roll < p:
                return kind
            roll -= p
        return None


@dataclass(frozen=True)
class Route:
    """One endpoint of a fake: method, path regex with named groups, counter key, handler."""

    method: str
    pattern: re.Pattern[str]
    key: str
    handle: Callable[..., FakeResponse]


def route(method: str, path_regex: str, key: str, handle: Callable[..., FakeResponse]) -> Route:
    """Build a Route whose regex must match the whole path."""
    return Route(method, re.compile(path_regex + r"\Z"), key, handle)


class FakeService:
    """Base of the stateful fakes: routing, call counters, faults applied before state changes."""

    roots: tuple[str, ...] = ()

    def __init__(self, faults: FaultPlan | None = None) -> None:
        self.faults = faults or FaultPlan()
        self.calls: Counter[str] = Counter()
        self.requests: list[FakeRequest] = []
        # Reentrant so a handler may call helpers that take the lock again.
        self._lock = threading.RLock()

    def routes(self) -> Sequence[Route]:
        """The endpoints this fake serves."""
        raise NotImplementedError

    def __call__(self, request: FakeRequest) -> FakeResponse:
        """Answer one request: count it, maybe inject a fault, else route it."""
        matched: tuple[Route, dict[str, str]] | None = None
        path_known = False
        for candidate in self.routes():
            found = candidate.pattern.match(request.path)
            if found is None:
                continue
            path_known = True
            if candidate.method == request.method:
                matched = (candidate, {k: unquote(v) for k, v in found.groupdict().items()})
                break
        with self._lock:
            self.requests.append(request)
            self.calls[matched[0].key if matched else f"{request.method} <unmatched>"] += 1
            fault = self.faults.draw(request)
            if fault in {"503", "429", "timeout"}:
                return self._fault(fault, request)
            if matched is None:
                response = self.no_route(request, method_allowed=not path_known)
            else:
                response = matched[0].handle(request, **matched[1])
            if fault == "commit_503":
                return self._fault("503", request)
            if fault == "commit_timeout":
                return self._fault("timeout", request)
            return response

    def _fault(self, kind: str, request: FakeRequest) -> FakeResponse:
        if kind == "timeout":
            return FakeResponse.timeout(self.faults.timeout_kind, self.faults.hang_s)
        if kind == "429":
            return self.too_many_requests(request, self.faults.retry_after)
        return self.unavailable(request, self.faults.retry_after)

    def unavailable(self, request: FakeRequest, retry_after: int) -> FakeResponse:
        """The vendor's 503; a reverse proxy's by default, which sends no Retry-After."""
        return FakeResponse.text(503, "Service Unavailable")

    def too_many_requests(self, request: FakeRequest, retry_after: int) -> FakeResponse:
        """The vendor's 429, always with Retry-After."""
        return FakeResponse.text(429, "Too Many Requests", {"Retry-After": str(retry_after)})

    def no_route(self, request: FakeRequest, method_allowed: bool) -> FakeResponse:
        """The vendor's answer to an unknown path (404) or a known path with another method (405)."""
        if method_allowed:
            return FakeResponse.json(404, {"error": "HTTP 404 Not Found"})
        return FakeResponse.json(405, {"error": "HTTP 405 Method Not Allowed"})

    def install(self, rsps: responses.RequestsMock) -> None:
        """Register this fake on a RequestsMock for every root URL it answers."""
        for root in self.roots:
            install(rsps, root, self)

    @contextmanager
    def serve(self, latency_s: float = 0.0, *, tls: bool = False) -> Iterator[ServedURL]:
        """Serve this fake on 127.0.0.1; yields the base URL."""
        with serve(self, latency_s, tls=tls) as url:
            yield url


class _AnyMethodCallback(responses.CallbackResponse):
    """A callback registration that matches every HTTP method under one URL regex."""

    def matches(self, request: PreparedRequest) -> tuple[bool, str]:
        if not self._url_matches(self.url, str(request.url)):
            return False, "URL does not match"
        return True, ""


def _prepared_to_fake(prepared: PreparedRequest, root: str) -> FakeRequest:
    parts = urlsplit(str(prepared.url))
    prefix = urlsplit(root).path.rstrip("/")
    path = unquote(parts.path)
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    raw = prepared.body
    body = raw.encode("utf-8") if isinstance(raw, str) else (raw if isinstance(raw, bytes) else b"")
    return FakeRequest(
        method=str(prepared.method).upper(),
        root=root,
        path=path or "/",
        query=parse_qs(parts.query, keep_blank_values=True),
        headers={
            name.lower(): value.decode("latin-1") if isinstance(value, bytes) else value
            for name, value in prepared.headers.items()
        },
        body=body,
    )


def install(rsps: responses.RequestsMock, base_url: str, handler: Handler) -> None:
    """Route every request under `base_url`, whatever its method, to `handler`."""
    root = base_url.rstrip("/")
    pattern = re.compile(re.escape(root) + r"(?:[/?#].*)?\Z")

    def callback(prepared: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        answer = handler(_prepared_to_fake(prepared, root))
        if answer.hang == "connect":
            raise requests.exceptions.ConnectTimeout(f"fake connect timeout: {prepared.url}", request=prepared)
        if answer.hang == "read":
            raise requests.exceptions.ReadTimeout(f"fake read timeout: {prepared.url}", request=prepared)
        return answer.status, dict(answer.headers), answer.body

    # content_type=None: the handler's own Content-Type is the only one sent.
    rsps.add(_AnyMethodCallback("GET", pattern, callback=callback, content_type=None))


class ServedURL(str):
    """The base URL of a served fake; `ca_file` is the certificate to trust when served over TLS."""

    ca_file: str | None

    def __new__(cls, url: str, ca_file: str | None = None) -> ServedURL:
        served = super().__new__(cls, url)
        served.ca_file = ca_file
        return served


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, handler: Handler, latency_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.fake = handler
        self.latency_s = latency_s
        self.base_url = ""
        # Set on shutdown so stalled answers (timeouts, latency) end at once.
        self.stopping = threading.Event()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients stall ~40 ms on each.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        request = FakeRequest(
            method=self.command,
            root=self.server.base_url,
            path=unquote(parts.path) or "/",
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self._read_body(),
            peer=f"{self.client_address[0]}:{self.client_address[1]}",
        )
        try:
            answer = self.server.fake(request)
        except Exception:
            answer = FakeResponse.text(500, traceback.format_exc())
        if self.server.latency_s:
            self.server.stopping.wait(self.server.latency_s)
        if answer.hang is not None:
            # Stall past the client's timeout, then drop the connection without an answer.
            self.server.stopping.wait(answer.hang_s)
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD" and answer.body:
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


def _self_signed(directory: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


@contextmanager
def serve(handler: Handler, latency_s: float = 0.0, *, tls: bool = False) -> Iterator[ServedURL]:
    """Run `handler` on a keep-alive HTTP/1.1 server at 127.0.0.1 on a free port; yields its base URL.

    `latency_s` delays every answer (benchmarks want ~5 ms). With `tls=True` the server
    speaks HTTPS with a throwaway self-signed certificate whose path is `url.ca_file`
    (msal refuses authorities that are not https).
    """
    server = _Server(handler, latency_s)
    with tempfile.TemporaryDirectory(prefix="fake-tls-") as tmp:
        ca_file: str | None = None
        if tls:
            ca_file, key_file = _self_signed(Path(tmp))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(ca_file, key_file)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        port = server.server_address[1]
        server.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-http"
        )
        thread.start()
        try:
            yield ServedURL(server.base_url, ca_file)
        finally:
            server.stopping.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_shaped(claims: Mapping[str, Any], kid: str = "fake-key") -> str:
    """An opaque token that looks like a JWT (header.claims.random); only its issuer can check it."""
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    return ".".join(
        (
            b64url(json.dumps(header, separators=(",", ":")).encode()),
            b64url(json.dumps(dict(claims), separators=(",", ":")).encode()),
            b64url(secrets.token_bytes(32)),
        )
    )


def bearer(request: FakeRequest) -> str | None:
    """The bearer token of a request, if any."""
    value = request.header("Authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def basic_credentials(request: FakeRequest) -> tuple[str, str] | None:
    """The (user, password) of HTTP Basic auth, form-urldecoded as RFC 6749 2.3.1 requires."""
    value = request.header("Authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip()).decode("utf-8")
    except ValueError:
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(user), unquote_plus(password)
