"""Where failed sign-ins are counted: the contract every counter store keeps."""

from __future__ import annotations

import abc


class FailureCounters(abc.ABC):
    """Failures and blocks per key, seen alike by every process that shares the store.

    Keys are short opaque strings (hashes). Times are seconds since the epoch. Every
    method may raise the driver's own error; the caller falls back to process memory.
    """

    #: Named in logs: "sql", "redis" or "memory".
    name: str = ""

    @abc.abstractmethod
    def blocked_for(self, keys: list[str], now: float) -> float:
        """Seconds until every key in ``keys`` may try again (0: none is blocked)."""

    @abc.abstractmethod
    def add_failure(self, key: str, now: float, forget_after: float) -> int:
        """Count one failure; return how many there are now.

        A count whose last failure is ``forget_after`` seconds old starts again at 1.
        """

    @abc.abstractmethod
    def block(self, key: str, until: float, now: float) -> None:
        """Refuse ``key`` until ``until`` (a later block already in place stays)."""

    @abc.abstractmethod
    def clear(self, key: str) -> None:
        """Forget ``key``'s failures (after a successful sign-in)."""
