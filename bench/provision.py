"""Keycloak provisioning benchmark: N invites provisioned by the real worker against a loopback fake.

The fake Keycloak (tests/fakes) runs in its own process, answering every call after ~5 ms. The worker
process provisions N invites (search by email, create with required actions, execute-actions email);
then, in the same run against the same server, a bare loop makes the same HTTP calls at the same
concurrency with keep-alive http.client connections: the machine's limit. Prints users/s of both, the
ratio, and the worker process's peak RSS. `--faults` makes 30 % of calls answer 503 or time out.

    python bench/provision.py [--users 10000] [--concurrency 16] [--faults] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REALM, CLIENT_ID, CLIENT_SECRET = "acme", "idp-bridge", "kc-secret"
LATENCY_S = 0.005
TARGET_USERS_PER_S = 250.0
TARGET_RSS_MB = 150.0


def serve_fake(faults: bool) -> None:
    """Child process: serve the fake realm on a loopback port until stdin closes."""
    from tests.fakes import FakeKeycloak, FakeRequest, FaultPlan

    class IndexedKeycloak(FakeKeycloak):
        """The fake with email and username indexes, as Keycloak's database has: linear scans in search and in
        the create's uniqueness check would make the fake, not the clients, the bottleneck past a few
        thousand users."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.by_email: dict[str, str] = {}
            self.by_username: dict[str, str] = {}

        def _filtered(self, request: FakeRequest) -> list[dict[str, Any]]:
            email, exact = request.arg("email"), (request.arg("exact") or "").lower() == "true"
            if not email or not exact or request.arg("search") or request.arg("username"):
                return super()._filtered(request)
            user = self.users.get(self.by_email.get(email.lower(), ""))
            return [user] if user is not None and user["email"] == email.lower() else []

        def _conflict(self, username: str, email: str | None, except_id: str | None) -> Any:
            if except_id is not None:
                return super()._conflict(username, email, except_id)
            # Same answers as the scan: the username first, then the email unless duplicates are allowed.
            taken = [self.users[i] for i in (self.by_username.get(username), self.by_email.get(email or ""))
                     if i in self.users]
            return super()._conflict(username, email, None) if taken else None

        def _create_user(self, request: FakeRequest, realm: str) -> Any:
            answer = super()._create_user(request, realm)
            if answer.status == 201:
                user = self.users[answer.headers["Location"].rsplit("/", 1)[-1]]
                self.by_email[str(user["email"])] = self.by_username[str(user["username"])] = str(user["id"])
            return answer

    plan = FaultPlan(p_503=0.15, p_timeout=0.15, hang_s=0.3, retry_after=0, seed=1) if faults else None
    fake = IndexedKeycloak(realm=REALM, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, faults=plan)
    with fake.serve(latency_s=LATENCY_S) as url:
        print(url, flush=True)
        sys.stdin.read()
        print(json.dumps({"users": len(fake.users), "distinct_emails": len({u["email"] for u in fake.users.values()}),
                          "action_emails": len(fake.action_emails), "faults": len(fake.faults.injected)}),
              flush=True)


def run_worker(url: str, users: int, concurrency: int, db_url: str, faults: bool) -> None:
    """Child process: create N invites, then time the worker provisioning them all."""
    from sqlalchemy import func, select

    from idp_bridge import audit
    from idp_bridge.bootstrap import build, make_worker
    from idp_bridge.inputs import InviteInput, OrgCreate
    from idp_bridge.jobs import QUEUED, RUNNING
    from idp_bridge.migrate import upgrade
    from idp_bridge.models import Invite, Job
    from idp_bridge.services import invites, orgs
    from idp_bridge.settings import load_settings
    from idp_bridge.store.db import transaction

    instance = tempfile.mkdtemp(prefix="bench-prov-instance-")
    settings = load_settings(environ={}, overrides={
        "instance_dir": instance, "database_url": db_url, "public_url": "https://join.test",
        "secret_key": "bench-secret-" + "x" * 32, "job_max_attempts": 60,
        "job_backoff_base_seconds": 0.05, "job_backoff_max_seconds": 0.5,
        "providers": {"keycloak": {"type": "keycloak", "server_url": url, "realm": REALM, "client_id": CLIENT_ID,
                                   "client_secret": CLIENT_SECRET, "max_concurrency": concurrency,
                                   "timeout_seconds": 0.25 if faults else 10}}})
    bridge = build(settings)
    upgrade(bridge.engine)
    with transaction(bridge.sessions) as session:
        org = orgs.create(session, bridge, audit.CLI, OrgCreate(slug="acme", name="Acme", member_limit=users + 10))
    for start in range(0, users, 500):
        with transaction(bridge.sessions) as session:
            org = orgs.get(session, "acme")
            for i in range(start, min(users, start + 500)):
                invites.create(session, bridge, audit.CLI, org, InviteInput(identifier=f"user{i}@bench.example.com",
                                                                            provider="keycloak"))
    worker = make_worker(bridge, concurrency=concurrency)
    began, cpu = time.perf_counter(), time.process_time()
    while True:
        worker.run_once(time_limit=600)
        with bridge.sessions() as session:
            live = session.scalar(select(func.count()).select_from(Job).where(Job.status.in_([QUEUED, RUNNING])))
        if not live:
            break
        time.sleep(0.02)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    with bridge.sessions() as session:
        done = session.scalar(select(func.count()).select_from(Invite).where(Invite.provisioning_state == "done"))
        bound = session.scalar(select(func.count(func.distinct(Invite.idp_user_id))))
        failed = session.scalar(select(func.count()).select_from(Invite).where(Invite.provisioning_state == "failed"))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "users_per_s": users / elapsed, "done": done, "distinct_accounts": bound,
                      "failed": failed, "peak_rss_mb": rss_mb, "cpu_ms_per_user": cpu * 1000 / users}),
          flush=True)


def bare_loop(url: str, users: int, concurrency: int) -> None:
    """Child process: the same three calls per user on keep-alive connections, no database, no library."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    form = urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    conn = http.client.HTTPConnection(host, parts.port)
    conn.request("POST", f"/realms/{REALM}/protocol/openid-connect/token", form,
                 {"Content-Type": "application/x-www-form-urlencoded"})
    token = json.loads(conn.getresponse().read())["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    admin = f"/admin/realms/{REALM}/users"
    counter = iter(range(users))
    lock = threading.Lock()

    def run() -> None:
        c = http.client.HTTPConnection(host, parts.port, timeout=5)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            email = f"bare{i}@bench.example.com"
            c.request("GET", f"{admin}?{urlencode({'email': email, 'exact': 'true'})}", headers=headers)
            c.getresponse().read()
            body = json.dumps({"username": email, "email": email, "enabled": True,
                               "requiredActions": ["UPDATE_PASSWORD", "VERIFY_EMAIL"]})
            c.request("POST", admin, body, headers)
            r = c.getresponse()
            r.read()
            user_id = r.getheader("Location", "").rsplit("/", 1)[-1]
            query = urlencode({"client_id": CLIENT_ID, "redirect_uri": "https://join.test/invite/x",
                               "lifespan": 3600})
            c.request("PUT", f"{admin}/{user_id}/execute-actions-email?{query}",
                      json.dumps(["UPDATE_PASSWORD", "VERIFY_EMAIL"]), headers)
            c.getresponse().read()

    began, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(json.dumps({"seconds": elapsed, "users_per_s": users / elapsed, "cpu_ms_per_user": cpu * 1000 / users}),
          flush=True)


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=3600,
                         cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--faults", action="store_true", help="30 %% of calls answer 503 or time out")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--phase", choices=["fake", "worker", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "fake":
        return serve_fake(args.faults)
    if args.phase == "worker":
        return run_worker(args.url, args.users, args.concurrency, args.db_url, args.faults)
    if args.phase == "bare":
        return bare_loop(args.url, args.users, args.concurrency)
    # Imported here, not at the top: the phase processes (fake, worker, bare loop) need none of it.
    from bench.common import temp_database

    fake_args = [sys.executable, __file__, "--phase", "fake"] + (["--faults"] if args.faults else [])
    # The fake logs every connection a timed-out client drops; that noise is not the result.
    fake = subprocess.Popen(fake_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=ROOT)
    assert fake.stdout is not None and fake.stdin is not None
    url = fake.stdout.readline().strip()
    try:
        with (tempfile.TemporaryDirectory(prefix="bench-prov-") as tmp,
              temp_database(args.database, Path(tmp), "prov") as db_url):
            common = ["--users", str(args.users), "--concurrency", str(args.concurrency), "--url", url]
            ours = child("--phase", "worker", *common, "--db-url", db_url, *(["--faults"] if args.faults else []))
            bare = child("--phase", "bare", *common) if not args.faults else None
    finally:
        fake.stdin.close()
        state = json.loads(fake.stdout.readline() or "{}")
        fake.wait(timeout=30)
    mode = "30 % faults (503 / 0.3 s timeouts)" if args.faults else "no faults"
    print(f"provisioning {args.users} Keycloak users, {mode}, concurrency {args.concurrency}, {args.database}, "
          f"fake latency {LATENCY_S * 1000:.0f} ms")
    print(f"  idp-bridge worker : {ours['users_per_s']:8.1f} users/s  ({ours['seconds']:.1f} s, "
          f"{ours['cpu_ms_per_user']:.1f} ms CPU per user)")
    if bare is not None:
        print(f"  bare keep-alive   : {bare['users_per_s']:8.1f} users/s  ({bare['seconds']:.1f} s, "
              f"{bare['cpu_ms_per_user']:.1f} ms CPU per user; same calls, same concurrency, no DB)")
        print(f"  ratio             : {ours['users_per_s'] / bare['users_per_s']:8.2f}")
    print(f"  peak worker RSS   : {ours['peak_rss_mb']:8.1f} MB  (target < {TARGET_RSS_MB:.0f})")
    bare_users = args.users if bare is not None else 0
    lost = args.users - int(ours["done"])
    duplicates = int(state.get("users", 0)) - bare_users - int(ours["distinct_accounts"])
    print(f"  invites provisioned {ours['done']}, failed {ours['failed']}, lost {lost}, "
          f"accounts in the realm {state.get('users')} (duplicates {duplicates}), faults injected "
          f"{state.get('faults')}")
    print(f"  machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.faults:
        print(f"  with faults the figure to check is lost 0 and duplicates 0: "
              f"{'met' if lost == 0 and duplicates == 0 else 'NOT met'}")
    else:
        print(f"  target >= {TARGET_USERS_PER_S:.0f} users/s without faults: "
              f"{'met' if ours['users_per_s'] >= TARGET_USERS_PER_S else 'NOT met'}")


if __name__ == "__main__":
    main()
