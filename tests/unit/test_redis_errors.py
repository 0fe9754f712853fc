"""Every failure of a Redis client becomes a StoreError the session layer handles."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import RedisClusterException

from myapp.sessions.stores.authenticator import RecordAuthenticator
from myapp.sessions.stores.base import StoreError
from myapp.sessions.stores.redisstore import RedisStore


def store() -> RedisStore:
    # from_url does not connect: no server is needed to build the store.
    return RedisStore(
        redis.Redis.from_url("redis://127.0.0.1:1/0"),
        prefix="t:",
        max_lifetime=60,
        authenticator=RecordAuthenticator((b"unit-test-secret-0123456789abcdefghij",), "redis"),
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis.TimeoutError("slow"), "timeout"),
        (redis.ConnectionError("refused"), "connection"),
        (redis.ResponseError("WRONGTYPE"), "responseerror"),
        (RedisClusterException("slot map lost"), "redisclusterexception"),
    ],
)
def test_client_failures_become_store_errors(error, kind):
    def fail():
        raise error

    with pytest.raises(StoreError) as info:
        store()._call("GET", fail)
    assert info.value.kind == kind
    assert info.value.store == "redis"
