"""The record every store keeps, the base classes stores build on, and what the
chain does with a store that has no read cache.

The contract is stated once, in ``myapp.sessions.interfaces``: these classes hold
shared code only, and a method here means what the interface says it means.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from zope.interface import implementer

from ..exceptions import StaleSession, StoreError, StoreNotReady
from ..interfaces import IReadCache, IRequestBoundStore, ISessionStore

if TYPE_CHECKING:
    from pyramid.request import Request

# Importable from here as before; they live in ``myapp.sessions.exceptions``.
__all__ = [
    "SelfBoundStore",
    "SessionRecord",
    "SessionStore",
    "StaleSession",
    "StoreError",
    "StoreNotReady",
]


@dataclass(slots=True)
class SessionRecord:
    """One stored session. Times are seconds since the epoch (UTC).

    ``key`` is the SHA-256 of the cookie token, never the token itself. ``data`` is
    the JSON text of the session dict. ``version`` grows by one with every save and
    lets a store refuse a write based on a stale read.
    """

    key: str
    data: str
    created: float
    last_active: float
    expires: float
    user_id: str | None = None
    user_agent: str | None = None
    version: int = 0

    def with_changes(self, **changes: object) -> SessionRecord:
        return replace(self, **changes)


@implementer(ISessionStore)
class SessionStore(abc.ABC):
    """The base of a store (:class:`~myapp.sessions.interfaces.ISessionStore`): the
    core I/O methods are abstract. A store declares its capabilities itself."""

    name: str = ""
    shared: bool = True

    @abc.abstractmethod
    def check(self) -> None: ...

    @abc.abstractmethod
    def load(self, key: str, now: float) -> SessionRecord | None: ...

    @abc.abstractmethod
    def save(self, record: SessionRecord, expected_version: int | None) -> int: ...

    @abc.abstractmethod
    def touch(
        self, record: SessionRecord, last_active: float, expires: float, now: float
    ) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional for stores that hold nothing
        pass

    @abc.abstractmethod
    def bind(self, request: Request) -> IRequestBoundStore: ...


@implementer(IRequestBoundStore)
class SelfBoundStore(SessionStore):
    """A store that keeps no request state (Redis, memory): bound, it is itself.

    Its writes never join a database transaction; the session factory queues them
    until the request's transaction votes.
    """

    answered_from_cache = False

    def bind(self, request: Request) -> SelfBoundStore:
        return self

    def in_request_transaction(self) -> bool:
        return False

    def session_transaction(self) -> None:
        return None

    def abandon(self) -> None:
        pass  # nothing to roll back: queued writes are dropped with the transaction


# What the chain does with any store when sessions move between stores: a store with
# a read cache (IReadCache) has its own way; for any other the core does.


def load_offline(store: ISessionStore, key: str, now: float) -> SessionRecord | None:
    return store.load_offline(key, now) if IReadCache.providedBy(store) else None


def adopt(store: ISessionStore, record: SessionRecord) -> int:
    return store.adopt(record) if IReadCache.providedBy(store) else store.save(record, None)


def release(store: ISessionStore, record: SessionRecord) -> None:
    if IReadCache.providedBy(store):
        store.release(record)
    else:
        store.delete(record.key)


def health(store: ISessionStore) -> dict[str, object]:
    return store.health() if IReadCache.providedBy(store) else {}
