"""SCIM benchmark: 10,000 users created through POST /scim/v2/{org}/Users, against the bulk invite path, same run.

Starts the real service (`idp-bridge serve --no-worker`) on a free loopback port with a fresh database. The
baseline is the bulk invite path as bench/bulk_invite.py drives it: the same number of rows as one CSV through
POST /api/v1/orgs/{org}/invites/bulk. Then a directory's client creates the users one request each (as Entra
and Okta do), from a few keep-alive connections in parallel; the peak RSS of every server process is read from
/proc. Bounded: at most --rows requests, each with a timeout, and the whole run stops at --deadline seconds.

The same run also measures the ceiling any per-request create has here: the same client POSTing the same bodies to
a bare endpoint (parse the JSON, answer 201 with it) under the gunicorn settings `serve` uses, same workers and
threads, no database. Its rate over the bulk rate is the best ratio a create one request each could reach on this
machine; SCIM's rate over it is how much of that ceiling the service keeps.

    python bench/scim.py [--rows 10000] [--clients 4] [--database sqlite|postgres] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.bulk_invite import SECRET, cli, csv_body, serving  # noqa: E402
from bench.common import (  # noqa: E402
    cpu_seconds,
    free_port,
    peak_rss_mb,
    process_tree,
    reset_peak,
    stop_server,
    temp_database,
    wait_ready,
)
from idp_bridge.models import Job, Member, Organization  # noqa: E402
from idp_bridge.store.db import make_engine  # noqa: E402

TARGET_RATIO = 0.3
TARGET_RSS_MB = 150.0
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def user(i: int) -> dict[str, Any]:
    """A create request as Okta sends it (SCIM 2.0 protocol reference, 'Create the user')."""
    name = f"scim{i:05d}@example.com"
    return {"schemas": [CORE], "userName": name, "externalId": f"00u{i:012d}",
            "name": {"givenName": "User", "familyName": str(i)}, "displayName": f"User {i}",
            "emails": [{"primary": True, "value": name, "type": "work"}], "active": True}


def stored(url: str, slug: str) -> dict[str, int]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            org_id = conn.scalar(select(Organization.id).where(Organization.slug == slug))
            return {name: int(conn.scalar(select(func.count()).select_from(model).where(
                model.org_id == org_id)) or 0) for name, model in (("members", Member), ("jobs", Job))}
    finally:
        engine.dispose()


def raw_request(key: str, body: bytes) -> bytes:
    """One create as the raw HTTP/1.1 request that carries it, as a directory's client sends it."""
    return (f"POST /scim/v2/scim/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/scim+json\r\n"
            f"Accept: application/scim+json\r\nAuthorization: Bearer {key}\r\nUser-Agent: Okta SCIM Client 1.0.0\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _connection(port: int, requests_: list[bytes], failures: list[str], stop_at: float) -> None:
    """Send the requests one after another on one keep-alive connection, each once the last was answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in requests_:
            if time.monotonic() >= stop_at:
                return
            writer.write(raw)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length) if length else b""
            if head[9:12] != b"201":
                failures.append(f"{head[9:12].decode()} {answer[:200]!r}")
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def create_users(port: int, key: str, rows: int, clients: int, deadline: float) -> tuple[float, list[str], float]:
    """POST every user over `clients` keep-alive connections, one request in flight on each (a lean load
    generator in one process, so the server keeps the other core); wall seconds, the failures (status and body)
    and the client's own CPU seconds a request."""
    batch = [raw_request(key, json.dumps(user(i)).encode()) for i in range(rows)]
    failures: list[str] = []
    stop_at = time.monotonic() + deadline

    async def run() -> None:
        await asyncio.gather(*(_connection(port, batch[i::clients], failures, stop_at) for i in range(clients)))

    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    seconds = time.perf_counter() - started
    if time.monotonic() >= stop_at:
        failures.append(f"stopped at the {deadline:.0f} s deadline")
    return seconds, failures, (time.process_time() - cpu) / rows


def bare_server(port: int, workers: int) -> None:
    """The ceiling: POST /scim/v2/scim/Users parses the body and answers 201 with it, nothing else, under the
    gunicorn settings of `idp-bridge serve` (gthread, 8 threads, the redacting access log)."""
    from flask import Flask, Response, request
    from gunicorn.app.base import BaseApplication

    from idp_bridge.server import gunicorn_options

    app = Flask("bare")

    @app.post("/scim/v2/<org>/Users")
    def create(org: str) -> Response:
        return Response(json.dumps(json.loads(request.get_data())), status=201, mimetype="application/scim+json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok")

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {**gunicorn_options(access_log=True), "bind": f"127.0.0.1:{port}", "workers": workers,
                        "threads": 8}
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Server().run()


def bare_rate(args: argparse.Namespace, work: Path) -> tuple[float, float]:
    """The bare endpoint's seconds and server CPU seconds for --rows creates by the same client."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--bare-port", str(port), "--workers", str(args.workers)],
                              cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/healthz", server)
        pids = process_tree(server.pid)
        cpu_before = cpu_seconds(pids)
        seconds, failures, _ = create_users(port, "none", args.rows, args.clients, args.deadline)
        cpu = cpu_seconds(pids) - cpu_before
    finally:
        stop_server(server)
    if failures:
        raise SystemExit(f"bare endpoint failed: {failures[:3]}")
    return seconds, cpu


def run(args: argparse.Namespace, work: Path, url: str) -> dict[str, Any]:
    env = {**os.environ, "IDP_BRIDGE_INSTANCE_DIR": str(work / "instance"), "IDP_BRIDGE_DATABASE_URL": url,
           "IDP_BRIDGE_SECRET_KEY": SECRET, "IDP_BRIDGE_PUBLIC_URL": "https://join.bench",
           "IDP_BRIDGE_MAIL_TRANSPORT": "file"}
    for slug in ("bulk", "scim"):
        cli(env, work, "org", "create", slug, "--name", slug.title(), "--member-limit", str(args.rows * 2))
    bulk_key = cli(env, work, "api-key", "create", "--org", "bulk", "--permission", "users:invite",
                   "--permission", "users:read").splitlines()[-1]
    scim_key = cli(env, work, "api-key", "create", "--org", "scim",
                   "--permission", "scim:provision").splitlines()[-1]
    with serving(args, env, work) as (base, pids):
        started = time.perf_counter()
        resp = requests.post(f"{base}/api/v1/orgs/bulk/invites/bulk", data=csv_body(args.rows), timeout=300,
                             headers={"Authorization": f"Bearer {bulk_key}", "Content-Type": "text/csv"})
        bulk_seconds = time.perf_counter() - started
    if resp.status_code != 200:
        raise SystemExit(f"bulk import failed: {resp.status_code} {resp.text[:500]}")
    # A fresh server for the SCIM run, so its peak RSS is SCIM's own.
    with serving(args, env, work) as (base, pids):
        reset_peak(pids)
        cpu_before = cpu_seconds(pids)
        port = int(base.rsplit(":", 1)[1])
        scim_seconds, failures, client_cpu = create_users(port, scim_key, args.rows, args.clients, args.deadline)
        scim_cpu = cpu_seconds(pids) - cpu_before
        rss = peak_rss_mb(pids)
    bare_seconds, bare_cpu = bare_rate(args, work)
    return {"bulk_seconds": bulk_seconds, "bulk_summary": resp.json()["summary"], "scim_seconds": scim_seconds,
            "bare_seconds": bare_seconds, "bare_cpu": bare_cpu, "scim_cpu": scim_cpu, "client_cpu": client_cpu,
            "failures": failures, "rss": rss, "pids": pids, "counts": stored(url, "scim")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="parallel keep-alive connections of the client")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes of the server")
    parser.add_argument("--deadline", type=float, default=600.0, help="stop creating users after this many s")
    parser.add_argument("--bare-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_port:
        return bare_server(args.bare_port, args.workers)
    with tempfile.TemporaryDirectory(prefix="idpb-bench-") as tmp:
        work = Path(tmp)
        with temp_database(args.database, work, "service") as url:
            result = run(args, work, url)
    rows = args.rows
    bulk_rate, scim_rate = rows / result["bulk_seconds"], rows / result["scim_seconds"]
    ratio = scim_rate / bulk_rate
    peak = max(result["rss"].values())
    print(f"database: {args.database}; server: idp-bridge serve --no-worker --workers {args.workers} "
          f"(processes {result['pids']}); client: {args.clients} connections")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"baseline, bulk invite of {rows} CSV rows: {result['bulk_seconds']:.2f} s = {bulk_rate:,.0f} invites/s; "
          f"answer {result['bulk_summary']}")
    print(f"SCIM create of {rows} users: {result['scim_seconds']:.2f} s = {scim_rate:,.0f} users/s "
          f"(server CPU {result['scim_cpu']:.2f} s, {1000 * result['scim_cpu'] / rows:.2f} ms a user; client CPU "
          f"{1e6 * result['client_cpu']:.0f} us a request)")
    print(f"ratio SCIM users/s ÷ bulk invites/s: {ratio:.2f}")
    bare = rows / result["bare_seconds"]
    print(f"ceiling, a bare endpoint answering the same {rows} POSTs: {result['bare_seconds']:.2f} s = {bare:,.0f} "
          f"requests/s (server CPU {1000 * result['bare_cpu'] / rows:.2f} ms a request); ceiling ratio "
          f"{bare / bulk_rate:.2f}; SCIM ÷ ceiling: {scim_rate / bare:.2f}")
    print("server peak RSS during SCIM (MB): " + ", ".join(f"pid {p}: {mb:.1f}" for p, mb in result["rss"].items()))
    print(f"stored for the SCIM org: {result['counts']}")
    for failure in result["failures"][:5]:
        print(f"failure: {failure}")
    checks = {
        f"ratio >= {TARGET_RATIO}": ratio >= TARGET_RATIO,
        f"peak RSS < {TARGET_RSS_MB} MB": peak < TARGET_RSS_MB,
        "every user created": not result["failures"] and result["counts"]["members"] == rows,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
