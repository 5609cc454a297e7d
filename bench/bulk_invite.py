"""Bulk invite benchmark: 10,000 CSV rows over HTTP against a raw Core executemany baseline, same run.

Starts the real service (`idp-bridge serve --no-worker`) on a free loopback port with a fresh database,
imports the rows through POST /api/v1/orgs/{org}/invites/bulk, checks what was stored, exports the
members as CSV, and reads the peak RSS of every server process from /proc. Then, on another fresh
database, it times a plain SQLAlchemy Core executemany of the same rows into the same tables.

    python bench/bulk_invite.py [--rows 10000] [--database sqlite|postgres] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import Engine, func, insert, select  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.common import (  # noqa: E402
    cpu_seconds,
    free_port,
    peak_rss_mb,
    process_tree,
    reset_peak,
    status_kb,
    stop_server,
    temp_database,
    wait_ready,
)
from idp_bridge.migrate import upgrade  # noqa: E402
from idp_bridge.models import AuditEvent, Event, Invite, InviteLink, Job, Member, Organization, utcnow  # noqa: E402
from idp_bridge.security import new_token, sealer, token_hash  # noqa: E402
from idp_bridge.store.db import make_engine  # noqa: E402

SECRET = "bench-secret-key-" + "x" * 32
TARGET_SECONDS = 3.0
TARGET_RATIO = 0.25
TARGET_RSS_MB = 150.0
CHUNK = 1000


def csv_body(rows: int) -> bytes:
    lines = ["identifier,name,role,department,site"]
    lines += [f"user{i:05d}@example.com,User {i},MEMBER,dept-{i % 17},site-{i % 5}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "idp_bridge.cli", *args], env=env, cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout.strip()


def stored_counts(url: str, slug: str) -> dict[str, int]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            org_id = conn.scalar(select(Organization.id).where(Organization.slug == slug))
            counts = {}
            for name, model in (("members", Member), ("invites", Invite), ("jobs", Job), ("events", Event)):
                counts[name] = int(conn.scalar(select(func.count()).select_from(model).where(
                    model.org_id == org_id)) or 0)
            counts["audit"] = int(conn.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.org_id == org_id, AuditEvent.action == "invite.created")) or 0)
            counts["invite_links"] = int(conn.scalar(select(func.count()).select_from(InviteLink).join(
                Invite, Invite.id == InviteLink.invite_id).where(Invite.org_id == org_id)) or 0)
            return counts
    finally:
        engine.dispose()


@contextmanager
def serving(args: argparse.Namespace, env: dict[str, str], work: Path) -> Iterator[tuple[str, list[int]]]:
    """The real server on a free loopback port: its base URL and process ids (gunicorn master and workers)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "idp_bridge.cli", "serve", "--no-worker", "--host",
                               "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
                              env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/healthz", server)
        yield base, process_tree(server.pid)
    finally:
        stop_server(server)


def run_service(args: argparse.Namespace, work: Path, url: str, body: bytes) -> dict[str, Any]:
    """Import over HTTP into a fresh service; return timings, counts and peak RSS."""
    env = {**os.environ, "IDP_BRIDGE_INSTANCE_DIR": str(work / "instance"), "IDP_BRIDGE_DATABASE_URL": url,
           "IDP_BRIDGE_SECRET_KEY": SECRET, "IDP_BRIDGE_PUBLIC_URL": "https://join.bench",
           "IDP_BRIDGE_MAIL_TRANSPORT": "file"}
    cli(env, work, "org", "create", "bench", "--name", "Bench", "--member-limit", str(args.rows * 2))
    key = cli(env, work, "api-key", "create", "--org", "bench", "--permission", "users:invite",
              "--permission", "users:read").splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    with serving(args, env, work) as (base, pids):
        reset_peak(pids)
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        resp = requests.post(f"{base}/api/v1/orgs/bench/invites/bulk", data=body,
                             headers={**headers, "Content-Type": "text/csv"}, timeout=300)
        seconds = time.perf_counter() - started
        import_cpu = cpu_seconds(pids) - cpu_before
        import_rss = peak_rss_mb(pids)
    if resp.status_code != 200:
        raise SystemExit(f"import failed: {resp.status_code} {resp.text[:500]}")
    summary = resp.json()["summary"]
    # A fresh server for the export, so its peak RSS is the export's own.
    with serving(args, env, work) as (base, export_pids):
        idle_rss = {pid: status_kb(pid, "VmRSS") / 1024 for pid in export_pids}
        reset_peak(export_pids)
        started = time.perf_counter()
        exported = 0
        with requests.get(f"{base}/api/v1/orgs/bench/members", headers={**headers, "Accept": "text/csv"},
                          stream=True, timeout=300) as export:
            export.raise_for_status()
            for _ in export.iter_lines():
                exported += 1
        export_seconds = time.perf_counter() - started
        export_rss = peak_rss_mb(export_pids)
    return {"seconds": seconds, "cpu": import_cpu, "summary": summary, "import_rss": import_rss,
            "export_rss": export_rss,
            "export_rows": exported - 1, "idle_rss": idle_rss, "export_seconds": export_seconds, "pids": pids,
            "counts": stored_counts(url, "bench")}


def baseline_rows(org_id: str, rows: int) -> dict[str, list[dict[str, Any]]]:
    """The same rows the import stores, as plain dicts built before the clock starts."""
    now = utcnow()
    seal = sealer(SECRET)
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in ("members", "invites", "links", "jobs", "events",
                                                             "audit")}
    for i in range(rows):
        identifier = f"user{i:05d}@example.com"
        member_id, invite_id, token = str(uuid.uuid4()), str(uuid.uuid4()), new_token()
        attrs = {"department": f"dept-{i % 17}", "site": f"site-{i % 5}"}
        out["members"].append({"id": member_id, "org_id": org_id, "identifier": identifier,
                               "identifier_key": identifier, "email": identifier, "name": f"User {i}",
                               "role": "MEMBER", "status": "INVITED", "provider": "any", "attributes": attrs,
                               "event_seq": 1, "created_at": now, "updated_at": now})
        out["invites"].append({"id": invite_id, "org_id": org_id, "member_id": member_id, "identifier": identifier,
                               "identifier_key": identifier, "notification_email": None, "provider": "any",
                               "tenant_id": None, "hosted_domain": None, "keycloak_idp": None, "role": "MEMBER",
                               "name": f"User {i}", "attributes": attrs, "status": "PENDING",
                               "expires_at": now + timedelta(hours=336), "ttl_hours": 336, "created_by": "bench",
                               "send_email": True, "send_count": 1, "last_sent_at": now, "code_hash": None,
                               "provisioning_state": "none", "created_at": now, "updated_at": now})
        out["links"].append({"token_hash": token_hash(token), "invite_id": invite_id, "created_at": now})
        out["jobs"].append({"id": str(uuid.uuid4()), "kind": "send_invite_email", "org_id": org_id,
                            "payload": {"invite_id": invite_id, "link": seal(token), "inviter": "bench"},
                            "dedupe_key": None, "status": "queued", "attempts": 0, "max_attempts": 8,
                            "run_after": now, "created_at": now})
        out["events"].append({"id": "msg_" + uuid.uuid4().hex, "org_id": org_id, "type": "invite.created",
                              "member_id": member_id, "invite_id": invite_id, "sequence": 1, "dispatched": False,
                              "created_at": now, "payload": {"type": "invite.created", "data": {
                                  "org": "bench", "member_id": member_id, "invite_id": invite_id}}})
        out["audit"].append({"id": str(uuid.uuid4()), "org_id": org_id, "actor": "bench",
                             "action": "invite.created", "target_type": "invite", "target_id": invite_id,
                             "ip": None, "at": now, "details": {"identifier": identifier}})
    return out


TABLES = {"members": Member, "invites": Invite, "links": InviteLink, "jobs": Job, "events": Event,
          "audit": AuditEvent}


def time_baseline(engine: Engine, rows: dict[str, list[dict[str, Any]]],
                  tables: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds for one transaction of chunked Core executemany into the given tables."""
    statements = {name: insert(TABLES[name].__table__) for name in tables}  # type: ignore[arg-type]
    count = len(rows["members"])
    started, cpu = time.perf_counter(), time.process_time()
    with engine.begin() as conn:
        for start in range(0, count, CHUNK):
            for name in tables:
                conn.execute(statements[name], rows[name][start:start + CHUNK])
    return time.perf_counter() - started, time.process_time() - cpu


def run_baseline(args: argparse.Namespace, work: Path, name: str, tables: list[str]) -> tuple[float, float]:
    with temp_database(args.database, work, name) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            org_id = str(uuid.uuid4())
            with engine.begin() as conn:
                conn.execute(insert(Organization.__table__).values(  # type: ignore[arg-type]
                    id=org_id, slug="bench", name="Bench", member_limit=args.rows * 2))
            return time_baseline(engine, baseline_rows(org_id, args.rows), tables)
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes of the server")
    args = parser.parse_args()
    body = csv_body(args.rows)
    with tempfile.TemporaryDirectory(prefix="idpb-bench-") as tmp:
        work = Path(tmp)
        with temp_database(args.database, work, "service") as url:
            service = run_service(args, work, url, body)
        base3, base3_cpu = run_baseline(args, work, "baseline3", ["members", "invites", "jobs"])
        base6, base6_cpu = run_baseline(args, work, "baseline6", list(TABLES))
    rows = args.rows
    http_rate = rows / service["seconds"]
    rate3, rate6 = rows / base3, rows / base6
    ratio3, ratio6 = http_rate / rate3, http_rate / rate6
    import_peak = max(service["import_rss"].values())
    export_peak = max(service["export_rss"].values())
    print(f"database: {args.database}; server: idp-bridge serve --no-worker --workers {args.workers} "
          f"(processes {service['pids']})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"HTTP CSV import of {rows} rows: {service['seconds']:.2f} s = {http_rate:,.0f} rows/s "
          f"(server CPU {service['cpu']:.2f} s); answer {service['summary']}")
    print(f"stored: {service['counts']}")
    print(f"baseline Core executemany, members+invites+jobs: {base3:.2f} s = {rate3:,.0f} rows/s "
          f"(client CPU {base3_cpu:.2f} s)")
    print(f"baseline Core executemany, all 6 tables the import writes: {base6:.2f} s = {rate6:,.0f} rows/s "
          f"(client CPU {base6_cpu:.2f} s)")
    print(f"ratio import/baseline: {ratio3:.2f} (3 tables), {ratio6:.2f} (6 tables)")
    print("server peak RSS during import (MB): "
          + ", ".join(f"pid {p}: {mb:.1f}" for p, mb in service["import_rss"].items()))
    print(f"CSV export of {service['export_rows']} members: {service['export_seconds']:.2f} s; server RSS before "
          "→ peak (MB): " + ", ".join(f"pid {p}: {service['idle_rss'][p]:.1f} → {mb:.1f}"
                                      for p, mb in service["export_rss"].items()))
    checks = {
        f"import < {TARGET_SECONDS} s": service["seconds"] < TARGET_SECONDS,
        f"ratio >= {TARGET_RATIO} (3 tables)": ratio3 >= TARGET_RATIO,
        f"peak RSS < {TARGET_RSS_MB} MB": max(import_peak, export_peak) < TARGET_RSS_MB,
        "all rows stored": all(service["counts"][k] == rows for k in ("members", "invites", "jobs",
                                                                       "invite_links", "events", "audit")),
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
