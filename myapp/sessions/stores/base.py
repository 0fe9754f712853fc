"""The small interface every session store implements, and the record it stores."""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace


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


class StoreError(Exception):
    """A store could not do what was asked (down, timed out, broken schema)."""

    def __init__(self, store: str, kind: str, message: str) -> None:
        super().__init__(f"{store} store: {message}")
        self.store = store
        self.kind = kind


class StoreNotReady(StoreError):
    """Raised by ``check()``: the store cannot serve; ``fix`` tells the operator what to do."""

    def __init__(self, store: str, cause: str, fix: str) -> None:
        super().__init__(store, "not_ready", cause)
        self.cause = cause
        self.fix = fix


class StaleSession(Exception):
    """A save lost a race: the stored session changed (or ended) since it was read."""

    def __init__(self, store: str, *, gone: bool) -> None:
        what = "ended or expired" if gone else "changed by a concurrent request"
        super().__init__(f"{store} store: the session was {what} since this request read it")
        self.store = store
        self.gone = gone


class SessionStore(abc.ABC):
    """Where session records live. Stores do I/O only; expiry rules live above them.

    Every method may raise :class:`StoreError` when the store fails.
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
    def touch(self, key: str, last_active: float, expires: float, now: float) -> bool:
        """Move a live session's expiry forward; False when it has already ended."""

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
