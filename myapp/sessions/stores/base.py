"""The record every store keeps, and the base classes stores build on.

The contract itself is stated in ``myapp.sessions.interfaces``; these classes give
the parts most stores share (the defaults of the optional operations).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from zope.interface import implementer

from ..exceptions import StaleSession, StoreError, StoreNotReady
from ..interfaces import IRequestBoundStore, ISessionStore

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
    """The base of every store (:class:`~myapp.sessions.interfaces.ISessionStore`):
    the I/O methods are abstract, the optional operations have their usual defaults.
    """

    #: The backend name used in ``session.backends``.
    name: str = ""
    #: True when every process of the site sees the same records.
    shared: bool = True

    @abc.abstractmethod
    def check(self) -> None:
        """Prove the store can serve now, or raise :class:`StoreNotReady`."""

    @abc.abstractmethod
    def load(self, key: str, now: float) -> SessionRecord | None:
        """The live record stored under ``key``, or None (missing or expired)."""

    @abc.abstractmethod
    def save(self, record: SessionRecord, expected_version: int | None) -> int:
        """Store ``record``; return its new version.

        ``expected_version`` None inserts a new session. Otherwise the stored
        version must still equal it and the session must still be live, or
        :class:`StaleSession` is raised and nothing is written.
        """

    @abc.abstractmethod
    def touch(self, record: SessionRecord, last_active: float, expires: float, now: float) -> bool:
        """Move a live session's expiry forward (``record``: as it was loaded); False
        when it has already ended."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Forget one session (no error when it is already gone)."""

    @abc.abstractmethod
    def delete_user(self, user_id: str, *, except_key: str | None = None) -> int:
        """End every session of ``user_id`` (but ``except_key``); return how many."""

    @abc.abstractmethod
    def list_user(self, user_id: str, now: float) -> list[SessionRecord]:
        """The live sessions of ``user_id``, oldest first."""

    @abc.abstractmethod
    def purge_expired(self, now: float, batch_size: int) -> int:
        """Delete up to ``batch_size`` expired sessions; return how many went."""

    @abc.abstractmethod
    def count(self, now: float) -> tuple[int, int]:
        """How many sessions are (live, expired) — for operators, not the hot path."""

    @abc.abstractmethod
    def top_users(self, now: float, limit: int) -> list[tuple[str, int]]:
        """The users with the most live sessions, most first — for operators."""

    def load_offline(self, key: str, now: float) -> SessionRecord | None:
        """What the store can answer while its server is down (a cache's copy); None here."""
        return None

    def adopt(self, record: SessionRecord) -> int:
        """Store a session read through from another store; like a new session here."""
        return self.save(record, None)

    def release(self, record: SessionRecord) -> None:
        """The session now lives in another store (or ended there): forget it here."""
        self.delete(record.key)

    def health(self) -> dict[str, object]:
        """Extra state for ``/healthz`` (a cache's breaker); read from memory, no I/O."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional for stores that hold nothing
        """Release connections; the store is not used afterwards."""

    @abc.abstractmethod
    def bind(self, request: Request) -> IRequestBoundStore:
        """This store as ``request`` uses it (see ``IRequestBoundStore``)."""


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
        """Nothing to roll back: queued writes are dropped with the transaction."""
