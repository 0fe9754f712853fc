"""Count what actually reaches the stores: SQL statements and Redis commands."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine


class StatementLog:
    def __init__(self) -> None:
        self.statements: list[str] = []
        # A pipeline of statements is one, and one more each time a cursor waits for
        # its rows inside it.
        self.round_trips = 0
        self.pipelines = 0  # each ends with one Sync

    def __len__(self) -> int:
        return len(self.statements)

    def verbs(self) -> list[str]:
        return [verb_of(s) for s in self.statements]

    def writes(self) -> list[str]:
        return [s for s in self.statements if verb_of(s) in {"INSERT", "UPDATE", "DELETE"}]

    def reads(self) -> list[str]:
        return [s for s in self.statements if verb_of(s) == "SELECT"]

    def clear(self) -> None:
        self.statements.clear()


@contextlib.contextmanager
def count_sql(engine: Engine) -> Iterator[StatementLog]:
    """Every statement sent to ``engine``'s database while the block runs.

    On PostgreSQL they are counted at the driver (psycopg's cursor), where both
    SQLAlchemy's statements and the ones the SQL store sends on the driver's
    cursor itself pass; elsewhere with SQLAlchemy's cursor events.
    """
    log = StatementLog()
    if engine.dialect.name == "postgresql":
        with _count_psycopg(engine.url.database, log):
            yield log
        return

    def record(conn, cursor, statement, parameters, context, executemany):
        log.statements.append(statement.strip())
        log.round_trips += 1

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextlib.contextmanager
def _count_psycopg(dbname: str | None, log: StatementLog) -> Iterator[None]:
    def ours(connection) -> bool:
        return connection.info.dbname == dbname

    def record(cursor, statement: str) -> None:
        if ours(cursor.connection):
            log.statements.append(statement.strip())
            if not in_pipeline(cursor.connection):
                log.round_trips += 1

    def record_pipeline(connection) -> None:
        if ours(connection):
            log.round_trips += 1
            log.pipelines += 1

    def record_fetch(cursor) -> None:
        if ours(cursor.connection):
            log.round_trips += 1

    restore_statements = on_psycopg_statement(record)
    restore_pipelines = on_psycopg_pipeline(record_pipeline)
    restore_fetches = on_psycopg_pipeline_fetch(record_fetch)
    try:
        yield
    finally:
        restore_fetches()
        restore_pipelines()
        restore_statements()


def verb_of(statement: str) -> str:
    """``SELECT``, ``UPDATE``, ``BEGIN``...: the statement's first word."""
    return statement.split(None, 1)[0].upper()


def in_pipeline(connection) -> bool:
    """Whether psycopg queues this connection's statements in a pipeline."""
    return connection.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF


def on_psycopg_statement(record: Callable[[Any, str], None]) -> Callable[[], None]:
    """Call ``record(cursor, statement)`` before every statement any psycopg cursor
    executes in this process; returns what undoes it."""
    original = psycopg.Cursor.execute

    def execute(cursor, query, *args, **kwargs):
        record(cursor, str(query))
        return original(cursor, query, *args, **kwargs)

    def restore() -> None:
        psycopg.Cursor.execute = original

    psycopg.Cursor.execute = execute
    return restore


def on_psycopg_pipeline(record: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``record(connection)`` when a psycopg pipeline block ends: its statements
    went to the server together, one round trip (psycopg syncs once at the end)."""
    original = psycopg.Connection.pipeline

    @contextlib.contextmanager
    def pipeline(connection):
        with original(connection) as opened:
            yield opened
        record(connection)

    def restore() -> None:
        psycopg.Connection.pipeline = original

    psycopg.Connection.pipeline = pipeline
    return restore


def on_psycopg_pipeline_fetch(record: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``record(cursor)`` when a cursor fetches rows inside a pipeline before
    they arrived: psycopg then asks the server for them (a flush request) and waits,
    one round trip within the pipeline, which stays open."""
    original = psycopg.Cursor.fetchall

    def fetchall(cursor):
        if cursor.pgresult is None and in_pipeline(cursor.connection):
            record(cursor)
        return original(cursor)

    def restore() -> None:
        psycopg.Cursor.fetchall = original

    psycopg.Cursor.fetchall = fetchall
    return restore


class RedisCommandLog:
    """Wraps a real client's ``execute_command`` so every command sent is recorded."""

    def __init__(self, client) -> None:
        self.client = client
        self.commands: list[str] = []
        self._original = client.execute_command

        def execute_command(*args, **kwargs):
            self.commands.append(str(args[0]).upper())
            return self._original(*args, **kwargs)

        client.execute_command = execute_command

    def __len__(self) -> int:
        return len(self.commands)

    def clear(self) -> None:
        self.commands.clear()

    def restore(self) -> None:
        self.client.execute_command = self._original
