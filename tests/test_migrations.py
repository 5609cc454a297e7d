"""Migrations: one head, down to base and up again, and `db check` finding models and migrations apart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from idp_bridge.migrate import current_heads, scripts
from idp_bridge.models import Base
from idp_bridge.store.db import MIGRATION_LOCK_KEY
from tests.clirun import cli_env, invoke

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str | None]:
    return cli_env(tmp_path, database_url)


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def heads_of(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return current_heads(engine)
    finally:
        engine.dispose()


def test_the_migrations_have_exactly_one_head() -> None:
    assert len(scripts().get_heads()) == 1


def test_downgrade_to_base_and_upgrade_again_rebuild_every_table(env: dict[str, str | None],
                                                                  database_url: str) -> None:
    head = scripts().get_current_head()
    assert heads_of(database_url) == {head}
    assert tables(database_url) >= {"organizations", "members", "invites", "jobs"}

    code, out, err = invoke(env, "db", "downgrade", "base")
    assert code == 0, err
    assert "base" in out
    assert tables(database_url) == set()
    code, out, _ = invoke(env, "db", "current")
    assert code == 0 and "base" in out and head not in out

    code, _, err = invoke(env, "db", "upgrade")
    assert code == 0, err
    assert tables(database_url) == set(Base.metadata.tables) | {"graph_subscriptions"}
    code, out, _ = invoke(env, "db", "current")
    assert code == 0 and f"{head} (head)" in out
    code, out, err = invoke(env, "db", "check")
    assert code == 0, err
    assert "agree" in out


def test_downgrade_by_one_step_and_check_asks_for_an_upgrade(env: dict[str, str | None], database_url: str) -> None:
    head = scripts().get_revision(scripts().get_current_head())
    code, out, err = invoke(env, "db", "downgrade", "-1")
    assert code == 0, err
    assert heads_of(database_url) == {head.down_revision}
    assert str(head.down_revision) in out
    code, _, err = invoke(env, "db", "check")
    assert code == 1
    assert "db upgrade" in err and "Traceback" not in err


def test_check_exits_1_listing_each_difference_between_the_models_and_the_schema(env: dict[str, str | None],
                                                                                  database_url: str) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE organizations ADD COLUMN nickname VARCHAR(20)"))
        conn.execute(text("CREATE TABLE stray_things (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    code, out, err = invoke(env, "db", "check")
    assert code == 1
    assert "remove_column organizations.nickname" in err
    assert "remove_table stray_things" in err
    assert "agree" not in out


def test_downgrade_to_an_unknown_revision_is_a_clear_error(env: dict[str, str | None], database_url: str) -> None:
    code, _, err = invoke(env, "db", "downgrade", "0099_nothing")
    assert code == 1
    assert err.startswith("Error: cannot downgrade to '0099_nothing'") and "Traceback" not in err
    assert heads_of(database_url) == {scripts().get_current_head()}


def test_plain_alembic_migrates_the_configured_database(env: dict[str, str | None], database_url: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IDP_BRIDGE_")}
    environ.update({k: v for k, v in env.items() if v is not None})
    environ["PYTHONPATH"] = str(ROOT)

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=environ,
                              capture_output=True, text=True, timeout=120)

    assert alembic("downgrade", "base").returncode == 0
    assert tables(database_url) == set()
    done = alembic("upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert heads_of(database_url) == {scripts().get_current_head()}
    checked = alembic("check")
    assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(os.environ.get("IDP_BRIDGE_TEST_DB") != "postgres", reason="PostgreSQL-only: SQLite migrates "
                    "in one writing transaction behind its write gate")
def test_on_postgresql_a_second_migration_waits_for_the_one_running(env: dict[str, str | None],
                                                                    database_url: str) -> None:
    """Processes started together (workers, servers, the migration Job) never run the same DDL at once."""
    engine = create_engine(database_url, poolclass=NullPool)
    code, _, err = invoke(env, "db", "downgrade", "base")
    assert code == 0, err
    child_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    try:
        with engine.begin() as holder:
            holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            upgrading = subprocess.Popen([sys.executable, "-m", "idp_bridge.cli", "db", "upgrade"], env=child_env,
                                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            waiting = False
            for _ in range(300):  # up to ~30 s for the child to start and ask for the lock
                with engine.connect() as conn:
                    waiting = bool(conn.execute(text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar())
                if waiting or upgrading.poll() is not None:
                    break
                time.sleep(0.1)
            assert waiting and upgrading.poll() is None, upgrading.communicate(timeout=5)
            assert tables(database_url) == set()
        _, err_bytes = upgrading.communicate(timeout=120)
        assert upgrading.returncode == 0, err_bytes.decode()
        assert heads_of(database_url) == {scripts().get_current_head()}
    finally:
        engine.dispose()


def test_a_downgrade_keeps_the_rows_of_the_tables_it_changes_and_of_those_that_refer_to_them(
        env: dict[str, str | None], database_url: str, tmp_path: Path) -> None:
    """On SQLite a column is dropped by copying the table: with foreign keys on, dropping the old `organizations`
    would have deleted (ON DELETE CASCADE) every member, invite and key of every org."""
    assert invoke(env, "org", "create", "acme", "--name", "Acme")[0] == 0
    team = tmp_path / "team.csv"
    team.write_text("identifier,name\nada@example.com,Ada\ngrace@example.com,Grace\n")
    code, _, err = invoke(env, "invite", "import", str(team), "--org", "acme")
    assert code == 0, err

    def counts() -> dict[str, int]:
        engine = create_engine(database_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                        for table in ("organizations", "members", "invites", "invite_links", "audit_events")}
        finally:
            engine.dispose()

    before = counts()
    assert before["members"] == 2 and before["invites"] == 2
    code, _, err = invoke(env, "db", "downgrade", "0005_canonical_identifier_keys")
    assert code == 0, err
    assert counts() == before
    code, _, err = invoke(env, "db", "upgrade")
    assert code == 0, err
    assert counts() == before
