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

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from zope.interface import implementer

from ..breaker import Breaker
from ..exceptions import StaleSession
from ..interfaces import IRequestBoundStore
from ..options import SessionOptions
from .base import SessionRecord, SessionStore

if TYPE_CHECKING:
    from pyramid.request import Request

    from .sqlstore import SqlStore

log = logging.getLogger(__name__)

TTL_SECONDS = 600
TOMBSTONE = b"T"
MOVED = b"M"  # followed by the version the database row had when the session left
MAX_PENDING = 100_000  # keys remembered while Redis is down; beyond that, flush all

# KEYS: key. ARGV: entry, version, expires, ttl ms. Stores the entry unless the key
# holds a tombstone or an entry at least as new (same version and later expiry).
_PUT = """
local current = redis.call('GET', KEYS[1])
if current then
  if current == 'T' then return 0 end
  local new_version, new_expires = tonumber(ARGV[2]), tonumber(ARGV[3])
  local moved = tonumber(string.match(current, '^M(%d+)$'))
  if moved and moved >= new_version then return 0 end
  local version, expires = string.match(current, '^(%d+),([^\\n]+)\\n')
  version, expires = tonumber(version), tonumber(expires)
  if version and (version > new_version or (version == new_version and expires >= new_expires)) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return 1
"""

# KEYS: key. ARGV: version, ttl ms. Marks the session as moved to another store
# unless it ended (tombstone) or the database has a newer version than ours.
_MARK_MOVED = """
local current = redis.call('GET', KEYS[1])
if current then
  if current == 'T' then return 0 end
  local newer = tonumber(string.match(current, '^M(%d+)$') or string.match(current, '^(%d+),'))
  if newer and newer > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], 'M' .. ARGV[1], 'PX', ARGV[2])
return 1
"""


def moved_version(cached: object) -> int | None:
    """The version a moved marker records, or None when ``cached`` is not one."""
    if isinstance(cached, bytes) and cached.startswith(MOVED):
        return int(cached[len(MOVED) :])
    return None


def encode(record: SessionRecord, version: int) -> str:
    """``version,expires`` (read by the Lua script), then a JSON header, then the data."""
    header = json.dumps(
        [record.created, record.last_active, record.user_id, record.user_agent],
        separators=(",", ":"),
    )
    return f"{version},{record.expires!r}\n{header}\n{record.data}"


def decode(key: str, raw: bytes) -> SessionRecord:
    prefix, header, data = raw.decode("utf-8").split("\n", 2)
    version, expires = prefix.split(",")
    created, last_active, user_id, user_agent = json.loads(header)
    return SessionRecord(
        key, data, created, last_active, float(expires), user_id, user_agent, int(version)
    )


class RedisCache:
    """The cache's Redis side; every failure opens a breaker instead of raising.

    While the breaker is open, reads and writes skip Redis at once; one background
    probe per process (``breaker``) pings it with back-off, invalidates what changed
    meanwhile, and only then lets requests read it again.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        ttl: int = TTL_SECONDS,
        cooldown: float = SessionOptions.breaker_cooldown,
        max_cooldown: float = SessionOptions.recheck_interval,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._put = client.register_script(_PUT)
        self._mark_moved = client.register_script(_MARK_MOVED)
        self._lock = threading.Lock()
        self._catching_up = threading.Lock()
        self._pending: set[str] = set()
        self._flush_all = False
        self.breaker = Breaker(
            "redis cache",
            self._probe,
            threshold=1,
            first_delay=cooldown,
            max_delay=max_cooldown,
        )

    # -- the breaker ----------------------------------------------------------
    def _usable(self) -> bool:
        if self.breaker.open:
            return False
        if self._pending or self._flush_all:
            return self._catch_up()  # a write was skipped while the probe recovered
        return True

    def _failed(self, what: str, exc: redis.RedisError, keys: tuple[str, ...] = ()) -> None:
        with self._lock:
            if len(self._pending) + len(keys) > MAX_PENDING:
                self._flush_all = True
                self._pending.clear()
            elif not self._flush_all:
                self._pending.update(keys)
        if self.breaker.failure(f"{what}: {exc}", at_once=True):
            log.error(
                "session cache (Redis) failed during %s: %s; serving sessions from the "
                "database alone until a probe finds it answering",
                what,
                exc,
            )

    def _probe(self) -> str | None:
        """Ping, then invalidate what changed while Redis was away; None when done."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            return str(exc)
        return self._invalidate_pending()

    def _catch_up(self) -> bool:
        if not self._catching_up.acquire(blocking=False):
            return False  # another thread is at it: skip the cache meanwhile
        try:
            cause = self._invalidate_pending()
        finally:
            self._catching_up.release()
        if cause is not None:
            self.breaker.failure(cause, at_once=True)
        return cause is None

    def _invalidate_pending(self) -> str | None:
        """Tombstone the keys written while Redis was away (all keys if too many)."""
        with self._lock:
            pending, flush_all = list(self._pending), self._flush_all
        try:
            if flush_all:
                for found in self.client.scan_iter(match=self.prefix + "*", count=1000):
                    self.client.delete(found)
            elif pending:
                self._tombstone_now(pending)
        except redis.RedisError as exc:
            return str(exc)
        with self._lock:
            self._pending.difference_update(pending)
            self._flush_all = self._flush_all and not flush_all
        if pending or flush_all:
            log.warning(
                "session cache (Redis) answers again; %s invalidated",
                "every entry" if flush_all else f"{len(pending)} entries",
            )
        return None

    # -- operations -------------------------------------------------------------
    def get(self, key: str) -> SessionRecord | bytes | None:
        """The cached record, TOMBSTONE, a moved marker, or None (miss or cache unavailable)."""
        if not self._usable():
            return None
        try:
            raw = self.client.get(self.prefix + key)
        except redis.RedisError as exc:
            self._failed("a read", exc)
            return None
        if raw is None or raw == TOMBSTONE or raw.startswith(MOVED):
            return raw
        try:
            return decode(key, raw)
        except (ValueError, UnicodeDecodeError):
            log.warning("a session cache entry could not be decoded; reading the database")
            return None

    def put(self, record: SessionRecord, version: int, now: float) -> None:
        ttl_ms = int(min(self.ttl, record.expires - now) * 1000)
        if ttl_ms <= 0:
            return
        if not self._usable():
            self._failed_quietly(record.key)
            return
        try:
            self._put(
                keys=[self.prefix + record.key],
                args=[encode(record, version), version, repr(record.expires), ttl_ms],
            )
        except redis.RedisError as exc:
            self._failed("a write", exc, (record.key,))

    def tombstone(self, keys: list[str]) -> None:
        """Make ``keys`` unreadable from the cache (for ``ttl`` seconds)."""
        if not keys:
            return
        if not self._usable():
            for key in keys:
                self._failed_quietly(key)
            return
        try:
            self._tombstone_now(keys)
        except redis.RedisError as exc:
            self._failed("an invalidation", exc, tuple(keys))

    def mark_moved(self, key: str, version: int, seconds: float) -> bool:
        """Say the session left the database at ``version``, for ``seconds``; False if not."""
        if seconds <= 0:
            return True  # the database row has expired: nothing stale is left to hide
        if not self._usable():
            return False
        try:
            return bool(self._mark_moved(keys=[self.prefix + key], args=[version, _ms(seconds)]))
        except redis.RedisError as exc:
            self._failed("a moved marker", exc)
            return False

    def forget(self, key: str) -> None:
        """Drop one entry (it may be refilled): for an entry that turned out stale."""
        if not self._usable():
            self._failed_quietly(key)
            return
        try:
            self.client.delete(self.prefix + key)
        except redis.RedisError as exc:
            self._failed("an invalidation", exc, (key,))

    def _tombstone_now(self, keys: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.set(self.prefix + key, TOMBSTONE, ex=self.ttl)
        pipe.execute()

    def _failed_quietly(self, key: str) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self._flush_all = True
                self._pending.clear()
            elif not self._flush_all:
                self._pending.add(key)

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.breaker.stop()
        self.client.close()


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

    def touch(self, key: str, last_active: float, expires: float, now: float) -> bool:
        touched = self._primary().touch(key, last_active, expires, now)
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
        # Every session of the user, expired ones too (0.0): their entries may be cached.
        keys = [r.key for r in self._primary().list_user(user_id, 0.0) if r.key != except_key]
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

    def _primary(self) -> SessionStore:
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

    def _primary(self) -> SessionStore:
        return self._bound_primary

    def _after_commit(self, fn: Callable[[], None]) -> None:
        self.request.tm.get().addAfterCommitHook(lambda ok: ok and fn())


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def wrap(primary: SqlStore, options: SessionOptions) -> CachedStore:
    """``primary`` behind a Redis cache at ``session.redis_url`` (``<prefix>cache:`` keys)."""
    from .redisstore import make_client

    client = make_client(options.redis_url, options.store_timeout)
    cache = RedisCache(
        client,
        prefix=options.redis_prefix + "cache:",
        cooldown=options.breaker_cooldown,
        max_cooldown=max(options.breaker_cooldown, options.recheck_interval),
    )
    return CachedStore(primary, cache)
