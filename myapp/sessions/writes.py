"""Where a request's session writes run, and how each is timed and mapped.

When the view opened a database transaction, SQL writes go straight into it; otherwise,
and for the other stores, they queue until the request's transaction votes (``txn``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .exceptions import StaleSession, StoreError
from .stores.base import SessionRecord, SessionStore
from .txn import DeferredWrites

if TYPE_CHECKING:
    from .exceptions import SessionStoreUnavailable
    from .failover import FactoryParts
    from .interfaces import IRequestBoundStore

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What the writes use of the request's session (``factory.RequestSession``)."""

    factory: FactoryParts
    store: SessionStore

    def _bound_store(self) -> IRequestBoundStore: ...
    def conflict(self, exc: StaleSession) -> None: ...
    def store_failed(self, exc: StoreError) -> SessionStoreUnavailable: ...


class Writes:
    """Runs a request's session writes where they belong.

    When the view opened a database transaction, SQL writes go straight into it (we
    run as the request's transaction begins to commit), so they commit or roll back
    with the view's own data. Otherwise, and for the other stores, they queue into a
    data manager that writes when the request's transaction votes, each write one
    statement or command of its own.
    """

    def __init__(self, owner: Owner, txn: object) -> None:
        self.owner = owner
        self.timed = owner.factory.timed
        self.direct: SessionStore | None = None
        self.deferred: DeferredWrites | None = None
        bound = owner._bound_store()
        if bound.in_request_transaction():
            self.direct = bound
            return
        # The queued writes run in the request's session transaction when there is one;
        # otherwise each is a statement or command of its own, outside the request.
        in_session_txn = bound.session_transaction() is not None
        self.deferred = DeferredWrites(
            bound if in_session_txn else owner.store,
            txn,
            session_transaction=bound.session_transaction if in_session_txn else None,
            on_stale=owner.conflict,
            on_error=owner.store_failed,
        )

    def save(
        self, record: SessionRecord, expected: int | None, previous: SessionRecord | None
    ) -> None:
        if self.deferred is not None:
            self.deferred.save(record, expected, previous)
            return
        store = self.direct
        try:
            self.timed(self.owner.store, "save", lambda: store.save(record, expected))
        except StaleSession as exc:
            self.owner.conflict(exc)

    def adopt(self, record: SessionRecord) -> None:
        """Save a session read through from another store into the serving one."""
        if self.deferred is not None:
            self.deferred.adopt(record)
            return
        store = self.direct
        try:
            self.timed(self.owner.store, "save", lambda: store.adopt(record))
        except StaleSession as exc:
            self.owner.conflict(exc)

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> None:
        if self.deferred is not None:
            self.deferred.touch(record, last_active, expires, now)
            return
        store = self.direct
        self.timed(
            self.owner.store, "touch", lambda: store.touch(record, last_active, expires, now)
        )

    def delete(self, key: str, previous: SessionRecord | None) -> None:
        if self.deferred is not None:
            self.deferred.delete(key, previous)
            return
        store = self.direct
        self.timed(self.owner.store, "delete", lambda: store.delete(key))


def quietly(fn: Callable[[SessionRecord], None], record: SessionRecord) -> None:
    try:
        fn(record)
    except StoreError as exc:
        log.info("could not remove a moved session from the old store: %s", exc)
