"""`idp-bridge invite import`: exit codes, dry runs, the summary and the errors file that re-imports."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from idp_bridge.bridge import Bridge
from idp_bridge.cli import cli
from idp_bridge.models import Invite
from idp_bridge.store.db import transaction
from tests.dbstate import row_counts
from tests.helpers import make_org


@pytest.fixture
def env(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> dict[str, str | None]:
    """IDP_BRIDGE_* variables for the CLI on the test database (and none of the test runner's)."""
    config = tmp_path / "idp-bridge.toml"
    config.write_text('public_url = "http://127.0.0.1:8080"\n')
    # The deployment's key: what the import seals, the test's worker opens (and PostgreSQL requires one).
    return {"IDP_BRIDGE_CONFIG": str(config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path / "cli-instance"),
            "IDP_BRIDGE_DATABASE_URL": database_url, "IDP_BRIDGE_SECRET_KEY": settings_overrides["secret_key"],
            "IDP_BRIDGE_TEST_DB": None,
            "IDP_BRIDGE_TEST_PG_ADMIN": None}


def run(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(cli, ["invite", "import", *args], env=env, catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def roles(bridge: Bridge) -> dict[str, str]:
    with transaction(bridge.sessions) as session:
        return {identifier: role for identifier, role in session.execute(select(Invite.identifier, Invite.role))}


def test_a_clean_file_is_imported_with_a_summary_and_exit_code_zero(
        bridge: Bridge, env: dict[str, str | None], tmp_path: Path) -> None:
    make_org(bridge, member_limit=100)
    file = write(tmp_path / "people.csv", "email,name\nada@example.com,Ada\nbob@example.com,Bob\n")
    result = run(env, str(file), "--org", "acme", "--role", "ADMIN")
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s*created\s+2$", result.output, re.MULTILINE)
    assert re.search(r"^\s*invalid\s+0$", result.output, re.MULTILINE)
    assert roles(bridge) == {"ada@example.com": "ADMIN", "bob@example.com": "ADMIN"}


def test_a_failed_row_exits_non_zero_and_the_errors_file_holds_it_with_its_reason(
        bridge: Bridge, env: dict[str, str | None], tmp_path: Path) -> None:
    make_org(bridge, member_limit=100)
    file = write(tmp_path / "people.csv",
                 "email,name,role,team\nada@example.com,Ada,ADMIN,core\nbob-at-example.com,Bob,MEMBER,=ops\n"
                 "cy@example.com,Cy,CAPTAIN,web\n")
    errors = tmp_path / "errors.csv"
    result = run(env, str(file), "--org", "acme", "--errors-out", str(errors))
    assert result.exit_code == 1
    assert "@-sign" in result.output and "unknown role 'CAPTAIN'" in result.output
    assert set(roles(bridge)) == {"ada@example.com"}
    with errors.open(encoding="utf-8-sig", newline="") as fh:
        failed = list(csv.DictReader(fh))
    assert [(r["email"], r["team"]) for r in failed] == [("bob-at-example.com", "'=ops"), ("cy@example.com", "web")]
    assert failed[0]["import_errors"].startswith("email: ")
    assert failed[1]["import_errors"].startswith("role: unknown role 'CAPTAIN'")

    fixed = errors.read_text(encoding="utf-8-sig").replace("bob-at-example.com", "bob@example.com")
    write(errors, fixed.replace(",CAPTAIN,", ",MEMBER,"))
    again = run(env, str(errors), "--org", "acme")
    assert again.exit_code == 0, again.output
    with transaction(bridge.sessions) as session:
        bob = session.scalar(select(Invite).where(Invite.identifier == "bob@example.com"))
        assert bob is not None and bob.attributes == {"team": "=ops"}


def test_a_dry_run_writes_nothing_and_still_reports_failures(
        bridge: Bridge, env: dict[str, str | None], tmp_path: Path) -> None:
    make_org(bridge, member_limit=100)
    before = row_counts(bridge)
    file = write(tmp_path / "people.csv", "identifier\nada@example.com\nnope\n")
    result = run(env, str(file), "--org", "acme", "--dry-run")
    assert result.exit_code == 1
    assert "Nothing was written." in result.output and "would be created" in result.output
    assert row_counts(bridge) == before


def test_an_atomic_import_with_a_bad_row_writes_nothing(
        bridge: Bridge, env: dict[str, str | None], tmp_path: Path) -> None:
    make_org(bridge, member_limit=100)
    file = write(tmp_path / "people.csv", "identifier\nada@example.com\nnope\n")
    result = run(env, str(file), "--org", "acme", "--atomic")
    assert result.exit_code == 1
    assert "Atomic import refused" in result.output
    assert roles(bridge) == {}


def test_a_batch_beyond_the_seat_limit_fails_with_the_missing_seat_count(
        bridge: Bridge, env: dict[str, str | None], tmp_path: Path) -> None:
    make_org(bridge, member_limit=2)
    file = write(tmp_path / "people.csv", "email\na@example.com\nb@example.com\nc@example.com\n")
    result = CliRunner().invoke(cli, ["invite", "import", str(file), "--org", "acme"], env=env)
    assert result.exit_code == 1
    assert "1 more than are free" in result.output
    assert roles(bridge) == {}


def test_a_file_that_is_not_utf8_is_refused_with_a_clear_message(
        bridge: Bridge, env: dict[str, str | None], tmp_path: Path) -> None:
    make_org(bridge)
    file = tmp_path / "people.csv"
    file.write_bytes("email,name\nzoe@example.com,Zoë\n".encode("cp1252"))
    result = CliRunner().invoke(cli, ["invite", "import", str(file), "--org", "acme"], env=env)
    assert result.exit_code == 1
    assert "not UTF-8" in result.output
