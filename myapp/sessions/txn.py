"""Joining session writes that have no database transaction to join to the request's.

Redis and the memory store know nothing of transactions, and a view that did no
database work has no transaction for the SQL store's write to join. Such writes are
queued and carried out when the request's transaction votes, before SQLAlchemy's
commit (which votes last). If a later resource fails, ``tpc_abort`` puts back what
was written. In a state-changing request on PostgreSQL they run in its session
transaction (``stores/sqlstore/transaction.py``) and commit it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import transaction
from transaction.interfaces import IDataManager
from zope.interface import implementer

from .exceptions import StaleSession, StoreError
from .stores import base
from .stores.base import SessionRecord, SessionStore

if TYPE_CHECKING:
    from .stores.sqlstore.transaction import SessionTransaction

log = logging.getLogger(__name__)

Undo = Callable[[], None]


@implementer(IDataManager)
class DeferredWrites:
    """A data manager holding session writes until the transaction votes."""

    def __init__(
        self,
        store: SessionStore,
        txn: transaction.interfaces.ITransaction,
        *,
        session_transaction: Callable[[], SessionTransaction | None] | None = None,
        on_stale: Callable[[StaleSession], None],
        on_error: Callable[[StoreError], Exception] | None = None,
    ) -> None:
        self.store = store
        # The request-bound store's ``session_transaction``: asked when the transaction
        # votes, since a failed statement may have closed it since.
        self.session_transaction = session_transaction
        self.on_stale = on_stale
        self.on_error = on_error
        self.transaction_manager = None
        self._pending: list[Callable[[], Undo | None]] = []
        self._undo: list[Undo] = []
        txn.join(self)

    # -- queueing ---------------------------------------------------------
    def save(
        self, record: SessionRecord, expected_version: int | None, previous: SessionRecord | None
    ) -> None:
        def run() -> Undo | None:
            self.store.save(record, expected_version)
            if previous is None:
                return lambda: self.store.delete(record.key)
            return lambda: self.store.delete(record.key) or self.store.save(previous, None)

        self._pending.append(run)

    def adopt(self, record: SessionRecord) -> None:
        """Store a session read through from another store; undone by deleting it here."""

        def run() -> Undo | None:
            base.adopt(self.store, record)
            return lambda: self.store.delete(record.key)

        self._pending.append(run)

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> None:
        self._pending.append(lambda: self.store.touch(record, last_active, expires, now) and None)

    def delete(self, key: str, previous: SessionRecord | None) -> None:
        def run() -> Undo | None:
            self.store.delete(key)
            return None if previous is None else (lambda: self.store.save(previous, None) and None)

        self._pending.append(run)

    # -- IDataManager -------------------------------------------------------
    def abort(self, txn: object) -> None:
        self._pending.clear()

    def tpc_begin(self, txn: object) -> None:
        pass

    def commit(self, txn: object) -> None:
        pass

    def tpc_vote(self, txn: object) -> None:
        find = self.session_transaction
        session_txn = find() if find is not None else None
        if session_txn is not None and len(self._pending) == 1:
            # One write: the transaction commits in the same round trip. It only
            # commits what succeeded (a refused version check wrote nothing).
            session_txn.commit_with_next_statement()
        for run in self._pending:
            try:
                undo = run()
            except StaleSession as exc:
                self.on_stale(exc)  # raises when the transaction must not commit
                continue
            except StoreError as exc:
                # A store down at commit: the request answers 503 (or retries
                # elsewhere), not 500. The transaction aborts and undoes our writes.
                if self.on_error is None:
                    raise
                raise self.on_error(exc) from exc
            if undo is not None:
                if session_txn is not None:
                    undo = _once_committed(session_txn, undo)
                self._undo.append(undo)
        self._pending.clear()
        if session_txn is not None:
            # Several writes: their commit comes now, mapped like a failed write.
            try:
                session_txn.commit_now()
            except StoreError as exc:
                if self.on_error is None:
                    raise
                raise self.on_error(exc) from exc

    def tpc_finish(self, txn: object) -> None:
        self._undo.clear()

    def tpc_abort(self, txn: object) -> None:
        self._pending.clear()
        for undo in reversed(self._undo):
            try:
                undo()
            except (StoreError, StaleSession) as exc:
                # The store failed again; the session write stays. Say so once.
                log.error(
                    "could not undo a session write on %r after an abort: %s", self.store.name, exc
                )
        self._undo.clear()

    def sortKey(self) -> str:
        # "~m" sorts before zope.sqlalchemy's "~sqlalchemy": we vote first, so a
        # refused session write aborts the database commit too.
        return f"~myapp.sessions:{id(self)}"


def _once_committed(session_txn: SessionTransaction, undo: Undo) -> Undo:
    """An undo for a write in a session transaction: needed only if that committed
    (a later resource failed after it); a rollback already took the write back."""

    def undo_if_committed() -> None:
        if session_txn.committed:
            undo()

    return undo_if_committed
