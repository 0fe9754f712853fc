"""Failure counters in Redis: a counter and a block per key, each expiring by itself."""

from __future__ import annotations

import math

import redis

from .base import FailureCounters


class RedisCounters(FailureCounters):
    """``<prefix>{key}:n`` counts failures (forgotten ``forget_after`` after the last);
    ``<prefix>{key}:b`` exists while the key is blocked (its TTL is the wait).

    The braces keep both keys of one account or address in one Cluster slot.
    """

    name = "redis"

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _keys(self, key: str) -> tuple[str, str]:
        base = f"{self.prefix}{{{key}}}"
        return f"{base}:n", f"{base}:b"

    def blocked_for(self, keys: list[str], now: float) -> float:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(self._keys(key)[1])
        remaining = [ms for ms in pipe.execute() if ms and ms > 0]
        return max(remaining, default=0) / 1000

    def add_failure(self, key: str, now: float, forget_after: float) -> int:
        count_key, _ = self._keys(key)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(count_key)
        pipe.pexpire(count_key, max(1, int(forget_after * 1000)))
        failures, _ = pipe.execute()
        return int(failures)

    def block(self, key: str, until: float, now: float) -> None:
        ms = max(1, math.ceil((until - now) * 1000))
        _, block_key = self._keys(key)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(block_key, b"1", px=ms, nx=True)
        pipe.pexpire(block_key, ms, gt=True)  # a longer block already in place stays
        pipe.execute()

    def clear(self, key: str) -> None:
        self.client.delete(*self._keys(key))
