"""The store relies on private SQLAlchemy APIs: the pinned minor version and those APIs are checked loudly."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import sqlalchemy
from sqlalchemy import Integer, String, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from idp_bridge.models import Invite
from idp_bridge.store.sql import table_of
from idp_bridge.store.types import UTCDateTime

ROOT = Path(__file__).resolve().parents[2]


def pinned_range() -> tuple[tuple[int, int], tuple[int, int]]:
    """(lowest, first excluded) (major, minor) of the sqlalchemy requirement in pyproject.toml."""
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [spec] = [r for r in requirements if re.match(r"sqlalchemy\b", r, re.IGNORECASE)]
    low = re.search(r">=\s*(\d+)\.(\d+)", spec)
    high = re.search(r"<\s*(\d+)\.(\d+)", spec)
    assert low and high, f"pyproject pins sqlalchemy as {spec!r}: give it a >= and a < bound"
    return (int(low[1]), int(low[2])), (int(high[1]), int(high[2]))


def test_pyproject_pins_sqlalchemy_to_one_minor_version() -> None:
    (low_major, low_minor), high = pinned_range()
    assert high == (low_major, low_minor + 1), (
        f"sqlalchemy must be pinned to one minor version (>={low_major}.{low_minor},<{low_major}.{low_minor + 1}): "
        "idp_bridge.store uses private APIs of that version")


def test_the_installed_sqlalchemy_is_the_pinned_minor_version() -> None:
    major, minor = (int(part) for part in sqlalchemy.__version__.split(".")[:2])
    low, high = pinned_range()
    assert low <= (major, minor) < high, (
        f"SQLAlchemy {sqlalchemy.__version__} is installed but pyproject.toml pins {low[0]}.{low[1]}: "
        "idp_bridge.store.compiled uses private SQLAlchemy APIs that change between minor versions; check them "
        "(tests/store/test_sqlalchemy_pin.py) before moving the pin")


def test_the_private_apis_the_compiled_statements_use_still_exist() -> None:
    missing = [name for name in ("_cached_bind_processor", "_cached_result_processor")
               if not callable(getattr(UTCDateTime(), name, None))]
    assert not missing, f"SQLAlchemy {sqlalchemy.__version__} has no TypeEngine.{missing}: idp_bridge.store.compiled"
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        process = UTCDateTime()._cached_bind_processor(dialect)
        assert process is not None and callable(process)
        compiled = select(bindparam("a", type_=Integer()), bindparam("b", type_=String())).compile(dialect=dialect)
        assert {"a", "b"} <= set(compiled.bind_names.values()), "SQLCompiler.bind_names changed"
        assert hasattr(compiled, "positiontup") and hasattr(compiled, "positional"), "SQLCompiler changed"


def test_for_update_is_left_out_on_sqlite_and_kept_on_postgresql() -> None:
    """Statements outside the store lock rows with a plain with_for_update(): SQLite must render nothing."""
    invites = table_of(Invite)
    stmt = select(invites.c.id).with_for_update(skip_locked=True, of=invites)
    assert "FOR UPDATE" not in str(stmt.compile(dialect=sqlite.dialect()))
    assert "FOR UPDATE OF invites SKIP LOCKED" in str(stmt.compile(dialect=postgresql.dialect()))
