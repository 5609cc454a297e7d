"""SCIM benchmark: 10,000 users created through POST /scim/v2/{org}/Users, against the bulk invite path, same run.

Starts the real service (`idp-bridge serve --no-worker`) on a free loopback port with a fresh database. The
baseline is the bulk invite path as bench/bulk_invite.py drives it: the same number of rows as one CSV through
POST /api/v1/orgs/{org}/invites/bulk. Then a directory's client creates the users one request each (as Entra
and Okta do), from a few keep-alive connections in parallel; the peak RSS of every server process is read from
/proc. Bounded: at most --rows requests, each with a timeout, and the whole run stops at --deadline seconds.

    python bench/scim.py [--rows 10000] [--clients 4] [--database sqlite|postgres] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.bulk_invite import SECRET, cli, csv_body, serving  # noqa: E402
from bench.common import cpu_seconds, peak_rss_mb, reset_peak, temp_database  # noqa: E402
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


def create_users(base: str, key: str, rows: int, clients: int, deadline: float) -> tuple[float, list[str]]:
    """POST every user, `clients` connections at a time; wall seconds and the failures (status and body)."""
    url = f"{base}/scim/v2/scim/Users"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/scim+json"}
    bodies = [user(i) for i in range(rows)]
    next_row = iter(range(rows))
    lock = threading.Lock()
    failures: list[str] = []
    stop_at = time.monotonic() + deadline

    def run() -> None:
        with requests.Session() as http:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(next_row, None)
                if i is None:
                    return
                resp = http.post(url, json=bodies[i], headers=headers, timeout=30)
                if resp.status_code != 201:
                    with lock:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if time.monotonic() >= stop_at:
        failures.append(f"stopped at the {deadline:.0f} s deadline")
    return seconds, failures


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
        scim_seconds, failures = create_users(base, scim_key, args.rows, args.clients, args.deadline)
        scim_cpu = cpu_seconds(pids) - cpu_before
        rss = peak_rss_mb(pids)
    return {"bulk_seconds": bulk_seconds, "bulk_summary": resp.json()["summary"], "scim_seconds": scim_seconds,
            "scim_cpu": scim_cpu, "failures": failures, "rss": rss, "pids": pids, "counts": stored(url, "scim")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="parallel keep-alive connections of the client")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes of the server")
    parser.add_argument("--deadline", type=float, default=600.0, help="stop creating users after this many s")
    args = parser.parse_args()
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
          f"(server CPU {result['scim_cpu']:.2f} s, {1000 * result['scim_cpu'] / rows:.2f} ms a user)")
    print(f"ratio SCIM users/s ÷ bulk invites/s: {ratio:.2f}")
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
