"""Helpers the benchmarks share: a throwaway database, free ports, server processes and what /proc says of them.

The benchmarks put the project root on sys.path and import this as `bench.common`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

PG_ADMIN_URL = os.environ.get("IDP_BRIDGE_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def temp_database(kind: str, directory: Path, name: str) -> Iterator[str]:
    """The URL of a new, empty database: for "sqlite" a file `name`.sqlite3 in directory, for "postgres" a
    database idpb_bench_`name`_<random> created on the PG_ADMIN_URL server and dropped (WITH (FORCE)) afterwards."""
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{directory / (name + '.sqlite3')}"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    db = f"idpb_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    finally:
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 to 100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def process_tree(root: int) -> list[int]:
    """root and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def status_kb(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...); 0 when the process has none."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pids: list[int]) -> bool:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs resets the peak RSS); whether it worked for all."""
    done = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            done = False
    return done


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used (all their threads, from /proc/PID/stat), in seconds."""
    total = 0
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pids: list[int]) -> dict[int, float]:
    """Peak RSS (VmHWM) in MB of each process that still exists."""
    peaks = {}
    for pid in pids:
        with suppress(OSError):
            peaks[pid] = status_kb(pid, "VmHWM") / 1024
    return peaks


def wait_ready(url: str, proc: subprocess.Popen[bytes], seconds: float = 60.0, *, any_status: bool = False,
               log: Path | None = None) -> None:
    """Poll GET url until it answers 200 (any HTTP answer with any_status). If the server exits or does not
    answer in time, stop it and exit, with the tail of its log file when there is one."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            problem = f"server exited with {proc.returncode}"
            break
        with suppress(requests.RequestException):
            if requests.get(url, timeout=5).status_code == 200 or any_status:
                return
        if time.monotonic() > deadline:
            problem = f"{url} did not come up in {seconds:.0f} s"
            break
        time.sleep(0.1)
    stop_server(proc)
    if log is not None and log.exists():
        problem += ":\n" + log.read_text(errors="replace")[-3000:]
    raise SystemExit(problem)


def stop_server(proc: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within `seconds`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
