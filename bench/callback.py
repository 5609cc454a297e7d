"""OIDC callback benchmark: p50/p99 of GET /auth/callback over HTTP against a same-run baseline.

The app runs as a real loopback server (werkzeug, threaded) on a fresh database; the IdP is faked in the
same process at the HTTP boundary (tests/fakes/oidc.py: token and userinfo endpoints; discovery and JWKS are
fetched once and then cached, as in production). By default the fake answers through a requests transport
mounted on the provider's HTTP session; `--fake responses` routes it through `responses` as the tests do,
whose request matching then counts as callback time. The fake OP sends `iss` (RFC 9207)
and signs each ID token when the person signs in, as a remote OP does on its own machine, so its RSA
signing is not counted as the bridge's time. Each measured request redeems one invite: state lookup, issuer
check, code exchange, ID token validation, userinfo, identity rules, the redemption transaction and the
redirect. The invitee's browser is a plain HTTP/1.1 client on a new connection per callback: the timed
interval holds the connection, the request, the response and nothing of a client library's own overhead.
The baseline, measured in the same run on the same database, is one raw RS256 verification of an ID token
plus one committed DB transaction.

Peak memory (SPEC §8): the server is this process (it has no child processes), so its peak RSS (VmHWM) is
reset just before the measured callbacks and read right after them; the fake IdP and the HTTP client live
in the same process and are counted with it.

    python bench/callback.py [--invites 300] [--database sqlite|postgres] [--fake transport|responses]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
import responses  # noqa: E402
from joserfc import jwt  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

from idp_bridge import audit  # noqa: E402
from idp_bridge.app import create_app  # noqa: E402
from idp_bridge.audit import Actor  # noqa: E402
from idp_bridge.bridge import build  # noqa: E402
from idp_bridge.db import transaction  # noqa: E402
from idp_bridge.inputs import InviteInput, OrgCreate  # noqa: E402
from idp_bridge.migrate import upgrade  # noqa: E402
from idp_bridge.settings import load_settings  # noqa: E402
from providers.base import OIDCProviderBase  # noqa: E402
from tests.fakes.oidc import FakeOP  # noqa: E402

ISSUER = "https://idp.bench"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET_P50_MS = 3.0
TARGET_P99_MS = 15.0


class QuietHandler(WSGIRequestHandler):
    """No per-request access log: writing it would be measured as callback time."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def database_url(kind: str, directory: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{directory / 'bench.sqlite3'}", None
    name = f"idpb_bench_cb_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name


def drop(name: str | None) -> None:
    if name is None:
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invites", type=int, default=300)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--fake", choices=["transport", "responses"], default="transport")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-callback-"))
    url, pg_name = database_url(args.database, workdir)
    try:
        run(args.invites, url, workdir, args.fake)
    finally:
        drop(pg_name)


def run(count: int, url: str, workdir: Path, fake: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    engine.dispose()
    server = make_server("127.0.0.1", 0, None, threaded=True,  # type: ignore[arg-type]
                         request_handler=QuietHandler)
    public = f"http://127.0.0.1:{server.server_port}"
    settings = load_settings(environ={}, overrides={
        "instance_dir": str(workdir / "instance"), "database_url": url, "public_url": public,
        "secret_key": "bench-" + "k" * 40, "redirect_allowlist": ["https://app.bench/"],
        "invite_page_rate_limit": "1000000/minute",
        "providers": {"oidc": {"type": "oidc", "issuer": ISSUER, "client_id": "bridge-client",
                               "client_secret": "bridge-secret"}}})
    bridge = build(settings)
    server.app = create_app(bridge=bridge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    op = FakeOP(ISSUER, iss_parameter=True)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(public)
        if fake == "responses":
            op.install(rsps)
        else:
            provider = bridge.providers["oidc"]
            assert isinstance(provider, OIDCProviderBase)
            provider.oidc.http.mount(f"{ISSUER}/", op.adapter())
        try:
            pending = prepare(bridge, op, public, count)
            memory = Memory()
            measured = measure_callbacks(public, pending)
            memory.read()
            baseline = measure_baseline(bridge, op, count)
        finally:
            server.shutdown()
            thread.join(timeout=5)
            bridge.close()
    report(measured, baseline, memory)


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Memory:
    """Peak RSS of the server process (this one) over the measured callbacks."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.before_mb = status_kb(self.pid, "VmRSS") / 1024
        # Linux: writing 5 to clear_refs starts VmHWM afresh, so the peak is the callbacks' own.
        self.reset = False
        with suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.reset = True
        self.peak_mb = 0.0

    def read(self) -> None:
        self.peak_mb = status_kb(self.pid, "VmHWM") / 1024


Pending = list[tuple[str, dict[str, str]]]


def prepare(bridge: Any, op: FakeOP, public: str, count: int) -> Pending:
    """Invites, started logins and authorization codes, ready for their callbacks (not timed)."""
    from idp_bridge.services import invites, orgs

    with transaction(bridge.sessions) as session:
        org = orgs.create(session, bridge, audit.CLI, OrgCreate(slug="bench", name="Bench", member_limit=count + 10,
                                                                redirect_url="https://app.bench/home"))
    links = []
    with transaction(bridge.sessions) as session:
        org = orgs.get(session, "bench")
        for n in range(count):
            issued = invites.create(session, bridge, Actor("bench"), org,
                                    InviteInput(identifier=f"user{n}@bench.example.com", provider="oidc",
                                                send_email=False))
            links.append((n, issued.link))
    pending = []
    for n, link in links:
        browser = requests.Session()
        resp = browser.get(f"{link}/login", allow_redirects=False, timeout=10)
        assert resp.status_code == 303, resp.text
        cb = op.authorize(resp.headers["Location"], {"sub": f"sub-{n}", "email": f"user{n}@bench.example.com",
                                                     "email_verified": True})
        op.sign_ahead(cb["code"])
        cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        pending.append((cookies, cb))
    # Warm discovery, JWKS and the server's code paths the way a running server has them warm.
    for _ in range(min(10, len(pending) - 1)):
        callback(public, *pending.pop())
    return pending


def callback(public: str, cookies: str, params: dict[str, str]) -> float:
    """One invitee browser arriving back from the IdP; returns milliseconds."""
    url = urlsplit(public)
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request("GET", f"/auth/callback/oidc?{urlencode(params)}", headers={"Cookie": cookies})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    elapsed = (time.perf_counter() - t0) * 1000
    assert resp.status == 303 and resp.getheader("Location") == "https://app.bench/home", body[:300]
    return elapsed


def measure_callbacks(public: str, pending: Pending) -> list[float]:
    return [callback(public, cookies, params) for cookies, params in pending]


def measure_baseline(bridge: Any, op: FakeOP, count: int) -> list[float]:
    """One RS256 verification plus one committed transaction, per iteration."""
    key = op.keys[-1]
    now = int(time.time())
    token = op.sign({"iss": ISSUER, "aud": "bridge-client", "sub": "s", "iat": now, "exp": now + 300, "nonce": "n"})
    public_key = key.as_dict(private=False)
    from joserfc.jwk import RSAKey

    verifier = RSAKey.import_key(public_key)
    times = []
    for n in range(count):
        t0 = time.perf_counter()
        jwt.decode(token, verifier, algorithms=["RS256"])
        with transaction(bridge.sessions) as session:
            audit.record(session, Actor("bench"), "bench.baseline", target_id=str(n))
        times.append((time.perf_counter() - t0) * 1000)
    return times


def report(measured: list[float], baseline: list[float], memory: Memory) -> None:
    p50, p99 = statistics.median(measured), percentile(measured, 99)
    b50, b99 = statistics.median(baseline), percentile(baseline, 99)
    print(f"callback over HTTP  n={len(measured)}  p50={p50:.2f} ms  p99={p99:.2f} ms")
    print(f"baseline (RS256 verify + 1 transaction)  p50={b50:.2f} ms  p99={b99:.2f} ms")
    print(f"ratio callback/baseline  p50={p50 / b50:.1f}x  p99={p99 / b99:.1f}x")
    print(f"server process (pid {memory.pid}) peak RSS during the callbacks: {memory.peak_mb:.1f} MB "
          f"(RSS before {memory.before_mb:.1f} MB{'' if memory.reset else '; peak since process start'})")
    print(f"target p50<={TARGET_P50_MS} ms: {'met' if p50 <= TARGET_P50_MS else 'NOT met'}; "
          f"p99<={TARGET_P99_MS} ms: {'met' if p99 <= TARGET_P99_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
