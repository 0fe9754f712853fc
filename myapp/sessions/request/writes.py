"""Where a request's session writes run, and how each is timed and mapped.

When the view opened a database transaction, SQL writes go straight into it (we run as
the request's transaction begins to commit), so they commit or roll back with the view's
own data. Otherwise they are queued in :class:`DeferredWrites`: Redis and the memory
store know nothing of transactions, and a view that did no database work has no
transaction for the SQL store's write to join. Queued writes are carried out when the
request's transaction votes, before SQLAlchemy's commit (which votes last). If a later
resource fails, ``tpc_abort`` puts back what was written. In a state-changing request on
PostgreSQL they run in its session transaction (``stores/sqlstore/pipeline.py``) and
commit it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import transaction
from transaction.interfaces import IDataManager
from zope.interface import implementer

from ..exceptions import StaleSession, StoreError
from ..stores import base
from ..stores.base import SessionRecord, SessionStore

if TYPE_CHECKING:
    from ..exceptions import SessionStoreUnavailable
    from ..interfaces import IRequestBoundStore
    from ..stores.sqlstore.transaction import SessionTransaction

log = logging.getLogger(__name__)

Undo = Callable[[], None]


class Writes:
    """Runs a request's session writes where they belong.

    When the view opened a database transaction, SQL writes go straight into it (we
    run as the request's transaction begins to commit), so they commit or roll back
    with the view's own data. Otherwise, and for the other stores, they queue into a
    data manager that writes when the request's transaction votes, each write one
    statement or command of its own.
    """

    def __init__(
        self,
        bound: IRequestBoundStore,
        store: SessionStore,
        txn: object,
        *,
        timed: Callable[[SessionStore, str, Callable[[], object]], object],
        on_stale: Callable[[StaleSession], None],
        on_error: Callable[[StoreError], SessionStoreUnavailable],
    ) -> None:
        self.store = store
        self.timed = timed
        self.conflict = on_stale
        self.direct: SessionStore | None = None
        self.deferred: DeferredWrites | None = None
        if bound.in_request_transaction():
            self.direct = bound
            return
        # The queued writes run in the request's session transaction when there is one;
        # otherwise each is a statement or command of its own, outside the request.
        in_session_txn = bound.session_transaction() is not None
        self.deferred = DeferredWrites(
            bound if in_session_txn else store,
            txn,
            session_transaction=bound.session_transaction if in_session_txn else None,
            on_stale=on_stale,
            on_error=on_error,
        )

    def save(
        self, record: SessionRecord, expected: int | None, previous: SessionRecord | None
    ) -> None:
        if self.deferred is not None:
            self.deferred.save(record, expected, previous)
            return
        store = self.direct
        try:
            self.timed(self.store, "save", lambda: store.save(record, expected))
        except StaleSession as exc:
            self.conflict(exc)

    def adopt(self, record: SessionRecord) -> None:
        """Save a session read through from another store into the serving one."""
        if self.deferred is not None:
            self.deferred.adopt(record)
            return
        store = self.direct
        try:
            self.timed(self.store, "save", lambda: base.adopt(store, record))
        except StaleSession as exc:
            self.conflict(exc)

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> None:
        if self.deferred is not None:
            self.deferred.touch(record, last_active, expires, now)
            return
        store = self.direct
        self.timed(self.store, "touch", lambda: store.touch(record, last_active, expires, now))

    def delete(self, key: str, previous: SessionRecord | None) -> None:
        if self.deferred is not None:
            self.deferred.delete(key, previous)
            return
        store = self.direct
        self.timed(self.store, "delete", lambda: store.delete(key))


def quietly(fn: Callable[[SessionRecord], None], record: SessionRecord) -> None:
    try:
        fn(record)
    except StoreError as exc:
        log.info("could not remove a moved session from the old store: %s", exc)


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
