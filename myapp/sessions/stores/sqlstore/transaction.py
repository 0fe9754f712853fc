"""A state-changing request's session statements in one transaction (PostgreSQL).

A request whose method says it changes state (POST, PUT, PATCH, DELETE) is expected
to write its session. Its session load begins a transaction in the same round trip
(``BEGIN`` and the ``SELECT`` in one psycopg pipeline) on a held connection, and the
session's writes join it; when the request's transaction votes, the one write and
``COMMIT`` go in one more pipeline. So the load and the write are one transaction and
two round trips, as many as two autocommit statements. A request that only reads
(GET, HEAD) stays on one autocommit SELECT.

The session's queued writes run in it when the request's transaction votes, and
commit it: with their last statement, or right after them. They vote before
SQLAlchemy's commit, so a refused write or COMMIT aborts the view's own database
work too. As a data manager of the request's transaction it ends one that only read
(a failed COMMIT there loses nothing), rolls back on abort, and gives its connection
back at the end of the request whatever happened.

Nothing here is state of our own on the server connection: values are bound by the
server (extended protocol), statements are prepared only by psycopg itself (its
``prepare_threshold``, whose cache psycopg keeps in step with the server, clearing it
on every rollback), and a connection on which anything failed is closed, never handed
to another request. So a rolled-back request cannot break the next one, and behind a
transaction-pooling PgBouncer (``prepare_threshold = None``) every round trip is valid
on whichever server connection serves it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable
from transaction.interfaces import IDataManager
from zope.interface import implementer

from ...exceptions import StoreError
from .driver import CompiledStatements, DriverResult, kept_cursor
from .held import HeldConnections

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: Runs one round trip on the connection under the store's deadline and error mapping.
Guard = Callable[[PoolProxiedConnection, Callable[[], Any]], Any]


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
        pooled = self._connection()

        def run() -> DriverResult:
            driver = pooled.driver_connection
            cursor = kept_cursor(pooled)
            if begin or commit:
                # One round trip: psycopg sends the pipeline's statements and one Sync,
                # and raises the first error when the pipeline ends.
                with driver.pipeline():
                    if begin:
                        cursor.execute("BEGIN", prepare=False)
                    cursor.execute(compiled.sql, values)  # its result stays on the cursor
                    if commit:
                        driver.execute("COMMIT", prepare=False)
            else:
                cursor.execute(compiled.sql, values)
            return DriverResult(cursor.fetchall() if returns_rows else None, cursor.rowcount)

        result = self._run(pooled, run)
        self._begun = True
        if commit:
            self.open, self.committed = False, True
        return result

    def commit_with_next_statement(self) -> None:
        """Send ``COMMIT`` with the next statement: it is the transaction's last."""
        self._commit_with_next = True

    def commit_now(self) -> None:
        """``COMMIT`` what is still open (a no-op once committed with a statement).

        Raises :class:`StoreError` if the COMMIT fails; the connection is then closed,
        which ends the transaction on the server.
        """
        if not (self.open and self._begun):
            self.open = False
            return
        pooled = self._connection()
        self._run(pooled, lambda: kept_cursor(pooled).execute("COMMIT", prepare=False))
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
            try:
                self._pooled = self._acquire()
            except BaseException:
                self.open = False  # the request's later statements run in autocommit
                raise
        return self._pooled

    def _run(self, pooled: PoolProxiedConnection, run: Callable[[], Any]) -> Any:
        """One round trip; if anything fails the connection is closed, not reused."""
        try:
            return self._guard(pooled, run)
        except BaseException as exc:
            self._drop(exc)  # the request's later statements run in autocommit
            raise

    def _drop(self, error: BaseException) -> None:
        self.open = False
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            self._held.discard(pooled, error)

    def _rollback(self) -> None:
        """End the transaction if it is still open, and give its connection back."""
        self.open = False
        pooled = self._pooled
        if pooled is None:
            return
        driver = pooled.driver_connection
        if driver.info.transaction_status != TransactionStatus.IDLE:
            try:
                # psycopg's own rollback: it also drops the statements it prepared on
                # this connection and forgets them, so its cache stays true.
                self._guard(pooled, driver.rollback)
            except Exception as exc:
                log.info("could not end a session transaction: %s", exc)
                self._drop(exc)
                return
        self._pooled = None
        self._held.release(pooled)
