"""A concurrent writer for tests: another connection committing small transactions to the test database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

MAX_COMMITS = 200_000
MAX_SECONDS = 600.0
# Between commits, so the app's writers, which wait on SQLite's busy handler (it polls), get their turns too.
PAUSE_SECONDS = 0.002


@dataclass
class Hammer:
    """What the writer did: commits made, and the errors it met (it stops at the first)."""

    commits: int = 0
    errors: list[str] = field(default_factory=list)


@contextmanager
def concurrent_writer(database_url: str, *, max_commits: int = MAX_COMMITS, max_seconds: float = MAX_SECONDS,
                      pause: float = PAUSE_SECONDS) -> Iterator[Hammer]:
    """While the block runs, a thread commits one-row transactions to the same database as fast as it can.

    It uses a plain engine, none of the app's gating, as another process or tool would; it stops with the block,
    after `max_commits` commits or after `max_seconds`, whichever comes first.
    """
    sqlite = database_url.startswith("sqlite")
    engine = create_engine(database_url, poolclass=NullPool, connect_args={"timeout": 30} if sqlite else {})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS write_pressure (n INTEGER NOT NULL)"))
    hammer = Hammer()
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + max_seconds
        try:
            with engine.connect() as conn:
                while not stop.is_set() and hammer.commits < max_commits and time.monotonic() < deadline:
                    conn.execute(text("INSERT INTO write_pressure (n) VALUES (:n)"), {"n": hammer.commits})
                    conn.commit()
                    hammer.commits += 1
                    stop.wait(pause)
        except Exception as exc:  # reported to the test through hammer.errors
            hammer.errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name="write-pressure", daemon=True)
    thread.start()
    try:
        # Under way before the block's first request.
        for _ in range(1000):
            if hammer.commits or hammer.errors or not thread.is_alive():
                break
            time.sleep(0.005)
        yield hammer
    finally:
        stop.set()
        thread.join(60)
        engine.dispose()
