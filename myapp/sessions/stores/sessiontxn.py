"""A state-changing request's session statements in one transaction (PostgreSQL).

A request whose method says it changes state (POST, PUT, PATCH, DELETE) is expected
to write its session. Its session load begins a transaction in the same round trip
(``BEGIN; SELECT ...``) on a held connection, and the session's writes join it; when
the request's transaction votes, the one write and ``COMMIT`` go in one more round
trip. So the load and the write are one transaction and two round trips, as many as
two autocommit statements. A request that only reads (GET, HEAD) stays on one
autocommit SELECT.

The transaction joins the request's own as a data manager: it commits when that
votes (after the session's queued writes, before SQLAlchemy's commit, so a refused
COMMIT aborts the rest), rolls back on abort, and gives its connection back at the
end of the request whatever happened. After a failed statement it rolls back at once
and the request's later statements run in autocommit.

Statements are bound on the client (psycopg's ``ClientCursor``, which quotes every
value) because the extended protocol takes one statement per message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable
from transaction.interfaces import IDataManager
from zope.interface import implementer

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

    def __init__(self, held: HeldConnections, statements: CompiledStatements, guard: Guard) -> None:
        self._held = held
        self._statements = statements
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
        sql, values, returns_rows = self._statements(statement)
        if parameters:
            values = {**values, **parameters}
        begin = not self._begun
        commit = self._commit_with_next
        if begin:
            sql = "BEGIN; " + sql
        if commit:
            sql += "; COMMIT"
        pooled = self._connection()

        def run() -> DriverResult:
            cursor = _client_cursor(pooled)
            cursor.execute(sql, values)
            if begin:
                cursor.nextset()  # past BEGIN's result, to the statement's
            return DriverResult(cursor.fetchall() if returns_rows else None, cursor.rowcount)

        try:
            result = self._guard(pooled, run)
        except BaseException:
            self._end("ROLLBACK")
            raise
        self._begun = True
        if commit:
            self.open, self.committed = False, True
        return result

    def commit_with_next_statement(self) -> None:
        """Send ``COMMIT`` with the next statement: it is the transaction's last."""
        self._commit_with_next = True

    # -- the request's transaction --------------------------------------------------
    def abort(self, txn: object) -> None:
        self._end("ROLLBACK")

    def tpc_begin(self, txn: object) -> None:
        pass

    def commit(self, txn: object) -> None:
        pass

    def tpc_vote(self, txn: object) -> None:
        if self.open and self._begun:
            pooled = self._connection()
            try:
                self._guard(pooled, lambda: _client_cursor(pooled).execute("COMMIT"))
            except BaseException:
                self._end("ROLLBACK")
                raise
            self.committed = True
        self.open = False

    def tpc_finish(self, txn: object) -> None:
        self.close()

    def tpc_abort(self, txn: object) -> None:
        self._end("ROLLBACK")

    def sortKey(self) -> str:
        # After the queued session writes ("~myapp.sessions:<id>", which run in this
        # transaction), before zope.sqlalchemy ("~sqlalchemy...").
        return "~myapp.sessions~transaction"

    def close(self) -> None:
        """Roll back what is still open and give the connection back (idempotent)."""
        self._end("ROLLBACK")

    # -- internals ------------------------------------------------------------------
    def _connection(self) -> PoolProxiedConnection:
        if self._pooled is None:
            self._pooled = self._held.acquire()
        return self._pooled

    def _end(self, command: str) -> None:
        self.open = False
        pooled, self._pooled = self._pooled, None
        if pooled is None:
            return
        driver = pooled.driver_connection
        try:
            if driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self._guard(pooled, lambda: _client_cursor(pooled).execute(command))
        except Exception as exc:
            log.info("could not end a session transaction: %s", exc)
            self._held.release_after(exc, pooled, drop=True)
            return
        self._held.release(pooled)


def _client_cursor(pooled: PoolProxiedConnection) -> psycopg.ClientCursor:
    """The client-binding cursor kept with a pooled connection."""
    driver = pooled.driver_connection
    kept = pooled.info.get(_CLIENT_CURSOR)
    if kept is None or kept[0] is not driver:
        kept = pooled.info[_CLIENT_CURSOR] = (driver, psycopg.ClientCursor(driver))
    return kept[1]
