"""Prebuilt statements run straight on the driver, for the request an invitee waits on (the OIDC callback).

There, SQLAlchemy's per-execute work (execution context, parameter and result set-up) costs several times
more than the statement itself on SQLite. A Prepared statement is compiled by SQLAlchemy once per dialect
and keeps the bind and result processing of each column's type (UTC datetimes, JSON, booleans); only the
execution context is left out. It runs on the DBAPI connection of a SQLAlchemy Connection, so inside
whatever transaction that connection has begun, and its driver errors surface as SQLAlchemy's exceptions.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled for one dialect, with the parameters it takes given by name."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect,
                                                       column_keys=list(column_keys) if column_keys else None))
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        if any(bind.expanding or bind.callable is not None for bind in binds.values()):
            raise ValueError("expanding and callable parameters are not supported")
        # Parameters a statement fills itself (a column's Python default or onupdate) are left to the caller:
        # naming them all is required, so none is silently dropped.
        self.names: list[str] = list(compiled.positiontup or ()) if self.positional else list(binds)
        self.processors: dict[str, Processor] = {
            name: bind.type._cached_bind_processor(dialect) for name, bind in binds.items()}
        self.result_processors: list[Processor] = []
        if isinstance(statement, Select):
            self.result_processors = [column.type._cached_result_processor(dialect, None)
                                      for column in statement.selected_columns]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        processed = {}
        for name, process in self.processors.items():
            value = values[name]
            processed[name] = process(value) if process is not None else value
        if self.positional:
            return tuple(processed[name] for name in self.names)
        return processed

    def run(self, connection: Connection, values: Mapping[str, Any]) -> int:
        """Execute once; returns the driver's rowcount."""
        with _cursor(connection, self.sql) as cursor:
            cursor.execute(self.sql, self.parameters(values))
            return int(cursor.rowcount)

    def run_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        with _cursor(connection, self.sql) as cursor:
            cursor.executemany(self.sql, [self.parameters(row) for row in rows])

    def first(self, connection: Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row the statement returns, through each column's result processing; None for none."""
        return self.first_on(connection.connection.dbapi_connection, connection.dialect, values)

    def first_on(self, dbapi_connection: Any, dialect: Dialect, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """first() on a bare driver connection of this statement's dialect (see db.raw_read)."""
        with _driver_cursor(dbapi_connection, dialect, self.sql) as cursor:
            cursor.execute(self.sql, self.parameters(values))
            row = cursor.fetchone()
        return self._processed(row)

    def first_later(self, connection: Connection, values: Mapping[str, Any]) -> Callable[[], tuple[Any, ...] | None]:
        """Execute now, read the first row later: inside pipelined(), the statement goes out with the ones
        after it and its row is read, by calling what this returns, once the block has ended."""
        dialect = connection.dialect
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with _translated(dialect, self.sql):
                cursor.execute(self.sql, self.parameters(values))
        except BaseException:
            cursor.close()
            raise

        def first() -> tuple[Any, ...] | None:
            try:
                with _translated(dialect, self.sql):
                    return self._processed(cursor.fetchone())
            finally:
                cursor.close()

        return first

    def _processed(self, row: Sequence[Any] | None) -> tuple[Any, ...] | None:
        if row is None:
            return None
        if not self.result_processors:
            return tuple(row)
        return tuple(process(value) if process is not None else value
                     for process, value in zip(self.result_processors, row, strict=True))


def _cursor(connection: Connection, sql: str) -> AbstractContextManager[Any]:
    return _driver_cursor(connection.connection.dbapi_connection, connection.dialect, sql)


@contextmanager
def _driver_cursor(dbapi_connection: Any, dialect: Dialect, sql: str) -> Iterator[Any]:
    cursor = dbapi_connection.cursor()
    try:
        with _translated(dialect, sql):
            yield cursor
    finally:
        cursor.close()


@contextmanager
def _translated(dialect: Dialect, sql: str | None) -> Iterator[None]:
    """Driver errors as the same exception classes (IntegrityError, OperationalError, ...) as Connection.execute
    raises."""
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, the statements run inside go to the server together (psycopg's pipeline mode, with the
    transaction's BEGIN when it has not been sent yet) and their results come back together when the block
    ends, or earlier when one of them is read: one round trip instead of one per statement. An error of any
    of them is raised when the block ends. Elsewhere nothing changes."""
    if connection.dialect.name != "postgresql":
        yield
        return
    with _translated(connection.dialect, None), connection.connection.driver_connection.pipeline():  # type: ignore[union-attr]
        yield


_built: weakref.WeakKeyDictionary[Dialect, dict[Hashable, Prepared]] = weakref.WeakKeyDictionary()


def prepared(connection: Connection, key: Hashable, statement: Callable[[], ClauseElement],
             column_keys: Sequence[str] | None = None) -> Prepared:
    """The Prepared form of `statement()` for this connection's dialect, built on first use under `key`."""
    return prepared_for(connection.dialect, key, statement, column_keys)


def prepared_for(dialect: Dialect, key: Hashable, statement: Callable[[], ClauseElement],
                 column_keys: Sequence[str] | None = None) -> Prepared:
    """prepared() by dialect, for a bare driver connection."""
    built = _built.get(dialect)
    if built is None:
        built = _built.setdefault(dialect, {})
    found = built.get(key)
    if found is None:
        found = built[key] = Prepared(statement(), dialect, column_keys)
    return found
