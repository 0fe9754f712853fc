"""The memory store is bounded, evicts least recently used, and is thread-safe."""

from __future__ import annotations

import threading
import time

from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.memorystore import MemoryStore


def rec(key: str, now: float, user: str | None = None) -> SessionRecord:
    return SessionRecord(key, "{}", now, now, now + 600, user)


def test_bounded_with_lru_eviction():
    store = MemoryStore(max_entries=3)
    now = time.time()
    for key in "abc":
        store.save(rec(key, now), None)
    store.load("a", now)  # a is now the most recently used
    store.save(rec("d", now), None)
    assert len(store) == 3
    assert store.load("b", now) is None
    assert store.load("a", now) is not None
    assert store.evictions == 1


def test_eviction_also_drops_the_user_index():
    store = MemoryStore(max_entries=1)
    now = time.time()
    store.save(rec("a", now, user="u"), None)
    store.save(rec("b", now), None)
    assert store.list_user("u", now) == []


def test_concurrent_writers_stay_within_the_bound():
    store = MemoryStore(max_entries=100)
    now = time.time()

    def writer(prefix: str) -> None:
        for i in range(500):
            store.save(rec(f"{prefix}{i}", now), None)

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 100
    assert store.evictions == 1900
