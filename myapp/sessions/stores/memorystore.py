"""The last-resort store: a bounded, thread-safe dict in this process only."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from zope.interface import implementer

from ..exceptions import StaleSession
from ..interfaces import IPurgeable, IStoreStatistics, IUserSessions
from .base import SelfBoundStore, SessionRecord

if TYPE_CHECKING:
    from pyramid.registry import Registry

    from ..options import SessionOptions


@implementer(IUserSessions, IPurgeable, IStoreStatistics)
class MemoryStore(SelfBoundStore):
    """Least recently used sessions are evicted beyond ``max_entries``.

    Not shared: another process (or a restart) does not see these sessions.
    """

    name = "memory"
    shared = False

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._records)

    def check(self) -> None:
        return None

    def _live(self, key: str, now: float) -> SessionRecord | None:
        # Caller holds the lock.
        record = self._records.get(key)
        if record is None:
            return None
        if record.expires <= now:
            self._forget(key)
            return None
        return record

    def _forget(self, key: str) -> SessionRecord | None:
        record = self._records.pop(key, None)
        if record is not None and record.user_id is not None:
            keys = self._by_user.get(record.user_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_user[record.user_id]
        return record

    def load(self, key: str, now: float) -> SessionRecord | None:
        with self._lock:
            record = self._live(key, now)
            if record is not None:
                self._records.move_to_end(key)
            return record

    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        with self._lock:
            current = self._live(record.key, record.last_active)
            if expected_version is None:
                if current is not None:
                    raise StaleSession(self.name, gone=False)
                version = 1
            else:
                if current is None:
                    raise StaleSession(self.name, gone=True)
                if current.version != expected_version:
                    raise StaleSession(self.name, gone=False)
                version = expected_version + 1
            self._forget(record.key)
            self._records[record.key] = record.with_changes(version=version)
            if record.user_id is not None:
                self._by_user.setdefault(record.user_id, set()).add(record.key)
            while len(self._records) > self.max_entries:
                oldest = next(iter(self._records))
                self._forget(oldest)
                self.evictions += 1
            return version

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> bool:
        key = record.key
        with self._lock:
            current = self._live(key, now)
            if current is None:
                return False
            self._records[key] = current.with_changes(last_active=last_active, expires=expires)
            self._records.move_to_end(key)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._forget(key)

    def delete_user(self, user_id: str, *, except_key: str | None = None) -> int:
        with self._lock:
            victims = [k for k in self._by_user.get(user_id, ()) if k != except_key]
            for key in victims:
                self._forget(key)
            return len(victims)

    def list_user(self, user_id: str, now: float) -> list[SessionRecord]:
        with self._lock:
            keys = list(self._by_user.get(user_id, ()))
            records = [r for r in (self._live(k, now) for k in keys) if r is not None]
        return sorted(records, key=lambda r: r.created)

    def purge_expired(self, now: float, batch_size: int) -> int:
        with self._lock:
            victims = [k for k, r in self._records.items() if r.expires <= now][:batch_size]
            for key in victims:
                self._forget(key)
            return len(victims)

    def count(self, now: float) -> tuple[int, int]:
        with self._lock:
            expired = sum(1 for r in self._records.values() if r.expires <= now)
            return len(self._records) - expired, expired

    def top_users(self, now: float, limit: int) -> list[tuple[str, int]]:
        with self._lock:
            counts = [
                (user_id, sum(1 for key in keys if self._records[key].expires > now))
                for user_id, keys in self._by_user.items()
            ]
        return sorted((c for c in counts if c[1]), key=lambda c: (-c[1], c[0]))[:limit]

    def close(self) -> None:
        with self._lock:
            self._records.clear()
            self._by_user.clear()


def build(options: SessionOptions, registry: Registry) -> MemoryStore:
    return MemoryStore(options.memory_max_entries)
