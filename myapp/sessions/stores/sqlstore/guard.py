"""Every SQL call under the store's deadline, and driver errors as :class:`StoreError`."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.engine import Connection, Engine

from ...database.deadline import Deadline, Watchdog
from ...exceptions import StoreError, error_summary


def store_error(
    exc: Exception, deadline: Deadline | None = None, timeout: float = 0.0
) -> StoreError:
    if deadline is not None and deadline.fired:
        return StoreError(
            "sql", "timeout", f"no answer within {timeout:g}s (frozen or overloaded?)"
        )
    driver_error = getattr(exc, "orig", None) or exc
    if isinstance(driver_error, psycopg.errors.QueryCanceled):
        # The server answered: it cancelled one statement (statement_timeout, a lock
        # wait, an operator's pg_cancel_backend). Not the silence of a frozen server.
        return StoreError("sql", "query_canceled", error_summary(exc))
    if isinstance(driver_error, psycopg.errors.ReadOnlySqlTransaction):
        # SQLSTATE 25006: a standby, or a primary fenced read-only (a switchover).
        return StoreError("sql", "read_only", error_summary(exc))
    kind = "timeout" if "timeout" in str(exc).lower() else type(exc).__name__.lower()
    return StoreError("sql", kind, error_summary(exc))


def fileno_of(conn: Connection) -> int | None:
    """The socket under a connection, or None (SQLite has none)."""
    return driver_fileno(conn.connection.dbapi_connection)


def driver_fileno(dbapi_connection: Any) -> int | None:
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return None
    try:
        return int(fileno())
    except Exception:  # closed: there is no socket to guard
        return None


def guard_pre_ping(engine: Engine, watchdog: Watchdog, timeout: float) -> None:
    """Put the pool's pre-ping under a deadline too.

    The ping runs on checkout, before any statement of ours, and on a frozen server
    it blocks like any query. A ping that fails marks the connection dead; the pool
    then opens a new one (bounded by ``connect_timeout``).
    """
    dialect = engine.dialect
    if getattr(dialect, "_myapp_guarded_ping", False):
        return
    plain_ping = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        fileno = getattr(dbapi_connection, "fileno", None)
        with watchdog.guard(fileno() if fileno else None, timeout, "pool pre-ping"):
            return plain_ping(dbapi_connection)

    dialect.do_ping = do_ping  # type: ignore[method-assign]
    dialect._myapp_guarded_ping = True  # type: ignore[attr-defined]
