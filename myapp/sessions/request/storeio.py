"""A request's I/O with its stores: the load (which store answers when one fails, and
read-through) and the writes (joined to the request's transaction).

With ``session.runtime_failover`` a load that fails moves the request to the next store
(and, at the breaker's threshold, the whole process: ``chain``); a miss in the serving
store looks where sessions lived before a switch. A session that may be in a store
that cannot be asked now is *unavailable*, never ended: the request is served without
it (its cookie kept), or refused with a 503 when it must change state.

When the view opened a database transaction, SQL writes go straight into it (we run as
the request's transaction begins to commit), so they commit or roll back with the view's
own data. Otherwise they are queued in :class:`DeferredWrites`: Redis and the memory
store know nothing of transactions, and a view that did no database work has no
transaction for the SQL store's write to join. Queued writes are carried out when the
request's transaction votes, before SQLAlchemy's commit (which votes last). If a later
resource fails, ``tpc_abort`` puts back what was written. In a state-changing request on
PostgreSQL they run in its session transaction (``stores/sqlstore/transaction.py``) and
commit it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import transaction
from transaction.interfaces import IDataManager
from zope.interface import implementer

from ..database.requesttm import expects_writes
from ..exceptions import (
    SessionStoreFailover,
    SessionStoreUnavailable,
    SessionTemporarilyUnavailable,
    StaleSession,
    StoreError,
)
from ..stores import base
from ..stores.base import SessionRecord, SessionStore
from .session import FLASH_PREFIX, SESSION_TOKEN_KEY, Session

if TYPE_CHECKING:
    from pyramid.request import Request

    from ..chain import StoreChain
    from ..events import SessionObserver
    from ..interfaces import IRequestBoundStore
    from ..options import SessionOptions
    from ..stores.sqlstore.transaction import SessionTransaction

log = logging.getLogger(__name__)

#: environ key: store names a retried request must not use (they failed it).
AVOID_KEY = "myapp.sessions.avoid"
#: environ key: True when the request's session is temporarily unavailable.
UNAVAILABLE_KEY = "myapp.sessions.unavailable"
UNAVAILABLE_LOG_SECONDS = 60


class UnavailableNotice:
    """Logs "served without its session" once a minute, not once a request."""

    def __init__(
        self,
        every_seconds: float = UNAVAILABLE_LOG_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_seconds = every_seconds
        self.clock = clock
        self._said_at = float("-inf")
        self._unsaid = 0

    def say(self, serving: str, where: str) -> None:
        now = self.clock()
        if now - self._said_at < self.every_seconds:
            self._unsaid += 1
            return
        unsaid, self._unsaid = self._unsaid, 0
        self._said_at = now
        log.warning(
            "a session is not in %r and %s, which may hold it, cannot be asked now: the "
            "request is served without it and its cookie is kept (%d more like it since "
            "this was last said; said at most every %ds)",
            serving,
            where,
            unsaid,
            self.every_seconds,
        )


class StoreLoader:
    """Finds one request's session in the chain, and answers for the store that serves it.

    It starts with the store the chain serves from (or, for a retried request, the next
    one it did not fail on), moves on when that one fails (runtime failover), and looks
    where sessions lived before a switch on a miss (read-through).
    """

    def __init__(
        self,
        chain: StoreChain,
        observer: SessionObserver,
        options: SessionOptions,
        request: Request,
        *,
        notice: UnavailableNotice,
        timed: Callable[[SessionStore, str, Callable[[], object]], object],
        now: float,
    ) -> None:
        self.chain = chain
        self.observer = observer
        self.options = options
        self.request = request
        self.notice = notice
        self.timed = timed
        self.now = now
        self.avoid: frozenset[str] = frozenset(request.environ.get(AVOID_KEY, ()))
        index = chain.serving_index(self.avoid) if options.runtime_failover else None
        self.index: int = chain.active_index if index is None else index
        if self.index != chain.active_index:
            chain.note_served(self.index)  # a retry served elsewhere: read through it later
        self.store = chain.store_at(self.index)
        self.failed: set[int] = set()  # stores whose load failed in this request
        self.unasked: set[str] = set()  # stores that may hold the session but were not asked
        self.unavailable = False  # the session may exist in a store that cannot be asked
        # Where a session read through came from, and its record there.
        self.moved_from: SessionStore | None = None
        self.moved_record: SessionRecord | None = None

    def bound(self) -> IRequestBoundStore:
        """The serving store as this request uses it."""
        return self.store.bind(self.request)

    def load(self, key: str) -> SessionRecord | None:
        """The record stored under ``key``: from the serving store, else read through."""
        record = self._load_serving(key)
        return record if record is not None else self._read_through(key)

    def unasked_stores(self) -> list[str]:
        """The stores that may hold a session not found, but could not be asked."""
        unreachable = self.chain.unreachable_before(self.index, self.failed)
        return sorted(self.unasked.union(unreachable))

    def unavailable_session(self, stores: list[str]) -> Session:
        """Serve the request without its session: keep the cookie, store nothing.

        A request that changes state (POST...) cannot go on without its session (its
        CSRF token, its cart): it gets a 503 with Retry-After instead.
        """
        self.unavailable = True
        self.request.environ[UNAVAILABLE_KEY] = True
        self.observer.session_unavailable(self.store.name)
        where = ", ".join(repr(name) for name in stores)
        self.notice.say(self.store.name, where)
        # Only a request that reads may be served without its session.
        if expects_writes(self.request.method):
            raise SessionTemporarilyUnavailable(
                stores[0], "unavailable", f"the session may be in {where}, which is failing"
            )
        return Session(created=self.now, new=True)

    def _load_serving(self, key: str) -> SessionRecord | None:
        """Load from the serving store; with runtime failover, from the next one on failure."""
        chain = self.chain
        while True:
            bound = self.bound()
            try:
                if chain.breaker_open(self.index):
                    return self._load_refused(key)
                record = self.timed(self.store, "load", lambda: bound.load(key, self.now))  # noqa: B023
            except SessionStoreUnavailable as exc:
                if exc.kind != "breaker_open":
                    chain.failed(self.index, str(exc), timeout=exc.kind == "timeout")
                if not self.options.runtime_failover:
                    raise
                self.failed.add(self.index)
                following = chain.next_store(self.index, self.avoid)
                if following is None:
                    raise
                self._switch_to(following)
                continue
            if not bound.answered_from_cache:
                chain.succeeded(self.index)  # a cache hit says nothing about the database
            return record

    def _load_refused(self, key: str) -> SessionRecord | None:
        """The serving store's breaker is open: its offline copy (a cache's) or a refusal."""
        record = base.load_offline(self.store, key, self.now)
        if record is not None:
            return record
        exc = self.chain.refusal(self.index)
        self.observer.store_error(self.store.name, exc.kind)
        raise SessionStoreUnavailable(self.store.name, exc.kind, str(exc))

    def _switch_to(self, index: int) -> None:
        """Serve the rest of this request from the store at ``index``."""
        chain = self.chain
        self.index = index
        self.store = chain.store_at(index)
        chain.note_served(index)

    def _read_through(self, key: str) -> SessionRecord | None:
        """A miss in the serving store: look where sessions lived before a switch.

        A failing store is read offline (its cache's copy), so a session cached in
        front of a dead database stays usable while it moves to the serving store.
        """
        chain = self.chain
        for older, offline in chain.read_through_stores(self.index, self.avoid, self.failed):
            try:
                record = (
                    base.load_offline(older, key, self.now)
                    if offline
                    else older.load(key, self.now)
                )
            except StoreError as exc:
                log.info("read-through from %r fell back to its offline copy: %s", older.name, exc)
                offline = True
                record = base.load_offline(older, key, self.now)
            if record is None and offline:
                self.unasked.add(older.name)  # its server may hold it
            if record is not None:
                self.moved_from, self.moved_record = older, record
                return record.with_changes(version=0)
        return None

    def store_failed(self, exc: StoreError) -> SessionStoreUnavailable:
        """A write failed at commit: what to raise (and, with failover, what to avoid)."""
        if isinstance(exc, SessionStoreFailover | SessionTemporarilyUnavailable):
            return exc
        if not isinstance(exc, SessionStoreUnavailable):
            self.observer.store_error(self.store.name, exc.kind)
            log.error("session store %r failed during commit: %s", self.store.name, exc)
        if exc.kind == "replication":
            # The store answers and reads go on; only this write missed its replicas
            # (session.redis_min_replicas): refused, no breaker opened, no failover.
            return SessionStoreUnavailable(self.store.name, exc.kind, str(exc))
        chain = self.chain
        if exc.kind != "breaker_open":
            chain.failed(self.index, str(exc), timeout=exc.kind == "timeout")
        if not self.options.runtime_failover:
            if isinstance(exc, SessionStoreUnavailable):
                return exc
            return SessionStoreUnavailable(self.store.name, exc.kind, str(exc))
        avoided = self.request.environ.setdefault(AVOID_KEY, set())
        avoided.add(self.store.name)
        return SessionStoreFailover(self.store.name, exc.kind, str(exc))

    def drop_or_refuse(self, session: Session) -> None:
        """The end of a request served without its session.

        What a page puts there in passing (its forms' CSRF token, a flash message) is
        dropped; anything else would replace the user's real session, so the request
        is refused instead (503, nothing committed).
        """
        # What a page may put in a session it cannot store: its form's CSRF token, a
        # flash message being shown.
        incidental = all(
            key == SESSION_TOKEN_KEY or key.startswith(FLASH_PREFIX) for key in session
        )
        if incidental and not (session.invalidated or session.rotated or session.user_id):
            return
        raise SessionTemporarilyUnavailable(
            self.store.name, "unavailable", "the session cannot be changed while it is unavailable"
        )


Undo = Callable[[], None]


class Writes:
    """Runs a request's session writes where they belong: straight into the view's
    database transaction, or queued until the request's transaction votes."""

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
