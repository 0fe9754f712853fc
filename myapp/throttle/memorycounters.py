"""Failure counters in process memory: when no shared store serves, or the shared one failed."""

from __future__ import annotations

import threading
from collections import OrderedDict

from .base import FailureCounters

MAX_KEYS = 100_000


class MemoryCounters(FailureCounters):
    """A bounded LRU of ``key -> [failures, last_failure, blocked_until]``; per process."""

    name = "memory"

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._entries: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked_for(self, keys: list[str], now: float) -> float:
        with self._lock:
            until = max((self._entries[k][2] for k in keys if k in self._entries), default=0.0)
        return max(0.0, until - now)

    def add_failure(self, key: str, now: float, forget_after: float) -> int:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry[1] >= forget_after:
                entry = [0, now, 0.0]
            entry[0] += 1
            entry[1] = now
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
            return int(entry[0])

    def block(self, key: str, until: float, now: float) -> None:
        with self._lock:
            entry = self._entries.setdefault(key, [0, now, 0.0])
            entry[2] = max(entry[2], until)

    def clear(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
