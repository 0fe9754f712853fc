"""The SQL store's hot path on PostgreSQL: its Core statements run on the driver's cursor.

Statements are still written with SQLAlchemy Core (``statements``) and compiled once
for the engine's dialect. Only their execution skips SQLAlchemy's ``Connection``,
which cost ~45 us CPU per statement in-process on top of psycopg's own ~40 us, and
~85 us per request through waitress. Used only where the store owns a pooled
connection for one autocommit statement; statements inside the request's database
transaction go through that transaction's ``Connection`` as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select
from sqlalchemy.sql.expression import Executable


class DriverResult:
    """The part of SQLAlchemy's ``Result`` that the SQL store uses."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Sequence[Any]] | None, rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Sequence[Any] | None:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def one(self) -> Sequence[Any]:
        if self._rows is None or len(self._rows) != 1:
            raise ValueError(f"expected exactly one row, got {len(self._rows or ())}")
        return self._rows[0]

    def all(self) -> list[Sequence[Any]]:
        return list(self._rows or ())


class Compiled(NamedTuple):
    sql: str
    defaults: dict[str, Any]
    returns_rows: bool
    #: A SELECT: it writes nothing, so a transaction that ran only such is not undone.
    only_reads: bool


class CompiledStatements:
    """SQL text and default parameters of Core statements, compiled for one dialect.

    Statements given to ``keep`` are compiled once and remembered; any other is
    compiled on each use (the store's rare operations build theirs per call).
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._kept: dict[Executable, Compiled] = {}

    def keep(self, *statements: Executable) -> None:
        for statement in statements:
            self._kept[statement] = self._compile(statement)

    def kept(self) -> list[Compiled]:
        """The statements given to ``keep``, compiled."""
        return list(self._kept.values())

    def __call__(self, statement: Executable) -> Compiled:
        kept = self._kept.get(statement)
        return kept if kept is not None else self._compile(statement)

    def _compile(self, statement: Executable) -> Compiled:
        compiled = statement.compile(dialect=self._dialect)  # type: ignore[attr-defined]
        # PostgreSQL through psycopg binds every type this store uses (text, integer,
        # timestamptz) without a SQLAlchemy processor, so the values go as they are.
        if compiled._bind_processors:
            raise TypeError(f"statement needs bind processors: {compiled.string}")
        # Known here, so the cursor's description (costly in psycopg) is never needed.
        returns_rows = bool(getattr(statement, "exported_columns", ()))
        only_reads = isinstance(statement, Select)  # text() counts as a write: the safe side
        return Compiled(compiled.string, dict(compiled.params), returns_rows, only_reads)


_CURSOR = "myapp.sessions.cursor"


def kept_cursor(pooled: Any) -> Any:
    """The cursor kept with a pooled connection, made on its first use.

    It lives in the pool record's ``info`` next to the DB-API connection it belongs to
    (a reconnected record gets a new one): a new cursor per statement costs psycopg
    ~6 us. A pooled connection serves one thread at a time, and so does its cursor.
    """
    driver = pooled.driver_connection
    kept = pooled.info.get(_CURSOR)
    if kept is None or kept[0] is not driver:
        kept = pooled.info[_CURSOR] = (driver, driver.cursor())
    return kept[1]


class DriverConnection:
    """Runs the store's Core statements on a DB-API cursor: ``execute`` like
    SQLAlchemy's ``Connection`` for the calls the store makes."""

    __slots__ = ("_compiled", "_cursor")

    def __init__(self, cursor: Any, compiled: CompiledStatements) -> None:
        self._cursor = cursor
        self._compiled = compiled

    def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> DriverResult:
        sql, values, returns_rows, _ = self._compiled(statement)
        if parameters:
            values = {**values, **parameters}
        cursor = self._cursor
        cursor.execute(sql, values)
        return DriverResult(cursor.fetchall() if returns_rows else None, cursor.rowcount)
