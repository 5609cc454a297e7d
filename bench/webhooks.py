"""Webhook benchmark: inbound ingest and outbound delivery, each against a baseline measured in the same run.

Inbound: signed p2-format Keycloak LOGIN events POSTed to `idp-bridge serve --no-worker` (gunicorn) on a free
loopback port, versus a bare Flask endpoint that answers 202 under the very same gunicorn settings. Each
ingested event is verified (HMAC), stored raw and queued for processing. Outbound: the worker fans events out
and delivers them, signed (Standard Webhooks), to a loopback receiver, versus a bare loop POSTing the same
signed bodies to that receiver with the same concurrency.

    python bench/webhooks.py [--events 2000] [--rounds 3] [--clients 16] [--deliveries 1000]
                             [--concurrency 8] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-webhook-secret"
TARGET_RATIO = 0.5
GUNICORN = {"workers": 2, "threads": 8, "worker_class": "gthread", "accesslog": "-", "timeout": 60}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def database_url(kind: str, directory: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{directory / 'bench.sqlite3'}", None
    name = f"idpb_bench_wh_{uuid.uuid4().hex[:8]}"
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


def bare_server(port: int) -> None:
    """The baseline: one Flask endpoint that reads the body and answers 202, under the same gunicorn settings."""
    from flask import Flask, Response, request
    from gunicorn.app.base import BaseApplication

    app = Flask("bare")

    @app.post("/webhooks/keycloak")
    def ingest() -> Response:
        request.get_data()
        return Response("", status=202, mimetype="text/plain")

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{port}")
            for key, value in GUNICORN.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Server().run()


def wait_up(url: str, proc: subprocess.Popen[bytes], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def p2_login(user_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"time": int(time.time() * 1000), "realmId": "acme", "uid": str(uuid.uuid4()),
                       "type": "access.LOGIN", "authDetails": {"realmId": "acme", "userId": user_id},
                       "details": {}}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Keycloak-Signature": signature}


def load(url: str, requests_: list[tuple[bytes, dict[str, str]]], clients: int) -> tuple[float, list[float], int]:
    """POST every request from `clients` keep-alive threads; returns (events/s, latencies in ms, failures)."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    chunks = [requests_[i::clients] for i in range(clients)]

    def run(chunk: list[tuple[bytes, dict[str, str]]]) -> None:
        nonlocal failures
        http = requests.Session()
        mine, bad = [], 0
        for body, headers in chunk:
            started = time.perf_counter()
            resp = http.post(url, data=body, headers=headers, timeout=30)
            mine.append((time.perf_counter() - started) * 1000)
            bad += resp.status_code != 202
        with lock:
            latencies.extend(mine)
            failures += bad

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, chunks))
    elapsed = time.perf_counter() - started
    return len(requests_) / elapsed, latencies, failures


def write_config(directory: Path, db_url: str) -> Path:
    config = directory / "idp-bridge.toml"
    config.write_text(f'''database_url = "{db_url}"
instance_dir = "{directory / 'instance'}"
public_url = "https://join.bench"
secret_key = "bench-secret-key-{uuid.uuid4().hex}"

[providers.keycloak]
type = "keycloak"
server_url = "https://kc.bench"
realm = "acme"
client_id = "idp-bridge"
client_secret = "kc-secret"
webhook_secret = "{SECRET}"
''')
    return config


def inbound(directory: Path, db_url: str, events: int, clients: int, rounds: int) -> dict[str, float]:
    """Alternate rounds against the bare endpoint and idp-bridge, so both see the same machine load."""
    config = write_config(directory, db_url)
    env = {**os.environ, "IDP_BRIDGE_CONFIG": str(config)}
    bare_port, our_port = free_port(), free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = subprocess.Popen([sys.executable, "-m", "idp_bridge.cli", "serve", "--no-worker", "--host", "127.0.0.1",
                             "--port", str(our_port), "--workers", str(GUNICORN["workers"]),
                             "--threads", str(GUNICORN["threads"])],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bare_url = f"http://127.0.0.1:{bare_port}/webhooks/keycloak"
    our_url = f"http://127.0.0.1:{our_port}/webhooks/keycloak"
    ratios: list[float] = []
    ours_lat: list[float] = []
    base_lat: list[float] = []
    sent = 0
    try:
        wait_up(f"http://127.0.0.1:{bare_port}/", bare)
        wait_up(f"http://127.0.0.1:{our_port}/healthz", ours)
        warm = [p2_login(str(uuid.uuid4())) for _ in range(200)]
        load(bare_url, warm, clients)
        load(our_url, warm, clients)
        sent += len(warm)
        for n in range(rounds):
            batch = [p2_login(str(uuid.uuid4())) for _ in range(events)]
            base_rate, lat_b, fail_b = load(bare_url, batch, clients)
            rate, lat, fail = load(our_url, batch, clients)
            sent += len(batch)
            ratios.append(rate / base_rate)
            ours_lat += lat
            base_lat += lat_b
            print(f"  round {n + 1}: idp-bridge {rate:6.0f} events/s (p99 {percentile(lat, 99):6.1f} ms, non-202 "
                  f"{fail})  bare {base_rate:6.0f} req/s (p99 {percentile(lat_b, 99):6.1f} ms, non-202 {fail_b})  "
                  f"ratio {rate / base_rate:.2f}")
    finally:
        stop(ours)
        stop(bare)
    engine = create_engine(db_url, poolclass=NullPool)
    from idp_bridge.models import InboundEvent

    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(InboundEvent)).scalar_one()
    engine.dispose()
    ratio = sorted(ratios)[len(ratios) // 2]
    print(f"inbound ingest   median ratio {ratio:.2f} (target >= {TARGET_RATIO}); idp-bridge p50 "
          f"{percentile(ours_lat, 50):.1f} ms p99 {percentile(ours_lat, 99):.1f} ms; bare p50 "
          f"{percentile(base_lat, 50):.1f} ms p99 {percentile(base_lat, 99):.1f} ms; stored {stored}/{sent}")
    return {"ratio": ratio, "p99": percentile(ours_lat, 99)}


class Sink(BaseHTTPRequestHandler):
    """A receiver that accepts every POST with 204."""

    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Sink.lock:
            Sink.count += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def outbound(directory: Path, db_url: str, deliveries: int, concurrency: int) -> dict[str, float]:
    from idp_bridge import audit, events
    from idp_bridge.app import make_worker
    from idp_bridge.bridge import build
    from idp_bridge.db import transaction
    from idp_bridge.inputs import OrgCreate
    from idp_bridge.models import WebhookDelivery
    from idp_bridge.services import orgs, webhooks
    from idp_bridge.settings import load_settings
    from webhooks.outbound.delivery import sign

    settings = load_settings(overrides={"database_url": db_url, "instance_dir": str(directory / "instance-out"),
                                        "secret_key": "bench-" + uuid.uuid4().hex, "providers": {}}, environ={})
    bridge = build(settings)
    from idp_bridge.migrate import upgrade

    upgrade(bridge.engine)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        secret = webhooks.new_secret()
        bodies = [json.dumps({"type": "invite.created", "timestamp": "2026-01-01T00:00:00Z",
                              "data": {"org": "bench", "n": i}}) for i in range(deliveries)]

        def bare(i: int, http: requests.Session) -> None:
            from idp_bridge.models import utcnow

            msg_id = f"msg_{i}"
            now = utcnow()
            http.post(url, data=bodies[i].encode(), timeout=10, headers={
                "content-type": "application/json", "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": sign([secret], msg_id, now,
                                                                                          bodies[i])})

        sessions = [requests.Session() for _ in range(concurrency)]
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: bare(i, sessions[i % concurrency]), range(deliveries)))
        base_rate = deliveries / (time.perf_counter() - started)

        with transaction(bridge.sessions) as session:
            org = orgs.create(session, bridge, audit.CLI, OrgCreate(slug="bench", name="Bench"))
            webhooks.create(session, audit.CLI, org, webhooks.EndpointInput(url=url))
        for start in range(0, deliveries, 500):
            with transaction(bridge.sessions) as session:
                org = orgs.get(session, "bench")
                for _ in range(min(500, deliveries - start)):
                    events.emit(session, org, "invite.created")
        worker = make_worker(bridge, concurrency=concurrency)
        started = time.perf_counter()
        for _ in range(50):
            worker.run_once(time_limit=300)
            with transaction(bridge.sessions) as session:
                done = session.scalar(select(func.count()).select_from(WebhookDelivery)
                                      .where(WebhookDelivery.status == "succeeded"))
            if done == deliveries:
                break
        rate = deliveries / (time.perf_counter() - started)
    finally:
        server.shutdown()
        bridge.close()
    print(f"outbound         idp-bridge {rate:8.0f} deliveries/s (fan-out, sign, POST, log; {done}/{deliveries} "
          "succeeded)")
    print(f"                 bare loop  {base_rate:8.0f} POSTs/s (sign + POST only, same concurrency)")
    print(f"                 ratio {rate / base_rate:.2f}")
    return {"ratio": rate / base_rate, "rate": rate}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-server":
        bare_server(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        url, name = database_url(args.database, directory)
        try:
            print(f"database {args.database}; gunicorn {GUNICORN}; {args.clients} client threads")
            inbound(directory, url, args.events, args.clients, args.rounds)
            out_url, out_name = database_url(args.database, directory / "out") if args.database == "postgres" \
                else (f"sqlite:///{directory / 'outbound.sqlite3'}", None)
            try:
                outbound(directory, out_url, args.deliveries, args.concurrency)
            finally:
                drop(out_name)
        finally:
            drop(name)


if __name__ == "__main__":
    main()
