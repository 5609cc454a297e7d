"""One write gate per SQLite database: every writer of every thread and process waits at it, readers never do."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from idp_bridge.store.compiled import run_now
from idp_bridge.store.db import gate_of, make_engine, read_only
from idp_bridge.store.gate import LOCK_SUFFIX, GateTimeout, WriteGate, gate_for
from idp_bridge.store.group_commit import GroupCommit

ROOT = Path(__file__).resolve().parents[2]
WAIT = 0.4  # how long a writer is seen blocked before the holder lets go


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine
    engine.dispose()


def insert(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})


def in_thread(work: object) -> tuple[threading.Thread, threading.Event]:
    """Run `work` in a thread; the event is set once it has returned."""
    done = threading.Event()

    def run() -> None:
        work()  # type: ignore[operator]
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_every_engine_on_one_file_shares_its_gate_and_it_sits_beside_the_database(engine: Engine,
                                                                                    tmp_path: Path) -> None:
    gate = gate_of(engine)
    assert gate is not None and gate is gate_for(str(tmp_path / "gate.sqlite3"))
    other = make_engine(f"sqlite:///{tmp_path / 'gate.sqlite3'}")
    try:
        assert gate_of(other) is gate
    finally:
        other.dispose()
    assert gate.lock_path == str(tmp_path / "gate.sqlite3") + LOCK_SUFFIX


def test_a_writing_transaction_holds_the_gate_until_it_commits_and_another_threads_write_waits(
        engine: Engine) -> None:
    gate = gate_of(engine)
    assert gate is not None
    order: list[str] = []
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (n) VALUES (1)"))
        assert gate.locked()
        thread, done = in_thread(lambda: (insert(engine, 2), order.append("second")))
        assert not done.wait(WAIT)  # the other thread's BEGIN waits at the gate
        order.append("first")
    assert done.wait(10)
    thread.join()
    assert order == ["first", "second"] and not gate.locked()


def test_the_gate_is_given_back_when_a_transaction_rolls_back_or_fails(engine: Engine) -> None:
    gate = gate_of(engine)
    assert gate is not None
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t (n) VALUES (1)"))
        raise RuntimeError("abandon")
    assert not gate.locked()
    with pytest.raises(Exception, match="no such table"), engine.begin() as conn:
        conn.execute(text("INSERT INTO missing (n) VALUES (1)"))
    assert not gate.locked()
    insert(engine, 3)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM t")) == 1


def test_readers_do_not_wait_at_the_gate(engine: Engine) -> None:
    gate = gate_of(engine)
    assert gate is not None
    with gate.held(), read_only(), engine.begin() as conn:
        assert conn.scalar(text("SELECT count(*) FROM t")) == 0


def test_every_kind_of_writer_waits_at_the_one_gate(engine: Engine) -> None:
    """Transactions, the group-commit writer and the driver-level statements of run_now() all queue there."""
    gate = gate_of(engine)
    assert gate is not None

    def write_rows(conn: Connection, items: list[int]) -> None:
        conn.execute(text("INSERT INTO t (n) VALUES (:n)"), [{"n": n} for n in items])

    writer = GroupCommit(engine, write_rows, name="gate-test")
    build = text("INSERT INTO t (n) VALUES (:n) RETURNING n")
    writers = {
        "transaction": lambda: insert(engine, 1),
        "group commit": lambda: writer.submit(2),
        "run_now": lambda: run_now(engine, [("gate-test", lambda: build, {"n": 3})]),
    }
    waiting = {}
    with gate.held():
        for name, work in writers.items():
            waiting[name] = in_thread(work)
        time.sleep(WAIT)
        assert [name for name, (_, done) in waiting.items() if done.is_set()] == []
        with read_only(), engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM t")) == 0
    for thread, done in waiting.values():
        assert done.wait(10)
        thread.join()
    with engine.connect() as conn:
        assert sorted(conn.scalars(text("SELECT n FROM t"))) == [1, 2, 3]


HOLDER = """
import sys, time
from sqlalchemy import text
from idp_bridge.store.db import make_engine
engine = make_engine(sys.argv[1])
with engine.begin() as conn:
    conn.execute(text("INSERT INTO t (n) VALUES (100)"))
    print("holding", flush=True)
    sys.stdin.readline()  # until the test says so
    print("committing", flush=True)
engine.dispose()
"""


def test_a_write_in_another_process_holds_the_gate_and_this_process_waits_for_its_commit(
        engine: Engine, tmp_path: Path) -> None:
    gate = gate_of(engine)
    assert gate is not None
    url = f"sqlite:///{tmp_path / 'gate.sqlite3'}"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "holding"
        seen: list[int] = []

        def write_then_count() -> None:
            insert(engine, 1)
            with engine.connect() as conn:
                seen.append(int(conn.scalar(text("SELECT count(*) FROM t")) or 0))

        thread, done = in_thread(write_then_count)
        assert not done.wait(WAIT)
        # Our writer holds this process's side of the gate and waits on the file lock, not in SQLite's busy handler.
        assert gate.locked()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "committing"
        assert done.wait(30)
        thread.join()
        assert seen == [2]  # ours went in after the other process's row, not beside it
    finally:
        child.kill()
        child.wait(10)


GATE_HOLDER = """
import sys
from idp_bridge.store.gate import gate_for
with gate_for(sys.argv[1]).held():
    print("holding", flush=True)
    sys.stdin.readline()
"""


def test_the_gate_alone_excludes_a_writer_of_another_process_before_any_sqlite_lock(engine: Engine,
                                                                                    tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", GATE_HOLDER, str(tmp_path / "gate.sqlite3")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "holding"
        thread, done = in_thread(lambda: insert(engine, 7))
        assert not done.wait(WAIT)  # the child holds no SQLite lock at all: only the gate keeps us out
        child.stdin.write("go\n")
        child.stdin.flush()
        assert done.wait(30)
        thread.join()
    finally:
        child.kill()
        child.wait(10)


def test_a_writer_that_waits_past_the_timeout_fails_like_a_busy_database(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "x.lock"))
    failure: list[GateTimeout] = []

    def try_acquire() -> None:
        try:
            gate.acquire(0.05)
        except GateTimeout as exc:
            failure.append(exc)
        else:
            gate.release()

    with gate.held():
        thread = threading.Thread(target=try_acquire)
        thread.start()
        thread.join(10)
    assert len(failure) == 1 and "locked" in str(failure[0])
    gate.acquire(0.05)  # free again once let go
    gate.release()
