"""A Redis read cache in front of the sql store (``session.cache = redis``).

PostgreSQL stays the source of truth; Redis only answers reads. The rules that keep
the cache from ever serving a session the database has ended:

* Cache entries carry the record's version; a write (write-through after commit, or
  a fill after a database read) only replaces an older entry (a Lua compare-and-set),
  so writes arriving out of order never roll a session back.
* Ending a session (delete, delete_user, rotation, invalidate) writes a *tombstone*
  before the database commit and again after it. A tombstone is never overwritten by
  a fill or a write, and a read that meets one goes to the database, so a reader
  that loaded the row just before the delete cannot put it back.
* Write-through happens only after the SQL commit succeeded (an after-commit hook).
* If Redis fails, reads and writes go to the database alone until one background
  probe finds it answering (back-off from ``session.breaker_cooldown`` up to
  ``session.recheck_interval``); keys written meanwhile are tombstoned before the
  cache is read again.

Cached reads need no database at all: while PostgreSQL is down, sessions in the
cache stay readable (tombstones and versions make that safe); anything that writes
still needs the database. With runtime failover such a session moves to the next
store, and a *moved* marker (``M<version>``) takes the entry's place: reads treat it
as a miss without asking the database (whose row is now stale), so the session is
read through from the store that holds it, and moving it back is an update
conditional on that version. Entries live at most ``ttl`` seconds, which also bounds
how long a stale entry can survive a Redis partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from zope.interface import implementer

from ...exceptions import StaleSession
from ...interfaces import (
    IPurgeable,
    IReadCache,
    IRequestBoundStore,
    IStoreStatistics,
    IUserSessions,
    IUserSessionsTable,
)
from ...options import SessionOptions
from ..base import SessionRecord, SessionStore
from .rediscache import TOMBSTONE, RedisCache, moved_version

if TYPE_CHECKING:
    from pyramid.request import Request

    from ..sqlstore import RequestSqlStore, SqlStore

log = logging.getLogger(__name__)


@implementer(IUserSessions, IPurgeable, IStoreStatistics, IReadCache, IUserSessionsTable)
class CachedStore(SessionStore):
    """The sql store with a Redis read cache: the same contract, the same name."""

    shared = True

    def __init__(self, primary: SqlStore, cache: RedisCache) -> None:
        self.primary = primary
        self.cache = cache
        self.name = primary.name

    def bind(self, request: Request) -> BoundCachedStore:
        """The same, with SQL in ``request``'s transaction and cache writes after commit."""
        bound = request.environ.get(_BOUND_KEY)
        # pyramid_retry reuses the environ for a new request: bound to that one anew.
        if bound is None or bound.parent is not self or bound.request is not request:
            bound = request.environ[_BOUND_KEY] = BoundCachedStore(self, request)
        return bound

    def _after_commit(self, fn: Callable[[], None]) -> None:
        fn()  # outside a request each primary call has committed when it returns

    # -- the interface ----------------------------------------------------------
    def check(self) -> None:
        self.primary.check()
        try:
            self.cache.ping()
        except redis.RedisError as exc:
            log.warning("session cache (Redis) is not reachable (%s); reads use the database", exc)

    #: The last load needed no database (read by the factory on a request's own view).
    answered_from_cache = False

    def load(self, key: str, now: float) -> SessionRecord | None:
        cached = self.cache.get(key)
        if isinstance(cached, SessionRecord) and cached.expires > now:
            self.answered_from_cache = True
            return cached
        if moved_version(cached) is not None:
            self.answered_from_cache = True
            return None  # another store holds it; the database row is stale
        self.answered_from_cache = False
        record = self._primary().load(key, now)
        if record is not None and cached != TOMBSTONE:
            self.cache.put(record, record.version, now)
        return record

    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        try:
            version = self._primary().save(record, expected_version)
        except StaleSession as exc:
            # Our read may have come from a stale entry: the retry reads the database.
            if exc.gone:
                self.cache.tombstone([record.key])
            else:
                self.cache.forget(record.key)
            raise
        stored = record.with_changes(version=version)
        self._after_commit(lambda: self.cache.put(stored, version, time.time()))
        return version

    def load_offline(self, key: str, now: float) -> SessionRecord | None:
        """The cached copy alone: no database, so a miss fails fast while it is down."""
        cached = self.cache.get(key)
        if isinstance(cached, SessionRecord) and cached.expires > now:
            return cached
        return None

    def adopt(self, record: SessionRecord) -> int:
        """Take a session back from another store, over the stale row it left behind."""
        cached = self.cache.get(record.key)
        if cached == TOMBSTONE:
            raise StaleSession(self.name, gone=True)  # ended here meanwhile
        left_at = moved_version(cached)
        if left_at is None:
            return self.save(record, None)
        try:
            version = self._primary().save(record, left_at)
        except StaleSession as exc:
            if exc.gone:
                self.cache.tombstone([record.key])
            else:
                # Saved here after it left (another process): the database wins.
                log.warning("a session changed in two stores; keeping the database's copy")
                self.cache.forget(record.key)
            raise
        stored = record.with_changes(version=version)
        self._after_commit(lambda: self.cache.put(stored, version, time.time()))
        return version

    def release(self, record: SessionRecord) -> None:
        """Leave the row (the database may be down) and hide it behind a moved marker."""
        if not self.cache.mark_moved(record.key, record.version, record.expires - time.time()):
            log.error(
                "could not mark a session as moved to another store (cache unavailable or "
                "newer copy here); once the database is back it serves its older copy"
            )

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> bool:
        key = record.key
        touched = self._primary().touch(record, last_active, expires, now)
        if not touched:
            # The database has ended it: the cache must not keep (let alone extend) it.
            self.cache.tombstone([key])
            return False
        self._after_commit(lambda: self._touched(key, last_active, expires))
        return True

    def _touched(self, key: str, last_active: float, expires: float) -> None:
        cached = self.cache.get(key)
        if isinstance(cached, SessionRecord):
            moved = cached.with_changes(last_active=last_active, expires=expires)
            self.cache.put(moved, cached.version, time.time())

    def delete(self, key: str) -> None:
        self.cache.tombstone([key])
        self._primary().delete(key)
        self._after_commit(lambda: self.cache.tombstone([key]))

    def delete_user(self, user_id: str, *, except_key: str | None = None) -> int:
        # Every session of the user, expired ones too: their entries may be cached.
        keys = [key for key in self._primary().session_keys_of(user_id) if key != except_key]
        self.cache.tombstone(keys)
        deleted = self._primary().delete_user(user_id, except_key=except_key)
        self._after_commit(lambda: self.cache.tombstone(keys))
        return deleted

    def list_user(self, user_id: str, now: float) -> list[SessionRecord]:
        return self._primary().list_user(user_id, now)

    def purge_expired(self, now: float, batch_size: int) -> int:
        return self.primary.purge_expired(now, batch_size)  # expired entries are never served

    def count(self, now: float) -> tuple[int, int]:
        return self.primary.count(now)

    def top_users(self, now: float, limit: int) -> list[tuple[str, int]]:
        return self.primary.top_users(now, limit)

    def health(self) -> dict[str, object]:
        breaker = self.cache.breaker
        return {"cache": {"name": "redis", "ready": not breaker.failing, **breaker.as_dict()}}

    def close(self) -> None:
        self.primary.close()
        self.cache.close()

    def sign_unsigned(self, now: float, batch_size: int) -> int:
        return self.primary.sign_unsigned(now, batch_size)  # the cache holds signed copies

    def _primary(self) -> SqlStore | RequestSqlStore:
        return self.primary


_BOUND_KEY = "myapp.sessions.cached_store"


@implementer(IRequestBoundStore)
class BoundCachedStore(CachedStore):
    """One request's view: SQL in its transaction, cache writes once that commits."""

    def __init__(self, parent: CachedStore, request: Request) -> None:
        super().__init__(parent.primary, parent.cache)
        self.parent = parent
        # Its writes go through the cache's own hooks, never a session transaction.
        self._bound_primary = parent.primary.bind(request, session_transaction=False)
        self.request = request

    def bind(self, request: Request) -> BoundCachedStore:
        return self.parent.bind(request)

    def in_request_transaction(self) -> bool:
        return self._bound_primary.in_request_transaction()

    def session_transaction(self) -> None:
        """None: the cache's writes follow the commit through their own hooks."""
        return None

    def abandon(self) -> None:
        self._bound_primary.abandon()

    def _primary(self) -> SqlStore | RequestSqlStore:
        return self._bound_primary

    def _after_commit(self, fn: Callable[[], None]) -> None:
        self.request.tm.get().addAfterCommitHook(lambda ok: ok and fn())


def wrap(primary: SqlStore, options: SessionOptions, breaker: Callable[..., Any]) -> CachedStore:
    """``primary`` behind a Redis cache at ``session.redis_url`` (``<prefix>cache:`` keys),
    whose breaker is a ``breaker`` (the chain's kind: ``chain.recovery.Breaker``)."""
    from ..authenticator import RecordAuthenticator
    from ..redisstore import make_client
    from .fence import MasterFence

    prefix = options.redis_prefix + "cache:"
    fence = MasterFence(prefix + "master")
    client = make_client(options.redis_url, options.store_timeout, on_connect=fence.on_connect)
    cache = RedisCache(
        client,
        prefix=prefix,
        fence=fence,
        authenticator=RecordAuthenticator(options.secret_bytes, "cache"),
        breaker=breaker,
        cooldown=options.breaker_cooldown,
        max_cooldown=max(options.breaker_cooldown, options.recheck_interval),
    )
    return CachedStore(primary, cache)
