"""A session store written outside the package, in one file: a dict in process memory.

Named in the ini as ``session.backends = tests.support.outsidestore:DictStore``. It keeps
the core contract (``ISessionStore``) and two capabilities (``IUserSessions``, and
``IPurgeable`` so that expired sessions do not stay in memory for ever), and passes
tests/functional/test_store_contract.py like the package's own stores.
"""

from __future__ import annotations

import threading

from pyramid.registry import Registry
from zope.interface import implementer

from myapp.sessions.exceptions import StaleSession
from myapp.sessions.interfaces import IPurgeable, IUserSessions
from myapp.sessions.options import SessionOptions
from myapp.sessions.stores.base import SelfBoundStore, SessionRecord


@implementer(IUserSessions, IPurgeable)
class DictStore(SelfBoundStore):
    """Every session in one dict, under one lock. Not shared between processes."""

    name = "dict"
    shared = False

    def __init__(self, options: SessionOptions | None = None, registry: Registry | None = None):
        self._records: dict[str, SessionRecord] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> SessionRecord | None:
        record = self._records.get(key)
        return record if record is not None and now < record.expires else None

    # -- ISessionStore ----------------------------------------------------------
    def check(self) -> None:
        return None

    def load(self, key: str, now: float) -> SessionRecord | None:
        with self._lock:
            return self._live(key, now)

    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        with self._lock:
            current = self._live(record.key, record.last_active)
            if expected_version is None and current is not None:
                raise StaleSession(self.name, gone=False)
            if expected_version is not None:
                if current is None:
                    raise StaleSession(self.name, gone=True)
                if current.version != expected_version:
                    raise StaleSession(self.name, gone=False)
            version = 1 if expected_version is None else expected_version + 1
            self._records[record.key] = record.with_changes(version=version)
            return version

    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> bool:
        with self._lock:
            current = self._live(record.key, now)
            if current is None:
                return False
            if current.version == record.version:
                self._records[record.key] = current.with_changes(
                    last_active=last_active, expires=expires
                )
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    # -- IUserSessions ----------------------------------------------------------
    def delete_user(self, user_id: str, *, except_key: str | None = None) -> int:
        with self._lock:
            victims = [
                key
                for key, record in self._records.items()
                if record.user_id == user_id and key != except_key
            ]
            for key in victims:
                del self._records[key]
            return len(victims)

    def list_user(self, user_id: str, now: float) -> list[SessionRecord]:
        with self._lock:
            mine = [r for r in self._records.values() if r.user_id == user_id and now < r.expires]
        return sorted(mine, key=lambda record: record.created)

    # -- IPurgeable (session.purge_interval, myapp-sessions purge) ----------------
    def purge_expired(self, now: float, batch_size: int) -> int:
        with self._lock:
            expired = [key for key, r in self._records.items() if r.expires <= now][:batch_size]
            for key in expired:
                del self._records[key]
            return len(expired)
