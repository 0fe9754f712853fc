"""The Redis store: one key per session with a server-side TTL, plus a set per user.

A value is one encoded record (``record``). Writes that must be conditional
(versions, "still alive") run as one Lua script: one round trip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisClusterException
from zope.interface import implementer

from ...exceptions import StaleSession, StoreError, StoreNotReady
from ...interfaces import IStoreStatistics, IUserSessions
from ...redact import redact
from ..authenticator import RecordAuthenticator
from ..base import SelfBoundStore, SessionRecord
from . import urls
from .record import decode, encode, expires_of, user_id_of

if TYPE_CHECKING:
    from pyramid.registry import Registry

    from ...options import SessionOptions

# redis-py's cluster client raises RedisClusterException (not a RedisError) for
# cluster-level failures such as a lost slot map: they are store failures too.
REDIS_ERRORS = (redis.RedisError, RedisClusterException)

# KEYS: session key, then the user index key when the session has a user (not on a
# Cluster: the index is in another slot). ARGV: expected version ("" = new), new
# value, ttl ms, then the user index's ttl ms with the index key. Returns 1 stored,
# 0 gone, -1 changed.
_SAVE = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return -1 end
else
  if not current then return 0 end
  if string.match(current, '^%[(%d+),') ~= ARGV[1] then return -1 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if KEYS[2] and KEYS[2] ~= '' then
  redis.call('SADD', KEYS[2], KEYS[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 1
"""

# KEYS: session key. ARGV: version, the record re-signed with its new times, ttl ms.
# Returns 1 touched, 0 gone, -1 changed since it was read (the new value was signed for
# that version: it may only replace it).
_TOUCH = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.match(current, '^%[(%d+),') ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: session key; ARGV: user index prefix. Deletes and unindexes.
_DELETE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local newline = string.find(current, '\\n', 1, true)
local header = cjson.decode(string.sub(current, 1, newline - 1))
redis.call('DEL', KEYS[1])
if type(header[6]) == 'string' then
  redis.call('SREM', ARGV[1] .. header[6], KEYS[1])
end
return 1
"""


def make_client(
    url: str, timeout: float, on_connect: Callable[[Any], None] | None = None
) -> redis.Redis:
    """A client that fails within ``timeout`` instead of retrying with back-off.

    ``url`` may also name a Sentinel service or a Cluster (see ``urls``);
    ``on_connect(connection)`` runs on each new connection before its first command.
    """
    return urls.make_client(url, timeout, on_connect)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# Not IPurgeable: Redis expires session keys itself.
@implementer(IUserSessions, IStoreStatistics)
class RedisStore(SelfBoundStore):
    name = "redis"
    shared = True

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        max_lifetime: int,
        authenticator: RecordAuthenticator,
        min_replicas: int = 0,
        replica_timeout: float = 0.5,
        url_for_messages: str = "",
    ) -> None:
        self.client = client
        # Writes wait (WAIT, in the same round trip) until this many replicas have them:
        # a replica promoted after a failover then holds every confirmed write and every
        # ended session. A write that misses its replicas is a store failure (503).
        self.min_replicas = min_replicas
        self.replica_timeout_ms = max(1, int(replica_timeout * 1000))
        self.authenticator = authenticator
        self.prefix = prefix
        self.user_prefix = prefix + "user:"
        self.max_lifetime = max_lifetime
        self.url_for_messages = url_for_messages
        self._save = client.register_script(_SAVE)
        self._touch = client.register_script(_TOUCH)
        self._delete = client.register_script(_DELETE)
        # A script may only touch keys of one slot in a Cluster; there the per-user
        # index is kept by separate commands (not atomic with the session write).
        self._cluster = isinstance(client, RedisCluster)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.TimeoutError as exc:
            raise StoreError(self.name, "timeout", f"{what} timed out ({exc})") from exc
        except redis.ConnectionError as exc:
            raise StoreError(self.name, "connection", f"{what} failed: {exc}") from exc
        except REDIS_ERRORS as exc:
            raise StoreError(self.name, type(exc).__name__.lower(), f"{what}: {exc}") from exc

    def _run(
        self, script: Script, keys: list[str], args: list[object], *, replicated: bool = True
    ) -> object:
        """EVALSHA, loading the script when the server does not know it (a restart, a
        failover). redis-py's ``Script.__call__`` does the same with more work per call.

        With ``min_replicas``, WAIT follows in the same round trip."""
        if replicated and self.min_replicas and not self._cluster:
            return self._run_replicated(script, keys, args)
        try:
            return self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            script.sha = self.client.script_load(script.script)
            return self.client.evalsha(script.sha, len(keys), *keys, *args)

    def _run_replicated(self, script: Script, keys: list[str], args: list[object]) -> object:
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(self.min_replicas, self.replica_timeout_ms)
            result, replicas = pipe.execute(raise_on_error=False)
            if isinstance(result, NoScriptError) and attempt == 1:
                script.sha = self.client.script_load(script.script)
                continue
            if isinstance(result, Exception):
                raise result
            if isinstance(replicas, Exception):
                raise replicas
            self._replicated(int(replicas))
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _replicated(self, replicas: int) -> None:
        if replicas < self.min_replicas:
            raise StoreError(
                self.name,
                "replication",
                f"the write reached {replicas} of {self.min_replicas} replicas within "
                f"{self.replica_timeout_ms} ms (session.redis_min_replicas); it may be lost "
                "if the master fails now",
            )

    def check(self) -> None:
        try:
            self.client.ping()
        except REDIS_ERRORS as exc:
            raise StoreNotReady(
                self.name,
                f"PING failed ({exc})",
                f"check session.redis_url ({self.url_for_messages}) and that Redis is running",
            ) from exc

    def load(self, key: str, now: float) -> SessionRecord | None:
        raw = self._call("GET", self.client.get, self._key(key))
        if raw is None:
            return None
        return self._parse(key, raw, now)

    def _parse(self, key: str, raw: bytes, now: float) -> SessionRecord | None:
        try:
            stored = decode(key, raw, self.authenticator)
        except (ValueError, UnicodeDecodeError):
            self.authenticator.refused("it cannot be decoded")
            return None
        return stored if stored is not None and stored.expires > now else None

    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        new_version = 1 if expected_version is None else expected_version + 1
        key = self._key(record.key)
        args: list[object] = [
            "" if expected_version is None else expected_version,
            encode(record, new_version, self.authenticator),
            _ms(record.expires - record.last_active),
        ]
        # Without a user there is no index to keep: the script gets one key, three args.
        user_key = self.user_prefix + record.user_id if record.user_id else ""
        if user_key and not self._cluster:
            # Every key of a script must hash to one slot: a Cluster's index is added below.
            keys = [key, user_key]
            args.append(_ms(self.max_lifetime))
        else:
            keys = [key]
        result = self._call("save", self._run, self._save, keys, args)
        if result == 1:
            if self._cluster and user_key:
                self._call("SADD", self.client.sadd, user_key, key)
                self._call("PEXPIRE", self.client.pexpire, user_key, _ms(self.max_lifetime))
            return new_version
        raise StaleSession(self.name, gone=result == 0)

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> bool:
        moved = record.with_changes(last_active=last_active, expires=expires)
        value = encode(moved, record.version, self.authenticator)
        result = self._call(
            "touch",
            self._run,
            self._touch,
            [self._key(record.key)],
            [record.version, value, _ms(expires - now)],
            replicated=False,  # a lost touch only leaves the older expiry
        )
        # Changed since it was read (-1): a newer save moved its expiry already.
        return result != 0

    def delete(self, key: str) -> None:
        if self._cluster:
            raw = self._call("GET", self.client.get, self._key(key))
            self._call("DEL", self.client.delete, self._key(key))
            user_id = None if raw is None else user_id_of(raw)
            if isinstance(user_id, str):
                self._call("SREM", self.client.srem, self.user_prefix + user_id, self._key(key))
            return
        self._call("delete", self._run, self._delete, [self._key(key)], [self.user_prefix])

    def delete_user(self, user_id: str, *, except_key: str | None = None) -> int:
        index = self.user_prefix + user_id
        members = self._call("SMEMBERS", self.client.smembers, index)
        victims = [m for m in members if m.decode() != self._key(except_key or "")]
        if not victims:
            return 0
        if self._cluster:
            # The sessions sit in many slots: DEL is split per slot, the index updated after.
            deleted = self._call("DEL", self.client.delete, *victims)
            self._call("SREM", self.client.srem, index, *victims)
            return int(deleted)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*victims)
        pipe.srem(index, *victims)
        deleted, _ = self._call("delete_user", pipe.execute)
        if self.min_replicas:
            replicas = self._call(
                "WAIT", self.client.wait, self.min_replicas, self.replica_timeout_ms
            )
            self._replicated(int(replicas))
        return int(deleted)

    def list_user(self, user_id: str, now: float) -> list[SessionRecord]:
        index = self.user_prefix + user_id
        members = sorted(self._call("SMEMBERS", self.client.smembers, index))
        if not members:
            return []
        # A Cluster client splits the MGET per slot (not atomic, like the index itself).
        mget = self.client.mget_nonatomic if self._cluster else self.client.mget
        values = self._call("MGET", mget, members)
        records, stale = [], []
        for member, raw in zip(members, values, strict=True):
            if raw is None:  # expired or deleted: the index forgets it
                stale.append(member)
                continue
            # One that fails its authenticator is left to expire (and not listed).
            record = self._parse(member.decode()[len(self.prefix) :], raw, now)
            if record is not None:
                records.append(record)
        if stale:
            self._call("SREM", self.client.srem, index, *stale)
        return sorted(records, key=lambda r: r.created)

    def count(self, now: float) -> tuple[int, int]:
        # Only session keys: the prefix and a storage key (64 hex digits). The user
        # indexes, the read cache (``cache:``) and the sign-in throttle (``throttle:``)
        # share the prefix and are not sessions.
        live = 0
        pattern = self.prefix + "[0-9a-f]" * 64
        for _ in self.client.scan_iter(match=pattern, count=1000):
            live += 1
        return live, 0

    def top_users(self, now: float, limit: int) -> list[tuple[str, int]]:
        # Counted from the user indexes and the expiry in each live record's header,
        # without verifying the records: operator tools count without the secret.
        mget = self.client.mget_nonatomic if self._cluster else self.client.mget
        counts = []
        for index in self.client.scan_iter(match=self.user_prefix + "*", count=1000):
            members = list(self.client.smembers(index))
            values = mget(members) if members else []
            live = sum(1 for raw in values if raw is not None and (expires_of(raw) or 0.0) > now)
            if live:
                counts.append((index.decode()[len(self.user_prefix) :], live))
        return sorted(counts, key=lambda c: (-c[1], c[0]))[:limit]

    def close(self) -> None:
        self.client.close()


def build(options: SessionOptions, registry: Registry) -> RedisStore:
    try:
        client = make_client(options.redis_url, options.store_timeout)
    except REDIS_ERRORS as exc:  # a Cluster client connects on construction
        cause = f"cannot reach {redact(options.redis_url)}: {exc}"
        raise StoreError("redis", "connection", cause) from exc
    return RedisStore(
        client,
        prefix=options.redis_prefix,
        max_lifetime=options.max_lifetime,
        min_replicas=options.redis_min_replicas,
        replica_timeout=options.redis_replica_timeout,
        authenticator=RecordAuthenticator(options.secret_bytes, "redis"),
        url_for_messages=redact(options.redis_url),
    )
