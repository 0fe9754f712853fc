"""The ``redis`` store: ``store`` (one key per session, a set per user), ``record`` (the one
encoding of a record in Redis, shared with the read cache), ``urls`` (redis://, rediss://,
unix://, Sentinel and Cluster URLs)."""

from .store import REDIS_ERRORS, RedisStore, build, make_client

__all__ = ["REDIS_ERRORS", "RedisStore", "build", "make_client"]
