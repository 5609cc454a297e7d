"""SQLite's WAL is checkpointed by a background thread, never inside a request's commit."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from idp_bridge.store.db import AUTOCHECKPOINT_FALLBACK_PAGES, checkpointer_of, make_engine


def rows_in_main_file(db: Path, tmp_path: Path) -> int:
    """Rows visible from the database file alone, as if the WAL were lost: only checkpointed ones."""
    copy = tmp_path / "main-file-only.sqlite3"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        found = conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone()
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0]) if found else 0
    finally:
        conn.close()
        copy.unlink()


def test_commits_leave_the_wal_to_the_checkpointer_which_copies_it_into_the_database(tmp_path: Path) -> None:
    db = tmp_path / "bridge.sqlite3"
    engine = make_engine(f"sqlite:///{db}")
    checkpointer = checkpointer_of(engine)
    assert checkpointer is not None
    checkpointer.interval = 3600.0
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == AUTOCHECKPOINT_FALLBACK_PAGES
            conn.execute(text("CREATE TABLE t (n INTEGER, pad TEXT)"))
        # About 5 MB of log: past SQLite's default threshold of 1000 pages, where a commit would checkpoint.
        for batch in range(10):
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:n, :pad)"),
                             [{"n": batch * 250 + n, "pad": "x" * 2000} for n in range(250)])
        assert rows_in_main_file(db, tmp_path) == 0

        checkpointer.checkpoint()

        assert rows_in_main_file(db, tmp_path) == 2500
    finally:
        engine.dispose()


def test_the_checkpointer_runs_while_the_engine_is_in_use_and_stops_when_it_is_disposed(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    checkpointer = checkpointer_of(engine)
    assert checkpointer is not None
    checkpointer.interval = 0.01
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    for _ in range(500):
        if checkpointer.rounds >= 2:
            break
        time.sleep(0.01)
    assert checkpointer.rounds >= 2

    engine.dispose()
    thread = checkpointer._thread
    assert thread is not None
    thread.join(timeout=5)

    assert not thread.is_alive()


def test_postgresql_and_in_memory_sqlite_have_no_checkpointer() -> None:
    assert checkpointer_of(make_engine("sqlite://")) is None
    assert checkpointer_of(make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")) is None
