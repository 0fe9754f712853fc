"""The read cache's Redis side: versioned entries, tombstones, moved markers, a breaker.

Entries are records in the Redis store's one encoding (``redisstore.record``); a write
only replaces an older entry (a Lua compare-and-set), a tombstone (``T``) is never
overwritten by a fill, and a moved marker (``M<version>``) says the session left for
another store at that version. Every failure opens the cache's breaker instead of
raising.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from ...options import SessionOptions
from ..authenticator import RecordAuthenticator
from ..base import SessionRecord
from ..redisstore.record import decode, encode
from .fence import MasterFence

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
  local version, expires = string.match(current, '^%[(%d+),[^,]*,([^,]*),')
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
  local newer = tonumber(string.match(current, '^M(%d+)$') or string.match(current, '^%[(%d+),'))
  if newer and newer > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], 'M' .. ARGV[1], 'PX', ARGV[2])
return 1
"""


# KEYS: keys found by a scan. Deletes those holding a record entry; tombstones and
# moved markers stay (a stale one only costs a database read).
_DROP_ENTRIES = """
local dropped = 0
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current and string.sub(current, 1, 1) == '[' then
    redis.call('DEL', key)
    dropped = dropped + 1
  end
end
return dropped
"""


def moved_version(cached: object) -> int | None:
    """The version a moved marker records, or None when ``cached`` is not one."""
    if isinstance(cached, bytes) and cached.startswith(MOVED):
        return int(cached[len(MOVED) :])
    return None


class RedisCache:
    """The cache's Redis side; every failure opens a breaker instead of raising.

    While the breaker is open, reads and writes skip Redis at once; one background
    probe per process (``breaker``) pings it with back-off, invalidates what changed
    meanwhile, and only then lets requests read it again. The breaker is the chain's
    kind (``chain.recovery.Breaker``), handed in by whoever builds the cache.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        authenticator: RecordAuthenticator,
        breaker: Callable[..., Any],
        fence: MasterFence | None = None,
        ttl: int = TTL_SECONDS,
        cooldown: float = SessionOptions.breaker_cooldown,
        max_cooldown: float = SessionOptions.recheck_interval,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.authenticator = authenticator
        self.fence = fence
        self._drop_entries = client.register_script(_DROP_ENTRIES)
        self.ttl = ttl
        self._put = client.register_script(_PUT)
        self._mark_moved = client.register_script(_MARK_MOVED)
        self._lock = threading.Lock()
        self._catching_up = threading.Lock()
        self._pending: set[str] = set()
        self._flush_all = False
        self.breaker = breaker(
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
        if self.fence is not None and self.fence.fenced:
            return self._clear_fence()
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

    def _clear_fence(self) -> bool:
        """Drop the entries of another master, then record this one: the cache is read
        again. Meanwhile (another thread at it, or a failure) it is skipped."""
        fence = self.fence
        assert fence is not None
        if not self._catching_up.acquire(blocking=False):
            return False
        try:
            epoch, server_id = fence.epoch, fence.pending_id
            started = time.monotonic()
            dropped = 0
            batch: list[bytes] = []
            for found in self.client.scan_iter(match=self.prefix + "*", count=1000):
                batch.append(found)
                if len(batch) == 500:
                    dropped += int(self._drop_entries(keys=batch))
                    batch = []
            if batch:
                dropped += int(self._drop_entries(keys=batch))
            if server_id:
                self.client.set(fence.master_key, server_id)
        except redis.RedisError as exc:
            self._failed("dropping the entries of another master", exc)
            return False
        finally:
            self._catching_up.release()
        fence.cleared(epoch)
        log.warning(
            "session cache (Redis): %d entries of the previous master dropped in %.3f s; "
            "serving from the cache again",
            dropped,
            time.monotonic() - started,
        )
        return True

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
        epoch = self.fence.epoch if self.fence is not None else 0
        try:
            raw = self.client.get(self.prefix + key)
        except redis.RedisError as exc:
            self._failed("a read", exc)
            return None
        if self.fence is not None and self.fence.epoch != epoch:
            return None  # read on a new connection to another master: not trusted yet
        if raw is None or raw == TOMBSTONE or raw.startswith(MOVED):
            return raw
        try:
            # An entry whose authenticator fails is a miss (said in the log): the
            # database is read, and its row overwrites the entry.
            return decode(key, raw, self.authenticator)
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
                args=[
                    encode(record, version, self.authenticator),
                    version,
                    json.dumps(record.expires),
                    ttl_ms,
                ],
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


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
