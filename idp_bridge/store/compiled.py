"""Compiled statements run straight on the driver: the one engine behind every hot path's SQL.

SQLAlchemy's per-execute work (execution context, parameter and result set-up, statement cache lookup) costs
several times more than a small statement itself on SQLite, and a Core `insert()` with a list of dicts runs
every value of every row through its column type's bind processor. A Compiled statement is compiled by
SQLAlchemy once per dialect and keeps the bind and result processing of each column's type (UTC datetimes,
JSON, booleans); only the execution context is left out. Many-row writes process each distinct scalar value
of a column once (most are shared by the whole batch: an org id, a status, `now`), fill the columns the caller
left out from their Python-side defaults, and go to PostgreSQL through COPY. Everything runs on the DBAPI
connection of a SQLAlchemy Connection, so inside whatever transaction that connection has begun, and driver
errors surface as SQLAlchemy's exceptions (IntegrityError, OperationalError, ...).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

from sqlalchemy import Connection, Engine, Insert, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler

from idp_bridge.store import sql
from idp_bridge.store.db import bare_connection
from idp_bridge.store.gate import GatedConnection

Processor = Callable[[Any], Any] | None
Build = Callable[[], ClauseElement]

_SCALARS = (str, int, float, bool, type(None))


class Compiled:
    """One statement compiled for one dialect, with the parameters it takes given by name.

    Parameters a statement would fill itself (a column's Python default) are left to the caller and must all
    be given, so none is silently dropped; many-row inserts (`rows`, `insert_many`) fill them as Core would.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None, *,
                 copy_into: Table | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect,
                                                       column_keys=list(column_keys) if column_keys else None))
        self.dialect = dialect
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        if any(bind.expanding or bind.callable is not None for bind in binds.values()):
            raise ValueError("expanding and callable parameters are not supported")
        self.names: list[str] = list(compiled.positiontup or ()) if self.positional else list(binds)
        self.processors: dict[str, Processor] = {
            name: bind.type._cached_bind_processor(dialect) for name, bind in binds.items()}
        self.result_processors: list[Processor] = []
        if isinstance(statement, Select):
            self.result_processors = [column.type._cached_result_processor(dialect, None)
                                      for column in statement.selected_columns]
        # For an INSERT into a table: how to fill the columns left out, and the COPY that can take its rows.
        self.defaults: dict[str, Callable[[], Any]] = {}
        if isinstance(statement, Insert) and isinstance(statement.table, Table) and column_keys is not None:
            table = statement.table
            self.defaults = {name: _default_maker(table, name) for name in self.names
                             if name not in column_keys and name in table.c}
        self.copy_sql: str | None = None
        if copy_into is not None and sql.copies(dialect):
            quote = dialect.identifier_preparer.quote
            self.copy_sql = (f"COPY {dialect.identifier_preparer.format_table(copy_into)} "
                             f"({', '.join(quote(name) for name in self.names)}) FROM STDIN")

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """One row's driver-ready parameters."""
        processed = {}
        for name, process in self.processors.items():
            value = values[name]
            processed[name] = process(value) if process is not None else value
        if self.positional:
            return tuple(processed[name] for name in self.names)
        return processed

    def rows(self, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None,
             *, as_tuples: bool = False) -> list[Any]:
        """Many rows' driver-ready parameters, column by column: each distinct scalar is processed once, a
        `shared` value (the same for every row) once in all, a left-out column filled from its default."""
        shared = shared or {}
        columns: list[list[Any]] = []
        count = len(rows)
        for name in self.names:
            process = self.processors[name]
            if name in shared:
                value = shared[name]
                columns.append([process(value) if process is not None else value] * count)
                continue
            fill = self.defaults.get(name) if name not in rows[0] else None
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
        if self.positional or as_tuples:
            return list(zip(*columns, strict=True))
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]

    def run(self, connection: Connection, values: Mapping[str, Any]) -> int:
        """Execute once; returns the driver's rowcount."""
        with _cursor(connection, self.sql) as cursor:
            cursor.execute(self.sql, self.parameters(values))
            return int(cursor.rowcount)

    def run_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]],
                 shared: Mapping[str, Any] | None = None) -> int:
        """One executemany of the rows (see rows()); returns the driver's rowcount (-1 when it cannot tell)."""
        if not rows:
            return 0
        with _cursor(connection, self.sql) as cursor:
            cursor.executemany(self.sql, self.rows(rows, shared))
            return int(cursor.rowcount)

    def insert_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]],
                    shared: Mapping[str, Any] | None = None) -> None:
        """Insert the rows with one COPY (PostgreSQL) or one executemany, inside the connection's transaction; a
        single row with one plain execute."""
        if not rows:
            return
        if len(rows) == 1:
            # One row (a single create): its values as parameters() processes them, no column-wise pass, no COPY.
            values = {**rows[0], **(shared or {})}
            for name, fill in self.defaults.items():
                if name not in values:
                    values[name] = fill()
            self.run(connection, values)
            return
        if self.copy_sql is None:
            self.run_many(connection, rows, shared)
            return
        with _cursor(connection, self.copy_sql) as cursor, cursor.copy(self.copy_sql) as copy:
            for row in self.rows(rows, shared, as_tuples=True):
                copy.write_row(row)

    def first(self, connection: Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row the statement returns, through each column's result processing; None for none."""
        return self._first_on(connection.connection.dbapi_connection, values)

    def _first_on(self, dbapi_connection: Any, values: Mapping[str, Any], *,
                  fetch: bool = True) -> tuple[Any, ...] | None:
        with _driver_cursor(dbapi_connection, self.dialect, self.sql) as cursor:
            cursor.execute(self.sql, self.parameters(values))
            # Fetching is what waits for the result inside a psycopg pipeline: never skipped for a statement that
            # returns rows.
            row = cursor.fetchone() if fetch else None
        return self._processed(row)

    def first_later(self, connection: Connection, values: Mapping[str, Any]) -> Callable[[], tuple[Any, ...] | None]:
        """Execute now, read the first row later: inside pipelined(), the statement goes out with the ones
        after it and its row is read, by calling what this returns, once the block has ended."""
        dialect = self.dialect
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


def _default_maker(table: Table, name: str) -> Callable[[], Any]:
    default = table.c[name].default
    if default is None or not (default.is_scalar or default.is_callable):
        raise ValueError(f"cannot fill {table.name}.{name}: give it a value")
    arg = getattr(default, "arg", None)
    if default.is_scalar:
        return lambda: arg
    assert callable(arg)
    return lambda: arg(None)


def _cursor(connection: Connection, sql_text: str) -> AbstractContextManager[Any]:
    return _driver_cursor(connection.connection.dbapi_connection, connection.dialect, sql_text)


@contextmanager
def _driver_cursor(dbapi_connection: Any, dialect: Dialect, sql_text: str) -> Iterator[Any]:
    cursor = dbapi_connection.cursor()
    try:
        with _translated(dialect, sql_text):
            yield cursor
    finally:
        cursor.close()


@contextmanager
def _translated(dialect: Dialect, sql_text: str | None) -> Iterator[None]:
    """Driver errors as the same exception classes (IntegrityError, OperationalError, ...) as Connection.execute
    raises."""
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql_text, None, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, the statements run inside go to the server together (psycopg's pipeline mode, with the
    transaction's BEGIN when it has not been sent yet) and their results come back together when the block
    ends, or earlier when one of them is read: one round trip instead of one per statement. An error of any
    of them is raised when the block ends. Elsewhere nothing changes."""
    if not sql.pipelines(connection.dialect):
        yield
        return
    with _translated(connection.dialect, None), connection.connection.driver_connection.pipeline():  # type: ignore[union-attr]
        yield


_built: weakref.WeakKeyDictionary[Dialect, dict[Hashable, Compiled]] = weakref.WeakKeyDictionary()


def compiled(connection: Connection, key: Hashable, build: Build, column_keys: Sequence[str] | None = None) -> Compiled:
    """The Compiled form of `build()` for this connection's dialect, built on first use under `key`."""
    return compiled_for(connection.dialect, key, build, column_keys)


def compiled_for(dialect: Dialect, key: Hashable, build: Build, column_keys: Sequence[str] | None = None, *,
                 copy_into: Table | None = None) -> Compiled:
    """compiled() by dialect."""
    built = _built.get(dialect)
    if built is None:
        built = _built.setdefault(dialect, {})
    found = built.get(key)
    if found is None:
        found = built[key] = Compiled(build(), dialect, column_keys, copy_into=copy_into)
    return found


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
                shared: Mapping[str, Any] | None = None) -> None:
    """Insert many rows (all with the same keys; `shared` values go into every row) as fast as the database
    takes them: COPY on PostgreSQL, one executemany elsewhere."""
    if not rows:
        return
    columns = (*rows[0], *(shared or {}))
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
    statement = compiled_for(connection.dialect, ("insert_rows", table, columns), lambda: insert(table), columns,
                             copy_into=table)
    statement.insert_many(connection, rows, shared)


def insert_new_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
                    shared: Mapping[str, Any] | None = None) -> int:
    """Insert many rows, skipping each that conflicts with a stored one (a unique key); returns how many went
    in as the driver counts them (-1 when it cannot tell)."""
    if not rows:
        return 0
    columns = (*rows[0], *(shared or {}))
    statement = compiled(connection, ("insert_new_rows", table, columns),
                         lambda: sql.insert_for(connection.dialect, table).on_conflict_do_nothing(), columns)
    return statement.run_many(connection, rows, shared)


def read_first(engine: Engine, key: Hashable, build: Build, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """One standalone read of a row, on a bare pooled driver connection (see db.bare_connection)."""
    statement = compiled_for(engine.dialect, key, build)
    with bare_connection(engine) as connection:
        return statement._first_on(connection, values)


Step = tuple[Hashable, Build, Mapping[str, Any]]


def run_now(engine: Engine, steps: Sequence[Step]) -> tuple[Any, ...] | None:
    """Run small statements, each given as (key, build, values) like compiled(), as directly as the database
    allows; returns the first row of the last one.

    On SQLite they form one writing transaction on the pooled driver connection, at the write gate like every
    writer (BEGIN IMMEDIATE … COMMIT): half the CPU of a SQLAlchemy execution. On PostgreSQL each runs on its
    own in autocommit, sparing the BEGIN and COMMIT round trips, so only statements that are atomic alone
    belong here.
    """
    dialect = engine.dialect
    statements = [(compiled_for(dialect, key, build), values) for key, build, values in steps]
    if not sql.is_sqlite(dialect):
        with bare_connection(engine) as connection:
            return _run_all(connection, statements)
    pooled = engine.raw_connection()
    try:
        driver = pooled.dbapi_connection
        with _translated(dialect, "BEGIN IMMEDIATE"):
            if isinstance(driver, GatedConnection):
                driver.begin_write()
            else:
                driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        try:
            row = _run_all(driver, statements)
            with _translated(dialect, "COMMIT"):
                driver.commit()  # type: ignore[union-attr]
        except BaseException:
            if driver.in_transaction:  # type: ignore[union-attr]
                driver.rollback()  # type: ignore[union-attr]
            raise
        return row
    finally:
        pooled.close()


def _run_all(dbapi_connection: Any, statements: Sequence[tuple[Compiled, Mapping[str, Any]]]) -> tuple[Any, ...] | None:
    """Execute each statement; the first row of the last one (the ones before it need not return rows)."""
    for statement, values in statements[:-1]:
        statement._first_on(dbapi_connection, values, fetch=False)
    last, values = statements[-1]
    return last._first_on(dbapi_connection, values)
