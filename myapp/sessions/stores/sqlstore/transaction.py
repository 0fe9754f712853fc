"""The SQL store as one request uses it: its statements in the request's transactions,
and the session transaction.

A write joins the request's database transaction when the view has opened one
(``request.dbsession``), and so commits or rolls back with the view's own data;
otherwise the session factory queues it until the request's transaction votes. A
read joins that transaction if it has begun. On PostgreSQL a state-changing request
(POST...) loads and writes in a session transaction of its own. Everything else runs
as the parent store runs it.

The session transaction: a state-changing request's session statements in one
database transaction, implicit in one psycopg pipeline (PostgreSQL).

A request whose method says it changes state (POST, PUT, PATCH, DELETE) is expected
to write its session. Its session load opens a psycopg pipeline on a held connection
and sends the ``SELECT`` without a Sync: PostgreSQL runs the statements of a pipeline
up to its next Sync as one implicit transaction, so the load's snapshot stays open
while the view runs. When the request's transaction votes, the session's one write
goes into the same pipeline and the pipeline ends: its Sync commits the load and the
write together, or rolls both back if the write failed. One transaction, two round
trips, and no ``BEGIN`` or ``COMMIT`` statement to send, parse or run (12% less CPU
per write than sending them in the pipelines, through waitress).

Only reads ever wait in the implicit transaction. A write that is not the last
statement turns it into an explicit one: ``BEGIN`` in a pipeline's implicit
transaction makes it a regular transaction block that keeps what ran before, and a
Sync then brings back every result while the transaction stays open; from there on
``COMMIT`` and ``ROLLBACK`` are sent as usual. So ending early never needs to undo a
write in the implicit form: a Sync there ends a transaction that only read.

The session's queued writes run in it when the request's transaction votes, and
commit it: with their last statement, or right after them. They vote before
SQLAlchemy's commit, so a refused write or COMMIT aborts the view's own database
work too. As a data manager of the request's transaction it ends one that only read
(a failed commit there loses nothing), rolls back on abort, and gives its connection
back at the end of the request whatever happened.

Nothing here is state of our own on the server connection: values are bound by the
server (extended protocol), statements are prepared only by psycopg itself (its
``prepare_threshold``, whose cache psycopg keeps in step with the server, clearing it
on every rollback), and a connection on which anything failed is closed, never handed
to another request. So a rolled-back request cannot break the next one, and behind a
transaction-pooling PgBouncer (``prepare_threshold = None``, no session transactions)
every round trip is valid on whichever server connection serves it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import zope.sqlalchemy
from psycopg.pq import TransactionStatus
from pyramid_tm import is_tm_active
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable
from transaction.interfaces import IDataManager
from zope.interface import implementer

from ...database.requesttm import existing_dbsession, expects_writes
from ...exceptions import StoreError, error_summary
from ...interfaces import (
    IPurgeable,
    IRequestBoundStore,
    IStoreStatistics,
    IUserSessions,
    IUserSessionsTable,
)
from .connection import Compiled, Driver, DriverResult, kept_cursor, store_error
from .store import SqlOperations, SqlStoreForm

if TYPE_CHECKING:
    from pyramid.request import Request
    from sqlalchemy.orm import Session as DBSession

    from .store import SqlStore

log = logging.getLogger(__name__)
T = TypeVar("T")
Values = Mapping[str, Any]


@implementer(IRequestBoundStore, IUserSessions, IPurgeable, IStoreStatistics, IUserSessionsTable)
class RequestSqlStore(SqlStoreForm):
    """The SQL store as one request uses it: the same statements, in the request's
    transactions. Its database session's when the view opened one, else its session
    transaction (state-changing requests on PostgreSQL), else one autocommit statement
    each on the parent store's connections."""

    answered_from_cache = False

    def __init__(self, parent: SqlStore, request: Request, *, session_transaction: bool) -> None:
        self.parent = parent
        self.request = request
        self.operations = SqlOperations(
            parent.statements, parent.authenticator, read=self.run_read, write=self.run_write
        )
        self._session_txn: SessionTransaction | None = None
        self._may_begin = (
            session_transaction
            and parent.session_transactions
            and parent.driver is not None
            and expects_writes(request.method)
        )

    def bind(self, request: Request) -> RequestSqlStore:
        return self.parent.bind(request)

    def check(self) -> None:
        self.parent.check()

    def close(self) -> None:
        """End this request's session transaction, if any; the parent keeps its pool."""
        if self._session_txn is not None:
            self._session_txn.close()

    def abandon(self) -> None:
        """Roll back the request's database transaction now.

        A save that fails in the before-commit hook leaves the transaction active:
        pyramid_tm does not abort it, so its row locks would be held (blocking every
        retry of the same session) until the request object is collected.
        """
        dbsession = self.request.__dict__.get("dbsession")
        if dbsession is None:
            return
        try:
            dbsession.rollback()
        except SQLAlchemyError as exc:
            log.info("rolling back after a failed session save failed too: %s", error_summary(exc))

    def in_request_transaction(self) -> bool:
        dbsession = existing_dbsession(self.request)
        return dbsession is not None and dbsession.in_transaction()

    def session_transaction(self) -> SessionTransaction | None:
        txn = self._session_txn
        return txn if txn is not None and txn.open else None

    @property
    def _dbsession(self) -> DBSession:
        return self.request.dbsession

    # -- how statements run ------------------------------------------------------
    def run_read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn``'s one read in the request's transactions."""
        if not self.in_request_transaction():
            txn = self.session_transaction() or self._begin_session_transaction()
            if txn is not None:
                return fn(txn)  # type: ignore[arg-type]
            # Nothing of this request's transaction to see: read in autocommit on a
            # pooled connection, handed back before the view goes on, instead of
            # beginning the request's transaction for a read (~700 us CPU). A later
            # write's version check refuses what changed since this read.
            return self.parent.run_read(fn)
        return self.parent.guard.connection(self._request_connection(), fn, commit=False)

    def _begin_session_transaction(self) -> SessionTransaction | None:
        """Begin the session transaction of a state-changing request, once."""
        request = self.request
        if not self._may_begin or not is_tm_active(request):
            return None
        self._may_begin = False
        driver = self.parent.driver
        assert driver is not None
        txn = SessionTransaction(driver)
        request.tm.get().join(txn)
        request.add_finished_callback(lambda request: txn.close())  # whatever happened
        self._session_txn = txn
        return txn

    def run_write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn``'s one write in the request's transactions."""
        if not self.in_request_transaction():
            # Queued writes run in the session transaction; once that has ended
            # (an undo after a later resource failed), each is its own statement.
            txn = self.session_transaction()
            return fn(txn) if txn is not None else self.parent.run_write(fn)  # type: ignore[arg-type]
        result = self.parent.guard.connection(self._request_connection(), fn, commit=False)
        # Core statements are invisible to the ORM: tell zope.sqlalchemy to commit them.
        zope.sqlalchemy.mark_changed(self._dbsession)
        return result

    def _request_connection(self) -> Connection:
        """The connection of the request's database transaction (begun if it was not)."""
        try:
            return self._dbsession.connection()
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc


# -- the session transaction ---------------------------------------------------------


@implementer(IDataManager)
class SessionTransaction:
    """One request's session statements in one database transaction."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._pooled: PoolProxiedConnection | None = None
        # While the transaction is implicit: the pipeline it lives in, ended by a Sync.
        self._pipeline: ExitStack | None = None
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
        compiled = self._driver.compiled(statement)
        values = {**compiled.defaults, **parameters} if parameters else compiled.defaults
        commit = self._commit_with_next
        pooled = self._connection()
        if not self._begun:
            step = self._first
        elif self._pipeline is not None:
            step = self._in_implicit
        else:
            step = self._in_explicit
        result = self._run(pooled, lambda: step(pooled, compiled, values, commit))
        self._begun = True
        if commit:
            self.open, self.committed = False, True
        return result

    def commit_with_next_statement(self) -> None:
        """Commit with the next statement: it is the transaction's last."""
        self._commit_with_next = True

    def commit_now(self) -> None:
        """Commit what is still open (a no-op once committed with a statement).

        Raises :class:`StoreError` if the commit fails; the connection is then closed,
        which ends the transaction on the server.
        """
        if not (self.open and self._begun):
            self.open = False
            return
        pooled = self._connection()
        if self._pipeline is not None:
            self._run(pooled, self._sync)
        else:
            self._run(pooled, lambda: kept_cursor(pooled).execute("COMMIT", prepare=False))
        self.open, self.committed = False, True

    # -- one round trip each -----------------------------------------------------
    def _first(
        self, pooled: PoolProxiedConnection, compiled: Compiled, values: Values, commit: bool
    ) -> DriverResult:
        driver = pooled.driver_connection
        cursor = kept_cursor(pooled)
        if commit:  # the only statement: a transaction of its own (autocommit)
            cursor.execute(compiled.sql, values)
        elif compiled.only_reads:
            # No Sync: the transaction stays open, implicit, in the pipeline. psycopg
            # fetches the rows with a flush request.
            pipeline = ExitStack()
            pipeline.enter_context(driver.pipeline())
            self._pipeline = pipeline
            cursor.execute(compiled.sql, values)
        else:
            with driver.pipeline():
                cursor.execute("BEGIN", prepare=False)
                cursor.execute(compiled.sql, values)
        return _result(cursor, compiled)

    def _in_implicit(
        self, pooled: PoolProxiedConnection, compiled: Compiled, values: Values, commit: bool
    ) -> DriverResult:
        cursor = kept_cursor(pooled)
        if commit:
            cursor.execute(compiled.sql, values)
            self._sync()  # commits the load and this write together, or neither
        elif compiled.only_reads:
            cursor.execute(compiled.sql, values)
        else:
            # A write that others follow: make the transaction explicit (BEGIN keeps
            # what ran before), and Sync for its result while the transaction stays open.
            cursor.execute("BEGIN", prepare=False)
            cursor.execute(compiled.sql, values)
            self._sync()
        return _result(cursor, compiled)

    def _in_explicit(
        self, pooled: PoolProxiedConnection, compiled: Compiled, values: Values, commit: bool
    ) -> DriverResult:
        driver = pooled.driver_connection
        cursor = kept_cursor(pooled)
        if commit:
            with driver.pipeline():  # one round trip: the statement, COMMIT, one Sync
                cursor.execute(compiled.sql, values)
                driver.execute("COMMIT", prepare=False)
        else:
            cursor.execute(compiled.sql, values)
        return _result(cursor, compiled)

    def _sync(self) -> None:
        """End the pipeline: its Sync ends an implicit transaction, and psycopg
        fetches every result still due (raising the first error)."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()

    # -- the request's transaction --------------------------------------------------
    def abort(self, txn: object) -> None:
        self._rollback()

    def tpc_begin(self, txn: object) -> None:
        pass

    def commit(self, txn: object) -> None:
        pass

    def tpc_vote(self, txn: object) -> None:
        # Writes were committed by the session's queued writes as they voted (before
        # this, by sort key). What is left open here only read: a commit that fails
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
                self._pooled = self._driver.acquire()
            except BaseException:
                self.open = False  # the request's later statements run in autocommit
                raise
        return self._pooled

    def _run(self, pooled: PoolProxiedConnection, run: Callable[[], Any]) -> Any:
        """One round trip; if anything fails the connection is closed, not reused."""
        try:
            return self._driver.guard.driver(pooled, run)
        except BaseException as exc:
            self._drop(exc)  # the request's later statements run in autocommit
            raise

    def _drop(self, error: BaseException) -> None:
        self.open = False
        pipeline, self._pipeline = self._pipeline, None
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            self._driver.held.discard(pooled, error)
        if pipeline is not None:
            # After the close: psycopg's exit then fails at once, with no round trip
            # to a server that may not answer, instead of when the garbage collector
            # finds it.
            with suppress(Exception):
                pipeline.close()

    def _rollback(self) -> None:
        """End the transaction if it is still open, and give its connection back."""
        self.open = False
        pooled = self._pooled
        if pooled is None:
            return
        driver = pooled.driver_connection
        try:
            if self._pipeline is not None:
                # Only reads ran in it: the Sync that ends it undoes nothing.
                self._driver.guard.driver(pooled, self._sync)
            elif driver.info.transaction_status != TransactionStatus.IDLE:
                # psycopg's own rollback: it also drops the statements it prepared on
                # this connection and forgets them, so its cache stays true.
                self._driver.guard.driver(pooled, driver.rollback)
        except Exception as exc:
            log.info("could not end a session transaction: %s", exc)
            self._drop(exc)
            return
        self._pooled = None
        self._driver.held.release(pooled)


def _result(cursor: Any, compiled: Compiled) -> DriverResult:
    # In a pipeline psycopg fetches what is still due (with a flush request) here.
    return DriverResult(cursor.fetchall() if compiled.returns_rows else None, cursor.rowcount)
