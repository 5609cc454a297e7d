"""Many-row inserts straight to the driver: each column's bind processing runs once per distinct value.

A Core `insert()` executed with a list of dicts runs every value of every row through its column type's
bind processor (UTC conversion, datetime formatting, JSON encoding). In a bulk import most of those values
are shared by the whole chunk (org id, status, `now`), so processing each distinct scalar once and handing
the driver ready tuples is several times cheaper. JSON values (dicts and lists) are still encoded per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

_SCALARS = (str, int, float, bool, type(None))


class RowInserter:
    """A compiled INSERT of given columns into one table, for one dialect."""

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        unknown = set(columns) - set(table.c.keys())
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
        compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
        self.table = table
        self.sql = str(compiled)
        order = list(compiled.positiontup or ()) if compiled.positional else list(compiled.bind_names.values())
        # Columns left out but given a Python-side default are compiled in as parameters: fill them the way
        # Core would, per row for callables (a fresh dict for `default=dict`).
        self.defaults: dict[str, Callable[[], Any]] = {}
        for name in order:
            if name in columns:
                continue
            default = table.c[name].default
            if default is None or not (default.is_scalar or default.is_callable):
                raise ValueError(f"cannot fill {table.name}.{name}: give it a value")
            self.defaults[name] = _default_maker(default)
        self.order = order
        self.positional = bool(compiled.positional)
        # PostgreSQL takes the rows through COPY, which is several times faster than executemany.
        self.copy_sql: str | None = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            quote = dialect.identifier_preparer.quote
            self.copy_sql = (f"COPY {dialect.identifier_preparer.format_table(table)} "
                             f"({', '.join(quote(name) for name in order)}) FROM STDIN")
        self.processors: list[Callable[[Any], Any] | None] = [
            table.c[name].type._cached_bind_processor(dialect) for name in order]

    def rows(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Driver-ready parameters: tuples for positional paramstyles (and COPY), dicts for named ones."""
        columns: list[list[Any]] = []
        for name, process in zip(self.order, self.processors, strict=True):
            fill = self.defaults.get(name)
            values = [fill() for _ in rows] if fill is not None else [row[name] for row in rows]
            if process is not None:
                memo: dict[tuple[type, Any], Any] = {}
                out = []
                for value in values:
                    if isinstance(value, _SCALARS) or hasattr(value, "utcoffset"):
                        key = (type(value), value)
                        if key not in memo:
                            memo[key] = process(value)
                        out.append(memo[key])
                    else:
                        out.append(process(value))
                values = out
            columns.append(values)
        if self.positional or self.copy_sql:
            return list(zip(*columns, strict=True))
        return [dict(zip(self.order, values, strict=True)) for values in zip(*columns, strict=True)]

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert the rows with one COPY (PostgreSQL) or one executemany, inside the connection's transaction."""
        if not rows:
            return
        if self.copy_sql is None:
            connection.exec_driver_sql(self.sql, self.rows(rows))
            return
        dialect = connection.dialect
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(self.copy_sql) as copy:
                for row in self.rows(rows):
                    copy.write_row(row)
        except dialect.loaded_dbapi.Error as exc:
            # The same exception classes (IntegrityError, ...) as an executemany through SQLAlchemy raises.
            raise DBAPIError.instance(self.copy_sql, None, exc, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from exc
        finally:
            cursor.close()


class BulkWriter:
    """RowInserters built once per (table, columns) and reused for every chunk."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._inserters: dict[tuple[str, tuple[str, ...]], RowInserter] = {}

    def insert(self, connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        columns = tuple(rows[0])
        key = (table.name, columns)
        inserter = self._inserters.get(key)
        if inserter is None:
            inserter = self._inserters[key] = RowInserter(table, columns, self.dialect)
        inserter.execute(connection, rows)


def _default_maker(default: Any) -> Callable[[], Any]:
    if default.is_scalar:
        value = default.arg
        return lambda: value
    fn = default.arg
    return lambda: fn(None)
