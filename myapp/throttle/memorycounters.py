"""Attempt counters in process memory: only when memory serves the sessions."""

from __future__ import annotations

import threading
from collections import OrderedDict

from .base import AttemptCounters, Limit

MAX_KEYS = 100_000


class MemoryCounters(AttemptCounters):
    """A bounded LRU of ``key -> [attempts, last_attempt, blocked_until]``; per process."""

    name = "memory"

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._entries: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float, limit: Limit) -> int | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry[1] >= limit.forget_after:
                entry = [0, now, 0.0]
            elif entry[2] > now:
                return None
            entry[0] += 1
            entry[1] = now
            delay = limit.delay(int(entry[0]))
            if delay:
                entry[2] = now + delay
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
            return int(entry[0])

    def blocked_for(self, keys: list[str], now: float) -> float:
        with self._lock:
            until = max((self._entries[k][2] for k in keys if k in self._entries), default=0.0)
        return max(0.0, until - now)

    def give_back(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry[0] = max(0, entry[0] - 1)

    def clear(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
