"""``session.cache = redis``: the sql store behind a Redis read cache.

``store`` (the store and its request-bound form: the rules that keep the cache from
serving a session the database has ended), ``rediscache`` (the cache's Redis side).
"""

from .rediscache import MOVED, TOMBSTONE, TTL_SECONDS, RedisCache, moved_version
from .store import BoundCachedStore, CachedStore, wrap

__all__ = [
    "MOVED",
    "TOMBSTONE",
    "TTL_SECONDS",
    "BoundCachedStore",
    "CachedStore",
    "RedisCache",
    "moved_version",
    "wrap",
]
