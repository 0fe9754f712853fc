"""A Redis key prefix of its own for a test, and its keys deleted afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def unique_prefix(label: str = "myapp-test") -> Iterator[str]:
    prefix = f"{label}-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
