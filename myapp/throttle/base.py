"""Where sign-in attempts are counted: the contract every counter store keeps."""

from __future__ import annotations

import abc
from dataclasses import dataclass

# Delays double from the first one; past this many doublings every delay is the cap.
MAX_DOUBLINGS = 64


@dataclass(frozen=True, slots=True)
class Limit:
    """How many attempts a key gets for free, and the delays that follow.

    The attempt that makes the count ``free + k`` (k >= 1) blocks the key for
    ``first_delay * 2 ** (k - 1)`` seconds, at most ``max_delay``, from the moment it
    is counted. Counts start again ``forget_after`` seconds after the last attempt.
    """

    free: int
    first_delay: float
    max_delay: float
    forget_after: float

    def delay(self, count: int) -> float:
        """The block the ``count``-th attempt begins (0: none)."""
        over = count - self.free
        if over <= 0:
            return 0.0
        return min(self.max_delay, self.first_delay * 2.0 ** min(over - 1, MAX_DOUBLINGS))

    def doublings(self) -> int:
        """How many attempts past ``free`` have a delay under the cap (for SQL's CASE)."""
        steps, delay = 0, self.first_delay
        while delay < self.max_delay and steps < MAX_DOUBLINGS:
            steps, delay = steps + 1, delay * 2.0
        return steps


class AttemptCounters(abc.ABC):
    """Attempts and blocks per key, seen alike by every process that shares the store.

    Keys are short opaque strings (keyed hashes). Times are seconds since the epoch.
    Every method may raise the driver's own error: the throttle then refuses the
    sign-in (it never counts in one process instead).
    """

    #: Named in logs: "sql", "redis" or "memory".
    name: str = ""

    @abc.abstractmethod
    def take(self, key: str, now: float, limit: Limit) -> int | None:
        """Count one attempt for ``key`` unless it is blocked, in one atomic step.

        Returns the count with this attempt, or None when the key was blocked (nothing
        counted). The attempt that goes past ``limit.free`` blocks the key at once, so
        attempts made at the same moment see the block, not a count to race on.
        """

    @abc.abstractmethod
    def blocked_for(self, keys: list[str], now: float) -> float:
        """Seconds until every key in ``keys`` may try again (0: none is blocked)."""

    @abc.abstractmethod
    def give_back(self, key: str) -> None:
        """Uncount one attempt of ``key`` (it succeeded, or another key refused it)."""

    @abc.abstractmethod
    def clear(self, key: str) -> None:
        """Forget ``key``'s attempts and block (after a successful sign-in)."""
