"""Webhook benchmark: inbound ingest and outbound delivery, each against a baseline measured in the same run.

Inbound: signed p2-format Keycloak LOGIN events POSTed to `idp-bridge serve --no-worker` (gunicorn) on a free
loopback port, versus a bare Flask endpoint that reads the body and answers 202 under the very same gunicorn
settings (those `serve` uses: gthread workers, keep-alive, one SO_REUSEPORT socket per worker so the kernel
spreads the connections, the same access-log choice; off by default, `--access-log` for on). Each ingested event is
verified (HMAC), stored raw and queued for processing before its 202. Rounds alternate between the two servers
so both see the same machine load. The load generator is one asyncio process holding `--clients` keep-alive
HTTP/1.1 connections with every request pre-encoded, so it takes little CPU from the servers (a thread per
client driving `requests` burns most of a core of the two). Besides events/s and latency, the CPU time each
server's processes used per request (from /proc) is reported: that figure holds on a busy machine where
wall-clock rates do not. Outbound: the worker fans events out and delivers them, signed (Standard Webhooks),
to a loopback receiver in a process of its own, versus a bare loop POSTing the same signed bodies to it with the same
concurrency over pooled keep-alive connections.

    python bench/webhooks.py [--events 2000] [--rounds 3] [--clients 16] [--workers 2] [--threads 8]
                             [--access-log] [--deliveries 1000] [--concurrency 8] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, func, select  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.common import (  # noqa: E402
    cpu_seconds,
    free_port,
    peak_rss_mb,
    percentile,
    process_tree,
    stop_server,
    temp_database,
    wait_ready,
)

SECRET = "bench-webhook-secret"
TARGET_RATIO = 0.5
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0


def gunicorn_settings(workers: int, threads: int, access_log: bool) -> dict[str, Any]:
    """What `idp-bridge serve` sets (idp_bridge/cli.py), so the bare baseline runs under the same."""
    return {"workers": workers, "threads": threads, "worker_class": "gthread", "reuse_port": True,
            "accesslog": "-" if access_log else None, "graceful_timeout": 10, "timeout": 60}


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bare_server(port: int, settings: dict[str, Any]) -> None:
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
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Server().run()


def p2_login(user_id: str) -> bytes:
    """One signed p2-format LOGIN, as the raw HTTP/1.1 request that carries it."""
    body = json.dumps({"time": int(time.time() * 1000), "realmId": "acme", "uid": str(uuid.uuid4()),
                       "type": "access.LOGIN", "authDetails": {"realmId": "acme", "userId": user_id},
                       "details": {}}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return (f"POST /webhooks/keycloak HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"User-Agent: Apache-HttpClient/4.5.14 (Java/17)\r\nX-Keycloak-Signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _connection(port: int, batch: list[bytes], latencies: list[float], failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in batch:
            started = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            if head[9:12] != b"202":
                failures.append(int(head[9:12]))
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def load(port: int, batch: list[bytes], clients: int) -> dict[str, Any]:
    """Send every request over `clients` keep-alive connections, one request in flight on each."""
    latencies: list[float] = []
    failures: list[int] = []

    async def run() -> None:
        await asyncio.gather(*(_connection(port, batch[i::clients], latencies, failures) for i in range(clients)))

    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    return {"rate": len(batch) / elapsed, "latencies": latencies, "failures": len(failures),
            "client_cpu": (time.process_time() - cpu) / len(batch)}


def write_config(directory: Path, db_url: str, access_log: bool) -> Path:
    config = directory / "idp-bridge.toml"
    config.write_text(f'''database_url = "{db_url}"
instance_dir = "{directory / 'instance'}"
public_url = "https://join.bench"
secret_key = "bench-secret-key-{uuid.uuid4().hex}"
access_log = {str(access_log).lower()}
mail_transport = "file"

[providers.keycloak]
type = "keycloak"
server_url = "https://kc.bench"
realm = "acme"
client_id = "idp-bridge"
client_secret = "kc-secret"
webhook_secret = "{SECRET}"
''')
    return config


class Server:
    """A server subprocess, measured by the CPU time of its whole process tree."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, probe: str) -> None:
        self.port = port
        # BENCH_DEBUG=1 shows the servers' own logs (startup errors, tracebacks).
        quiet = None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, env=env, stdout=quiet, stderr=quiet)
        # The idp-bridge server is up when /healthz answers 200; the bare endpoints when they answer at all.
        wait_ready(f"http://127.0.0.1:{port}{probe}", self.proc, any_status=probe != "/healthz")
        self.pids = process_tree(self.proc.pid)

    def measure(self, batch: list[bytes], clients: int) -> dict[str, Any]:
        cpu = cpu_seconds(self.pids)
        result = load(self.port, batch, clients)
        result["server_cpu"] = (cpu_seconds(self.pids) - cpu) / len(batch)
        return result


def inbound(directory: Path, db_url: str, args: argparse.Namespace) -> dict[str, float]:
    """Alternate rounds against the bare endpoint and idp-bridge, so both see the same machine load."""
    settings = gunicorn_settings(args.workers, args.threads, args.access_log)
    env = {**os.environ, "IDP_BRIDGE_CONFIG": str(write_config(directory, db_url, args.access_log))}
    bare_port, our_port = free_port(), free_port()
    servers: list[Server] = []
    rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
    sent = 0
    try:
        bare = Server([sys.executable, __file__, "--bare-server", str(bare_port), json.dumps(settings)], env,
                      bare_port, "/")
        servers.append(bare)
        ours = Server([sys.executable, "-m", "idp_bridge.cli", "serve", "--no-worker", "--host", "127.0.0.1",
                       "--port", str(our_port), "--workers", str(args.workers), "--threads", str(args.threads)],
                      env, our_port, "/healthz")
        servers.append(ours)
        warm = [p2_login(str(uuid.uuid4())) for _ in range(300)]
        bare.measure(warm, args.clients)
        ours.measure(warm, args.clients)
        sent += len(warm)
        for n in range(args.rounds):
            batch = [p2_login(str(uuid.uuid4())) for _ in range(args.events)]
            base = bare.measure(batch, args.clients)
            our = ours.measure(batch, args.clients)
            sent += len(batch)
            rounds.append((our, base))
            print(f"  round {n + 1}: idp-bridge {our['rate']:5.0f} events/s p99 "
                  f"{percentile(our['latencies'], 99):5.1f} ms {our['server_cpu'] * 1e6:5.0f} us CPU/event "
                  f"(non-202 {our['failures']}) | bare {base['rate']:5.0f} req/s p99 "
                  f"{percentile(base['latencies'], 99):5.1f} ms {base['server_cpu'] * 1e6:5.0f} us CPU/req "
                  f"| ratio {our['rate'] / base['rate']:.2f} | load {load_average()}", flush=True)
        peak_ours = max(peak_rss_mb(ours.pids).values(), default=0.0)
        peak_bare = max(peak_rss_mb(bare.pids).values(), default=0.0)
    finally:
        for server in servers:
            stop_server(server.proc)
    engine = create_engine(db_url, poolclass=NullPool)
    from idp_bridge.models import InboundEvent

    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(InboundEvent)).scalar_one()
    engine.dispose()
    ratio = median([our["rate"] / base["rate"] for our, base in rounds])
    rate = median([our["rate"] for our, _ in rounds])
    ours_lat = [x for our, _ in rounds for x in our["latencies"]]
    base_lat = [x for _, base in rounds for x in base["latencies"]]
    our_cpu = median([our["server_cpu"] for our, _ in rounds])
    base_cpu = median([base["server_cpu"] for _, base in rounds])
    client_cpu = median([our["client_cpu"] for our, _ in rounds])
    p99 = percentile(ours_lat, 99)
    met = rate >= TARGET_RATE and p99 <= TARGET_P99_MS
    print(f"inbound ingest   idp-bridge {rate:.0f} events/s, p50 {percentile(ours_lat, 50):.1f} ms, p99 {p99:.1f} ms, "
          f"{our_cpu * 1e6:.0f} us server CPU/event, peak RSS {peak_ours:.0f} MB; stored {stored}/{sent}")
    print(f"                 bare       p50 {percentile(base_lat, 50):.1f} ms, p99 {percentile(base_lat, 99):.1f} ms, "
          f"{base_cpu * 1e6:.0f} us server CPU/req, peak RSS {peak_bare:.0f} MB; load generator "
          f"{client_cpu * 1e6:.0f} us CPU/req")
    print(f"                 median ratio {ratio:.2f} (target >= {TARGET_RATIO}); CPU/request bare : idp-bridge "
          f"= {base_cpu / our_cpu:.2f}; {TARGET_RATE:.0f} events/s with p99 <= {TARGET_P99_MS:.0f} ms "
          f"{'met' if met else 'not met'} (load {load_average()})")
    return {"ratio": ratio, "rate": rate, "p99": p99}


class Sink(BaseHTTPRequestHandler):
    """A receiver that accepts every POST with 204, run in a process of its own (`--sink-server PORT`)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients would stall ~40 ms each.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def sink_server(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    server.daemon_threads = True
    server.serve_forever()


def outbound(directory: Path, db_url: str, deliveries: int, concurrency: int) -> dict[str, float]:
    """The worker delivering `deliveries` events versus a bare sign+POST loop, both to a receiver process."""
    from idp_bridge import audit, events
    from idp_bridge.bootstrap import build, make_worker
    from idp_bridge.inputs import OrgCreate
    from idp_bridge.migrate import upgrade
    from idp_bridge.models import WebhookDelivery, utcnow
    from idp_bridge.services import orgs, webhooks
    from idp_bridge.settings import load_settings
    from idp_bridge.store.db import transaction
    from webhooks.outbound.delivery import sign

    settings = load_settings(overrides={"database_url": db_url, "instance_dir": str(directory / "instance-out"),
                                        "secret_key": "bench-" + uuid.uuid4().hex, "providers": {},
                                        "webhook_allow_networks": ["127.0.0.0/8"]}, environ={})
    bridge = build(settings)
    upgrade(bridge.engine)
    port = free_port()
    sink = Server([sys.executable, __file__, "--sink-server", str(port)], dict(os.environ), port, "/")
    url = f"http://127.0.0.1:{port}/hooks"
    done = 0
    try:
        secret = webhooks.new_secret()
        bodies = [json.dumps({"type": "invite.created", "timestamp": "2026-01-01T00:00:00Z",
                              "data": {"org": "bench", "n": i}}) for i in range(deliveries)]

        def bare(i: int, http: requests.Session) -> None:
            msg_id = f"msg_{i}"
            now = utcnow()
            http.post(url, data=bodies[i].encode(), timeout=10, headers={
                "content-type": "application/json", "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": sign([secret], msg_id, now,
                                                                                          bodies[i])})

        sessions = [requests.Session() for _ in range(concurrency)]
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: bare(i, sessions[i % concurrency]), range(deliveries)))
        base_rate = deliveries / (time.perf_counter() - started)
        base_cpu = (time.process_time() - cpu) / deliveries

        with transaction(bridge.sessions) as session:
            org = orgs.create(session, bridge, audit.CLI, OrgCreate(slug="bench", name="Bench"))
            webhooks.create(session, audit.CLI, org, webhooks.EndpointInput(url=url), bridge.settings.secret_key,
                            bridge.destinations)
        for start in range(0, deliveries, 500):
            with transaction(bridge.sessions) as session:
                org = orgs.get(session, "bench")
                for _ in range(min(500, deliveries - start)):
                    events.emit(session, org, "invite.created")
        worker = make_worker(bridge, concurrency=concurrency)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(50):
            worker.run_once(time_limit=300)
            with transaction(bridge.sessions) as session:
                done = session.scalar(select(func.count()).select_from(WebhookDelivery)
                                      .where(WebhookDelivery.status == "succeeded")) or 0
            if done == deliveries:
                break
        rate = deliveries / (time.perf_counter() - started)
        our_cpu = (time.process_time() - cpu) / deliveries
    finally:
        stop_server(sink.proc)
        bridge.close()
    print(f"outbound         idp-bridge {rate:6.0f} deliveries/s, {our_cpu * 1e6:5.0f} us CPU/delivery (fan-out, "
          f"sign, POST, log; {done}/{deliveries} succeeded)")
    print(f"                 bare loop  {base_rate:6.0f} POSTs/s,      {base_cpu * 1e6:5.0f} us CPU/POST (sign + POST "
          f"only, same concurrency)")
    print(f"                 ratio {rate / base_rate:.2f}; CPU/delivery bare : idp-bridge = {base_cpu / our_cpu:.2f} "
          f"(load {load_average()})")
    return {"ratio": rate / base_rate, "rate": rate}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-server":
        bare_server(int(sys.argv[2]), json.loads(sys.argv[3]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--sink-server":
        sink_server(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections, one request in flight each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (both servers)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (both servers)")
    parser.add_argument("--access-log", action="store_true", help="log every request, as `serve` does by default")
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--only", choices=["inbound", "outbound"])
    args = parser.parse_args()
    print(f"database {args.database}; gunicorn {gunicorn_settings(args.workers, args.threads, args.access_log)}; "
          f"{args.clients} keep-alive connections; load {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if args.only != "outbound":
            with temp_database(args.database, directory / "in", "wh") as url:
                inbound(directory, url, args)
        if args.only != "inbound":
            with temp_database(args.database, directory / "out", "wh") as url:
                outbound(directory, url, args.deliveries, args.concurrency)


if __name__ == "__main__":
    main()
