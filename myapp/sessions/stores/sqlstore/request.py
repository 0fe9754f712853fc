"""The SQL store as one request uses it: its statements in the request's transactions.

A write joins the request's database transaction when the view has opened one
(``request.dbsession``), and so commits or rolls back with the view's own data;
otherwise the session factory queues it until the request's transaction votes. A
read joins that transaction if it has begun. On PostgreSQL a state-changing request
(POST...) loads and writes in a session transaction of its own (``pipeline``).
Everything else runs as the parent store runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import zope.sqlalchemy
from pyramid_tm import is_tm_active
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from zope.interface import implementer

from ...database.requesttm import existing_dbsession, expects_writes
from ...exceptions import error_summary
from ...interfaces import IRequestBoundStore
from ..base import SessionStore
from .guard import store_error
from .operations import SqlOperations
from .pipeline import SessionTransaction

if TYPE_CHECKING:
    from pyramid.request import Request
    from sqlalchemy.orm import Session as DBSession

    from .store import SqlStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@implementer(IRequestBoundStore)
class RequestSqlStore(SqlOperations, SessionStore):
    """The SQL store as one request uses it: the same statements, in the request's
    transactions. Its database session's when the view opened one, else its session
    transaction (state-changing requests on PostgreSQL), else one autocommit statement
    each on the parent store's connections."""

    answered_from_cache = False

    def __init__(self, parent: SqlStore, request: Request, *, session_transaction: bool) -> None:
        self.parent = parent
        self.request = request
        self.statements = parent.statements
        self.authenticator = parent.authenticator
        self._session_txn: SessionTransaction | None = None
        self._may_begin = (
            session_transaction
            and parent.session_transactions
            and parent._held is not None
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

    def _read(self, fn: Callable[[Connection], T]) -> T:
        if not self.in_request_transaction():
            txn = self.session_transaction() or self._begin_session_transaction()
            if txn is not None:
                return fn(txn)  # type: ignore[arg-type]
            # Nothing of this request's transaction to see: read in autocommit on a
            # pooled connection, handed back before the view goes on, instead of
            # beginning the request's transaction for a read (~700 us CPU). A later
            # write's version check refuses what changed since this read.
            return self.parent._read(fn)
        try:
            conn = self._dbsession.connection()
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc
        return self.parent._guarded(conn, fn, commit=False)

    def _begin_session_transaction(self) -> SessionTransaction | None:
        """Begin the session transaction of a state-changing request, once."""
        request = self.request
        if not self._may_begin or not is_tm_active(request):
            return None
        self._may_begin = False
        parent = self.parent
        assert parent._held is not None and parent._statements is not None
        txn = SessionTransaction(
            parent._held,
            parent._statements,
            acquire=parent._acquire_held,
            guard=parent._guard_driver,
        )
        request.tm.get().join(txn)
        request.add_finished_callback(lambda request: txn.close())  # whatever happened
        self._session_txn = txn
        return txn

    def _write(self, fn: Callable[[Connection], T]) -> T:
        if not self.in_request_transaction():
            # Queued writes run in the session transaction; once that has ended
            # (an undo after a later resource failed), each is its own statement.
            txn = self.session_transaction()
            return fn(txn) if txn is not None else self.parent._write(fn)  # type: ignore[arg-type]
        dbsession = self._dbsession
        try:
            conn = dbsession.connection()
        except SQLAlchemyError as exc:
            raise store_error(exc) from exc
        result = self.parent._guarded(conn, fn, commit=False)
        # Core statements are invisible to the ORM: tell zope.sqlalchemy to commit them.
        zope.sqlalchemy.mark_changed(dbsession)
        return result
