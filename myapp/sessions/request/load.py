"""Failover in a request: which store answers when one fails, and read-through.

With ``session.runtime_failover`` a load that fails moves the request to the next store
(and, at the breaker's threshold, the whole process: ``chain``); a miss in the serving
store looks where sessions lived before a switch. A session that may be in a store
that cannot be asked now is *unavailable*, never ended: the request is served without
it (its cookie kept), or refused with a 503 when it must change state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..database.requesttm import expects_writes
from ..exceptions import (
    SessionStoreFailover,
    SessionStoreUnavailable,
    SessionTemporarilyUnavailable,
    StoreError,
)
from ..stores import base
from ..stores.base import SessionRecord, SessionStore
from .csrf import SESSION_TOKEN_KEY
from .session import FLASH_PREFIX, Session

if TYPE_CHECKING:
    from pyramid.request import Request

    from ..chain import StoreChain
    from ..events import SessionObserver
    from ..interfaces import IRequestBoundStore
    from ..options import SessionOptions

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


class FailoverLoad:
    """The loading half of a request's session (``factory.RequestSession``) when stores fail."""

    # The factory's collaborators, as ``RequestSession`` takes them from it.
    chain: StoreChain
    observer: SessionObserver
    unavailable_notice: UnavailableNotice
    timed: Callable[[SessionStore, str, Callable[[], object]], object]
    request: Request
    options: SessionOptions
    store: SessionStore
    index: int
    avoid: frozenset[str]
    failed: set[int]
    unasked: set[str]
    unavailable: bool
    now: float
    session: Session
    moved_from: SessionStore | None = None
    moved_record: SessionRecord | None = None
    offline = False  # loaded from an offline copy: the store itself is refused

    def _bound_store(self) -> IRequestBoundStore:
        raise NotImplementedError

    def _unavailable(self, stores: list[str]) -> Session:
        """Serve the request without its session: keep the cookie, store nothing.

        A request that changes state (POST...) cannot go on without its session (its
        CSRF token, its cart): it gets a 503 with Retry-After instead.
        """
        self.unavailable = True
        self.request.environ[UNAVAILABLE_KEY] = True
        self.observer.session_unavailable(self.store.name)
        where = ", ".join(repr(name) for name in stores)
        self.unavailable_notice.say(self.store.name, where)
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
            bound = self._bound_store()
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
            self.offline = True
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

    def _drop_or_refuse(self) -> None:
        """The end of a request served without its session.

        What a page puts there in passing (its forms' CSRF token, a flash message) is
        dropped; anything else would replace the user's real session, so the request
        is refused instead (503, nothing committed).
        """
        session = self.session
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
