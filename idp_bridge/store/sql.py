"""Every difference between the databases, in one place: which SQL each takes and what each can do.

Code outside the store asks a Flavor (`flavor(bind)`) for a construct or a capability instead of testing the
backend's name. Statements that differ only in FOR UPDATE need nothing from here: SQLAlchemy leaves the
clause out on SQLite, whose writers the write gate already serializes (store.gate).
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Executable, String, Table, Text, func, literal_column, select, type_coerce
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

Bind = Engine | Connection | Session


def _dialect(bind: Bind | Dialect) -> Dialect:
    if isinstance(bind, Dialect):
        return bind
    if isinstance(bind, Session):
        return bind.get_bind().dialect
    return bind.dialect


def is_sqlite(bind: Bind | Dialect) -> bool:
    """True for the embedded SQLite backend."""
    return _dialect(bind).name == "sqlite"


def copies(bind: Bind | Dialect) -> bool:
    """Whether many-row inserts can go through COPY (PostgreSQL with psycopg)."""
    dialect = _dialect(bind)
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def pipelines(bind: Bind | Dialect) -> bool:
    """Whether statements can be sent together and read back later (psycopg's pipeline mode)."""
    return copies(bind)


def table_of(model: type[Any]) -> Table:
    """The Core table a declarative model maps, for statements built once and run without the ORM."""
    return cast(Table, model.__table__)


@dataclass(frozen=True)
class Flavor:
    """One database's SQL: the constructs that differ between backends, and what the backend can do."""

    name: str

    @property
    def row_locks(self) -> bool:
        """Whether SELECT … FOR UPDATE locks rows (PostgreSQL); SQLite's writers take turns as a whole."""
        return self.name == "postgresql"

    @property
    def writes_in_cte(self) -> bool:
        """Whether a SELECT can carry an UPDATE … RETURNING in its WITH (a claim and a read in one statement)."""
        return self.name == "postgresql"

    def insert(self, table: Table) -> Any:
        """The backend's INSERT construct, the one that takes on_conflict_do_nothing() / on_conflict_do_update()."""
        return postgresql.insert(table) if self.name == "postgresql" else sqlite.insert(table)

    def rows_bound(self, table: Table) -> ColumnElement[Any] | None:
        """A number never below how many rows `table` holds, read in one index step: on SQLite its largest
        rowid (rowids are distinct positive integers); None where the database has none as cheap."""
        if self.name != "sqlite":
            return None
        return select(func.max(literal_column("rowid"))).select_from(table).scalar_subquery()

    def json_has_key(self, column: ColumnElement[Any], key: str) -> ColumnElement[bool]:
        """Whether a JSON object column holds `key` (with a non-null value on SQLite)."""
        if self.name == "postgresql":
            return cast(ColumnElement[bool], type_coerce(column, postgresql.JSONB).has_key(key))
        return func.json_extract(column, f"$.{key}").is_not(None)

    def json_with_key(self, column: ColumnElement[Any], key: str, value: ColumnElement[Any]) -> ColumnElement[Any]:
        """A JSON object column with `key` set to a text value."""
        if self.name == "postgresql":
            return type_coerce(column, postgresql.JSONB).op("||")(func.jsonb_build_object(key, sql_cast(value, Text)))
        return func.json_set(column, f"$.{key}", value)


@functools.cache
def _flavor(name: str) -> Flavor:
    return Flavor(name)


def flavor(bind: Bind | Dialect) -> Flavor:
    """The Flavor of the database behind an engine, connection or session."""
    return _flavor(_dialect(bind).name)


def row_locks(bind: Bind) -> bool:
    """Whether this database locks rows read FOR UPDATE (see Flavor.row_locks)."""
    return flavor(bind).row_locks


def lock_rows(session: Session, statement: Executable) -> bool:
    """Lock the rows a SELECT reads until commit where the database locks rows; False (nothing run) on SQLite,
    where the writing transaction already excludes every other writer."""
    if not row_locks(session):
        return False
    session.execute(statement.with_for_update())  # type: ignore[attr-defined]
    return True


def insert_for(bind: Bind | Dialect, table: Table) -> Any:
    """The backend's INSERT construct for `table` (see Flavor.insert)."""
    return flavor(bind).insert(table)


class AsciiLower(FunctionElement[str]):
    """SQL that lower-cases ASCII letters only, as identifiers.ascii_lower does."""

    type = String()
    inherit_cache = True
    name = "ascii_lower"


@compiles(AsciiLower)
def _ascii_lower_sqlite(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's built-in lower() changes ASCII letters only (without the ICU extension, which we never load).
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(AsciiLower, "postgresql")
def _ascii_lower_postgresql(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    # PostgreSQL's lower() follows the locale (it maps the Kelvin sign to k); translate() maps exactly A-Z.
    return (f"translate({compiler.process(element.clauses, **kw)}, "
            f"'{string.ascii_uppercase}', '{string.ascii_lowercase}')")
