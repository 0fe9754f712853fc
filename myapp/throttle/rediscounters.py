"""Attempt counters in Redis: a count and a block per key, each expiring by itself."""

from __future__ import annotations

import redis

from .base import AttemptCounters, Limit

# Count unless blocked, and block at once past the free attempts: one atomic script.
TAKE = """
local blocked = redis.call('pttl', KEYS[2])
if blocked > 0 then return -1 end
local count = redis.call('incr', KEYS[1])
redis.call('pexpire', KEYS[1], ARGV[1])
local over = count - tonumber(ARGV[2])
if over > 0 then
  local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(over - 1, 64))
  redis.call('set', KEYS[2], '1', 'px', math.max(1, math.ceil(delay)))
end
return count
"""
GIVE_BACK = """
if redis.call('get', KEYS[1]) and tonumber(redis.call('get', KEYS[1])) > 0 then
  return redis.call('decr', KEYS[1])
end
return 0
"""


class RedisCounters(AttemptCounters):
    """``<prefix>{key}:n`` counts attempts (forgotten ``forget_after`` after the last);
    ``<prefix>{key}:b`` exists while the key is blocked (its TTL is the wait).

    The braces keep both keys of one account or address in one Cluster slot.
    """

    name = "redis"

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._take = client.register_script(TAKE)
        self._give_back = client.register_script(GIVE_BACK)

    def _keys(self, key: str) -> tuple[str, str]:
        base = f"{self.prefix}{{{key}}}"
        return f"{base}:n", f"{base}:b"

    def take(self, key: str, now: float, limit: Limit) -> int | None:
        args = [
            max(1, int(limit.forget_after * 1000)),
            limit.free,
            limit.first_delay * 1000,
            limit.max_delay * 1000,
        ]
        count = int(self._take(keys=list(self._keys(key)), args=args))
        return None if count < 0 else count

    def blocked_for(self, keys: list[str], now: float) -> float:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(self._keys(key)[1])
        remaining = [ms for ms in pipe.execute() if ms and ms > 0]
        return max(remaining, default=0) / 1000

    def give_back(self, key: str) -> None:
        self._give_back(keys=[self._keys(key)[0]])

    def clear(self, key: str) -> None:
        self.client.delete(*self._keys(key))
