"""Only the store touches the driver, the dialect and table internals: the source tree is checked for it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("idp_bridge", "providers", "webhooks")
# The store owns all of it; migrations are plain Alembic scripts, run once per schema change.
ALLOWED = (ROOT / "idp_bridge" / "store", ROOT / "idp_bridge" / "migrations")
# Raw DBAPI and SQLAlchemy internals: driver cursors and connections, driver SQL, the dialect, private APIs.
FORBIDDEN_ATTRIBUTES = {
    "cursor", "executemany", "driver_connection", "dbapi_connection", "raw_connection", "exec_driver_sql",
    "dialect", "__table__", "_cached_bind_processor", "_cached_result_processor", "loaded_dbapi",
}
FORBIDDEN_NAMES = {"is_sqlite"}
# Driver modules and dialect-specific constructs.
FORBIDDEN_MODULES = ("sqlite3", "psycopg", "sqlalchemy.dialects")
BACKEND_NAMES = {"sqlite", "postgresql"}


def sources() -> list[Path]:
    found = []
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if not any(path.is_relative_to(allowed) for allowed in ALLOWED):
                found.append(path)
    return found


def violations(path: Path) -> list[str]:
    """What in one file belongs in the store, as `line: what` strings."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.alias) and node.name in FORBIDDEN_NAMES:
            found.append(f"{node.lineno}: import of {node.name}")
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.startswith(FORBIDDEN_MODULES)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(FORBIDDEN_MODULES):
            found.append(f"{node.lineno}: from {node.module} import")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in BACKEND_NAMES for o in operands):
                found.append(f"{node.lineno}: comparison with a backend name")
        elif isinstance(node, ast.Call) and any(
                isinstance(arg, ast.Constant) and arg.value in BACKEND_NAMES for arg in node.args):
            # e.g. @compiles(Construct, "postgresql"), with_variant(..., "postgresql")
            found.append(f"{node.lineno}: a call naming a backend")
    return found


def test_the_checked_tree_is_found() -> None:
    paths = sources()
    assert len(paths) > 50
    assert ROOT / "idp_bridge" / "services" / "redeem.py" in paths
    assert not any(p.is_relative_to(ROOT / "idp_bridge" / "store") for p in paths)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_raw_driver_use_or_dialect_branch_outside_the_store(path: Path) -> None:
    found = violations(path)
    assert not found, f"{path.relative_to(ROOT)} should go through idp_bridge.store: {found}"


@pytest.mark.parametrize("snippet", [
    "cursor = conn.connection.dbapi_connection.cursor()",
    "if session.get_bind().dialect.name == 'postgresql': pass",
    "if is_sqlite(engine): pass",
    "from sqlalchemy.dialects.postgresql import insert",
    "import sqlite3",
    "table = Invite.__table__",
    "conn.exec_driver_sql('SELECT 1')",
    "processor = column.type._cached_bind_processor(d)",
    "if name != \"sqlite\": pass",
    "@compiles(Lower, 'postgresql')\ndef f(): pass",
])
def test_the_check_catches_each_kind_of_violation(snippet: str, tmp_path: Path) -> None:
    path = tmp_path / "example.py"
    path.write_text(snippet + "\n")
    assert violations(path)


def test_the_check_lets_store_calls_through(tmp_path: Path) -> None:
    path = tmp_path / "example.py"
    path.write_text("from idp_bridge.store.sql import flavor, lock_rows, table_of\n"
                    "stmt = flavor(conn).insert(table_of(Identity)).on_conflict_do_nothing()\n"
                    "if lock_rows(session, select(Org.id)): session.refresh(org)\n")
    assert violations(path) == []
