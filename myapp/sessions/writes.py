"""Where a request's session writes run, and how each is timed and mapped.

When the view opened a database transaction, SQL writes go straight into it; otherwise,
and for the other stores, they queue until the request's transaction votes (``txn``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .exceptions import StaleSession, StoreError
from .stores import base
from .stores.base import SessionRecord, SessionStore
from .txn import DeferredWrites

if TYPE_CHECKING:
    from .exceptions import SessionStoreUnavailable
    from .interfaces import IRequestBoundStore

log = logging.getLogger(__name__)


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
