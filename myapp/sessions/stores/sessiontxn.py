"""A state-changing request's session statements in one transaction (PostgreSQL).

A request whose method says it changes state (POST, PUT, PATCH, DELETE) is expected
to write its session. Its session load begins a transaction in the same round trip
(``BEGIN; SELECT ...``) on a held connection, and the session's writes join it; when
the request's transaction votes, the one write and ``COMMIT`` go in one more round
trip. So the load and the write are one transaction and two round trips, as many as
two autocommit statements. A request that only reads (GET, HEAD) stays on one
autocommit SELECT.

The session's queued writes run in it when the request's transaction votes, and
commit it: with their last statement, or right after them. They vote before
SQLAlchemy's commit, so a refused write or COMMIT aborts the view's own database
work too. As a data manager of the request's transaction it ends one that only read
(a failed COMMIT there loses nothing), rolls back on abort, and gives its connection
back at the end of the request whatever happened. After a failed statement it rolls
back at once and the request's later statements run in autocommit.

Several statements in one round trip need the simple query protocol, so values are
bound on the client (psycopg's ``ClientCursor``, which quotes every value). To keep
the server from parsing and planning the same statements on every request (~70 us
of its CPU per write request), each connection prepares the store's statements once
(``PREPARE``, in one round trip on its first session transaction) and the
transaction sends ``EXECUTE name(values)``. Prepared statements live in the server
session: behind PgBouncer use session pooling, as for psycopg's own prepared
statements.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable
from transaction.interfaces import IDataManager
from zope.interface import implementer

from .base import StoreError
from .heldconnections import HeldConnections
from .sqldriver import CompiledStatements, DriverResult

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: Runs one round trip on the connection under the store's deadline and error mapping.
Guard = Callable[[PoolProxiedConnection, Callable[[], Any]], Any]

_CLIENT_CURSOR = "myapp.sessions.client_cursor"


def expects_writes(method: str) -> bool:
    """Whether a request with this HTTP method is expected to change state."""
    return method.upper() not in SAFE_METHODS


@implementer(IDataManager)
class SessionTransaction:
    """One request's session statements in one database transaction."""

    def __init__(
        self,
        held: HeldConnections,
        statements: CompiledStatements,
        *,
        acquire: Callable[[], PoolProxiedConnection],
        guard: Guard,
    ) -> None:
        self._held = held
        self._statements = statements
        self._acquire = acquire
        self._guard = guard
        self._pooled: PoolProxiedConnection | None = None
        self._begun = False
        self._commit_with_next = False
        self.open = True  # statements may still join it
        self.committed = False
        self.transaction_manager = None

    # -- statements --------------------------------------------------------------
    def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> DriverResult:
        """Run ``statement`` in the transaction (``execute`` as the store calls it)."""
        compiled = self._statements(statement)
        values = {**compiled.defaults, **parameters} if parameters else compiled.defaults
        begin = not self._begun
        commit = self._commit_with_next
        returns_rows = compiled.returns_rows
        try:
            pooled = self._connection()
            sql = _prepared(pooled).get(compiled.sql) or compiled.sql
            if begin:
                sql = "BEGIN; " + sql
            if commit:
                sql += "; COMMIT"

            def run() -> DriverResult:
                cursor = _client_cursor(pooled)
                cursor.execute(sql, values)
                if begin:
                    cursor.nextset()  # past BEGIN's result, to the statement's
                return DriverResult(cursor.fetchall() if returns_rows else None, cursor.rowcount)

            result = self._guard(pooled, run)
        except BaseException:
            self._rollback()  # the request's later statements run in autocommit
            raise
        self._begun = True
        if commit:
            self.open, self.committed = False, True
        return result

    def commit_with_next_statement(self) -> None:
        """Send ``COMMIT`` with the next statement: it is the transaction's last."""
        self._commit_with_next = True

    def commit_now(self) -> None:
        """``COMMIT`` what is still open (a no-op once committed with a statement).

        Raises :class:`StoreError` if the COMMIT fails; the transaction is then
        rolled back and its connection given back or dropped.
        """
        if not (self.open and self._begun):
            self.open = False
            return
        pooled = self._connection()
        try:
            self._guard(pooled, lambda: _client_cursor(pooled).execute("COMMIT"))
        except BaseException:
            self._rollback()
            raise
        self.open, self.committed = False, True

    # -- the request's transaction --------------------------------------------------
    def abort(self, txn: object) -> None:
        self._rollback()

    def tpc_begin(self, txn: object) -> None:
        pass

    def commit(self, txn: object) -> None:
        pass

    def tpc_vote(self, txn: object) -> None:
        # Writes were committed by the session's queued writes as they voted (before
        # this, by sort key). What is left open here only read: a COMMIT that fails
        # loses nothing, so the request's answer stands.
        try:
            self.commit_now()
        except StoreError as exc:
            log.info("a read-only session transaction could not commit: %s", exc)

    def tpc_finish(self, txn: object) -> None:
        self.close()

    def tpc_abort(self, txn: object) -> None:
        self._rollback()

    def sortKey(self) -> str:
        # After the queued session writes ("~myapp.sessions:<id>", which run in this
        # transaction), before zope.sqlalchemy ("~sqlalchemy...").
        return "~myapp.sessions~transaction"

    def close(self) -> None:
        """Roll back what is still open and give the connection back (idempotent)."""
        self._rollback()

    # -- internals ------------------------------------------------------------------
    def _connection(self) -> PoolProxiedConnection:
        if self._pooled is None:
            pooled = self._acquire()
            try:
                if _prepared(pooled) is _NOTHING_PREPARED:
                    self._prepare(pooled)
            except BaseException as exc:
                self._held.release_after(exc, pooled)
                raise
            self._pooled = pooled
        return self._pooled

    def _prepare(self, pooled: PoolProxiedConnection) -> None:
        """``PREPARE`` the store's statements on this connection, in one round trip."""
        executes: dict[str, str] = {}
        prepares: list[str] = []
        for compiled in self._statements.kept():
            prepare, execute = _as_prepared(compiled.sql)
            prepares.append(prepare)
            executes[compiled.sql] = execute
        self._guard(pooled, lambda: _client_cursor(pooled).execute("; ".join(prepares)))
        pooled.info[_PREPARED] = (pooled.driver_connection, executes)

    def _rollback(self) -> None:
        """End the transaction if it is still open, and give its connection back."""
        self.open = False
        pooled, self._pooled = self._pooled, None
        if pooled is None:
            return
        driver = pooled.driver_connection
        try:
            if driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self._guard(pooled, lambda: _client_cursor(pooled).execute("ROLLBACK"))
        except Exception as exc:
            log.info("could not end a session transaction: %s", exc)
            self._held.discard(pooled, exc)
            return
        self._held.release(pooled)


_PREPARED = "myapp.sessions.prepared"
_NOTHING_PREPARED: dict[str, str] = {}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _prepared(pooled: PoolProxiedConnection) -> dict[str, str]:
    """Statement text -> the ``EXECUTE`` that runs it on this connection (if prepared)."""
    kept = pooled.info.get(_PREPARED)
    if kept is None or kept[0] is not pooled.driver_connection:  # new or reconnected
        return _NOTHING_PREPARED
    return kept[1]


def _as_prepared(sql: str) -> tuple[str, str]:
    """The ``PREPARE`` and ``EXECUTE`` texts of a statement with ``%(name)s``
    placeholders: each distinct name becomes ``$n``, in order of first use. The name
    (``myapp_<verb>_<hash of the text>``) is the same in every process and on every
    connection."""
    if "%%" in sql:
        raise ValueError(f"statement has a literal percent sign: {sql}")
    verb = sql.split(None, 1)[0].lower()  # readable in pg_stat_activity and the logs
    name = f"myapp_{verb}_{hashlib.sha256(sql.encode()).hexdigest()[:16]}"
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    body = _PLACEHOLDER.sub(number, sql)
    arguments = ", ".join(f"%({parameter})s" for parameter in order)
    execute = f"EXECUTE {name}({arguments})" if order else f"EXECUTE {name}"
    return f"PREPARE {name} AS {body}", execute


def _client_cursor(pooled: PoolProxiedConnection) -> psycopg.ClientCursor:
    """The client-binding cursor kept with a pooled connection."""
    driver = pooled.driver_connection
    kept = pooled.info.get(_CLIENT_CURSOR)
    if kept is None or kept[0] is not driver:
        kept = pooled.info[_CLIENT_CURSOR] = (driver, psycopg.ClientCursor(driver))
    return kept[1]
