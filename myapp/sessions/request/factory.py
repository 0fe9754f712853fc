"""The ISessionFactory: cookie in -> load -> decide what to write -> cookie out.

Nothing happens until a view touches ``request.session`` (Pyramid calls the factory
lazily). Then the session is loaded, and hooks are put on the request's transaction:
the write runs just before commit (so it commits or rolls back with the view's own
data), and the cookie is set in a response callback once the commit succeeded. Which
store answers when one fails (failover, read-through) is ``load``'s business; where
each write runs (the request's transaction, or queued until it votes) is ``writes``'.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyramid.interfaces import ISessionFactory
from pyramid_tm import is_tm_active
from zope.interface import implementer

from ..database.requesttm import LazyTransactionManager
from ..events import SessionObserver
from ..exceptions import (
    SessionConflict,
    SessionStoreUnavailable,
    StaleSession,
    StoreError,
)
from ..interfaces import INewSessionAdmission, IRequestBoundStore
from ..stores import base
from ..stores.base import SessionRecord, SessionStore
from .cookie import SessionCookie, new_token, storage_key
from .flashcookie import FlashCookie, flash_only
from .load import AVOID_KEY, UNAVAILABLE_KEY, FailoverLoad, UnavailableNotice
from .session import Session, dumps_checked, loads
from .writes import Writes, quietly

if TYPE_CHECKING:
    from pyramid.request import Request
    from pyramid.response import Response

    from ..chain import StoreChain
    from ..options import SessionOptions

__all__ = ["AVOID_KEY", "UNAVAILABLE_KEY", "RequestSession", "SessionFactory"]

log = logging.getLogger(__name__)

USER_AGENT_LENGTH = 256


@implementer(ISessionFactory)
class SessionFactory:
    """Builds the :class:`Session` for a request. One instance serves the whole app."""

    def __init__(
        self,
        options: SessionOptions,
        chain: StoreChain,
        *,
        observer: SessionObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.chain = chain
        self.cookie = SessionCookie(options)
        self.flash_cookie = FlashCookie(options)
        self.observer = observer or SessionObserver()
        self.clock = clock
        self.unavailable_notice = UnavailableNotice()

    def __call__(self, request: Request) -> Session:
        self.chain.ensure_probing()
        return RequestSession(self, request).session

    # -- helpers shared with RequestSession ------------------------------
    def expiry(self, created: float, now: float) -> float:
        return min(now + self.options.timeout, created + self.options.max_lifetime)

    def timed(self, store: SessionStore, operation: str, fn: Callable[[], object]) -> object:
        started = time.perf_counter()
        try:
            return fn()
        except StoreError as exc:
            self.observer.store_error(store.name, exc.kind)
            log.error("session store %r failed during %s: %s", store.name, operation, exc)
            raise SessionStoreUnavailable(store.name, exc.kind, str(exc)) from exc
        finally:
            self.observer.store_latency(store.name, operation, time.perf_counter() - started)


class RequestSession(FailoverLoad):
    """The life of one request's session: load, then write and cookie at the end."""

    factory: SessionFactory

    def __init__(self, factory: SessionFactory, request: Request) -> None:
        self.factory = factory
        self.request = request
        self.options = factory.options
        self.chain = chain = factory.chain
        self.observer = factory.observer
        self.unavailable_notice = factory.unavailable_notice
        self.timed = factory.timed
        self.avoid: frozenset[str] = frozenset(request.environ.get(AVOID_KEY, ()))
        index = chain.serving_index(self.avoid) if self.options.runtime_failover else None
        self.index: int = chain.active_index if index is None else index
        if self.index != chain.active_index:
            chain.note_served(self.index)  # a retry served elsewhere: read through it later
        self.store = chain.store_at(self.index)
        self.failed: set[int] = set()  # stores whose load failed in this request
        self.unasked: set[str] = set()  # stores that may hold the session but were not asked
        self.unavailable = False  # the session may exist in a store that cannot be asked
        self.now = factory.clock()
        self.token: str | None = None
        self.record: SessionRecord | None = None
        self.issue_cookie = False
        self.delete_cookie = False
        self.committed = False
        self.flash_read = False  # the request carried a flash cookie, now in the session
        self.flash_out: str | None = None  # a flash cookie to send instead of a row
        self.session = self._load()
        self._register()

    # -- loading ------------------------------------------------------------
    def _load(self) -> Session:
        factory = self.factory
        verdict = factory.cookie.read(self.request)
        if verdict.token is None:
            if verdict.reason != "absent":
                factory.observer.bad_cookie(verdict.reason or "unknown")
                log.info("ignored a session cookie: %s", verdict.reason)
            return self._fresh()
        key = storage_key(verdict.token)
        record = self._load_serving(key)
        if record is None:
            record = self._read_through(key)
        if record is None:
            unasked = self.unasked.union(
                self.factory.chain.unreachable_before(self.index, self.failed)
            )
            if unasked:
                # Not found here, while a store that may hold it is down: unknown, not ended.
                return self._unavailable(sorted(unasked))
            # Unknown, ended or expired: never adopt a token we did not issue.
            factory.observer.bad_cookie("unknown_session")
            self.delete_cookie = True
            return self._fresh()
        try:
            data = loads(record.data)
        except ValueError:
            log.warning("a stored session could not be decoded; starting a fresh one")
            factory.observer.bad_cookie("corrupt_data")
            self.delete_cookie = True
            return self._fresh()
        self.token, self.record = verdict.token, record
        # Re-sign with the newest secret once an older, still-listed one was used.
        self.issue_cookie = verdict.stale_secret
        factory.observer.session_loaded(self.store.name)
        return Session(data, created=record.created, new=False, user_id=record.user_id)

    def _fresh(self) -> Session:
        carried = self.factory.flash_cookie.read(self.request, self.now)
        self.flash_read = carried is not None
        return Session(carried, created=self.now, new=True)

    wrote = False

    def _bound_store(self) -> IRequestBoundStore:
        return self.store.bind(self.request)

    # -- the end of the request -------------------------------------------
    def _register(self) -> None:
        request = self.request
        if is_tm_active(request):
            manager = request.tm
            if isinstance(manager, LazyTransactionManager):
                # A session that is only read starts no transaction.
                manager.on_commit(lambda: self._persist_guarded(manager.get), self._after_commit)
            else:
                txn = manager.get()
                txn.addBeforeCommitHook(self._persist_guarded, (lambda: txn,))
                txn.addAfterCommitHook(self._after_commit)
            request.add_response_callback(self._cookie)
        else:
            # Touched after pyramid_tm finished (an exception view, a response
            # callback): write in a short transaction of our own.
            request.add_response_callback(self._persist_late)

    def _after_commit(self, success: bool) -> None:
        self.committed = success
        if success and self.wrote:
            self.factory.chain.succeeded(self.index)

    def _persist_guarded(self, transaction: Callable[[], Any]) -> None:
        try:
            self._persist(transaction)
        except SessionStoreUnavailable as exc:
            self._abandon()
            raise self.store_failed(exc) from exc
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        self._bound_store().abandon()

    def _persist_late(self, request: Request, response: Response) -> None:
        with request.tm:
            self._persist(request.tm.get)
        self.committed = True
        self._cookie(request, response)

    def _persist(self, transaction: Callable[[], Any]) -> None:
        """Write what the request changed; ``transaction()`` (only called when there
        is something to write) gives the request's transaction."""
        session, record, factory = self.session, self.record, self.factory
        if self.unavailable:
            self._drop_or_refuse()
            return
        now = factory.clock()
        changed = (
            session.explicitly_changed
            or session.new
            or record is None
            or self.moved_from is not None
            or loads(record.data) != session
        )
        refused = factory.chain.breaker_open(self.index)
        if not changed:
            stale = record is not None and now - record.last_active >= self.options.reissue_time
            if stale and not refused:  # a touch can wait for the store to answer again
                self._touch(transaction(), record, now)
            return
        ending = record is not None and (session.invalidated or session.rotated)
        if session.new and not ending and session.user_id is None:
            if not session:
                return  # nothing worth storing: no row, no cookie
            if flash_only(session):  # one-off messages travel in a cookie, not a row
                self.flash_out = factory.flash_cookie.dumps(session, now)
                if self.flash_out is not None:
                    return
        if refused:  # fail now, not after a connect timeout
            exc = factory.chain.refusal(self.index)
            raise SessionStoreUnavailable(self.store.name, exc.kind, str(exc))
        if record is None and session.user_id is None and not session.invalidated:
            admit = self.request.registry.queryUtility(INewSessionAdmission)
            if admit is not None:
                admit(self.request)  # may raise: nothing is stored
        writes = self._writer(transaction())
        if ending:
            writes.delete(record.key, record)
            if session.invalidated:
                factory.observer.session_invalidated(self.store.name)
            self.delete_cookie = True
        if session.invalidated and not session:
            self._release_moved(transaction)
            return
        text = dumps_checked(session, self.options.max_size)
        starts_anew = record is None or ending
        created = now if starts_anew else record.created
        new_record = SessionRecord(
            key="",
            data=text,
            created=created,
            last_active=now,
            expires=factory.expiry(created, now),
            user_id=session.user_id,
            user_agent=_user_agent(self.request),
        )
        if starts_anew:
            self.token = new_token()
            new_record.key = storage_key(self.token)
            writes.save(new_record, None, None)
            self.issue_cookie, self.delete_cookie = True, False
            factory.observer.session_created(self.store.name)
        else:
            new_record.key = record.key
            if self.moved_from is not None:
                writes.adopt(new_record)
            else:
                writes.save(new_record, record.version, record)
            factory.observer.session_saved(self.store.name)
        self._release_moved(transaction)

    def _release_moved(self, transaction: Callable[[], Any]) -> None:
        """Once committed, the store a session was read through from lets go of it.

        Also when the session ended here: its old copy must not be read through again.
        """
        moved_from, moved = self.moved_from, self.moved_record
        if moved_from is not None and moved is not None:
            release = functools.partial(base.release, moved_from)
            transaction().addAfterCommitHook(lambda ok: ok and quietly(release, moved))

    def conflict(self, exc: StaleSession) -> None:
        """A save was refused. A session ended meanwhile stays ended; a newer one wins."""
        self.factory.observer.session_conflict(exc.store, exc.gone)
        if exc.gone:
            log.info("refused a late write to a session that has ended (%s store)", exc.store)
            if self.moved_from is not None and self.moved_record is not None:
                # Never read through again.
                quietly(functools.partial(base.release, self.moved_from), self.moved_record)
            self.token = None
            self.issue_cookie, self.delete_cookie = False, True
            return
        raise SessionConflict(str(exc)) from exc

    def _touch(self, txn: object, record: SessionRecord, now: float) -> None:
        self._writer(txn).touch(record, now, self.factory.expiry(record.created, now), now)
        self.factory.observer.session_touched(self.store.name)

    def _writer(self, txn: object) -> Writes:
        self.wrote = True
        return Writes(
            self._bound_store(),
            self.store,
            txn,
            timed=self.timed,
            on_stale=self.conflict,
            on_error=self.store_failed,
        )

    def _cookie(self, request: Request, response: Response) -> None:
        # The answer depends on the cookie now: a shared cache must not give it to others.
        # (Said here, in the one callback every loaded session has, rather than in a
        # second callback of its own: a read costs one callback less.)
        vary_on_cookie(response)
        if not self.committed:
            return
        if self.flash_out is not None:
            self.factory.flash_cookie.set(response, self.flash_out)
        elif self.flash_read:
            self.factory.flash_cookie.delete(response)
        cookie = self.factory.cookie
        if self.issue_cookie and self.token is not None:
            cookie.set(response, self.token, created=self.session.created, now=self.factory.clock())
        elif self.delete_cookie:
            cookie.delete(request, response)


def vary_on_cookie(response: Response) -> None:
    """Add ``Vary: Cookie`` to a response of a request that read its session."""
    headers = response.headers
    current = headers.get("Vary")
    if not current:
        headers["Vary"] = "Cookie"  # the common case: nothing to merge with
        return
    vary = [value.strip() for value in current.split(",")]
    if "*" not in vary and "cookie" not in (value.lower() for value in vary):
        headers["Vary"] = f"{current}, Cookie"


def _user_agent(request: Request) -> str | None:
    agent = request.user_agent
    return agent[:USER_AGENT_LENGTH] if agent else None
