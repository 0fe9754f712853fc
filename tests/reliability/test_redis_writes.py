"""The Redis store's writes on a private Redis: its scripts forgotten by the server, and
writes that must reach a replica (``session.redis_min_replicas``) with none there.
After each failure, the next requests of the same client and of another succeed."""

from __future__ import annotations

import pytest
import redis
from webtest import TestApp

from tests.conftest import LOOPBACK
from tests.servers import ThrowawayRedis

from .test_faults import FAST

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def redis_app(make_app, postgres_url: str, server: ThrowawayRedis, **extra: str):
    return make_app(
        "custom",
        **{
            **FAST,
            "sqlalchemy.url": postgres_url,
            "session.backends": "redis",
            "session.redis_url": server.url,
            "session.store_timeout": "0.5",
            **extra,
        },
    )


def test_scripts_the_server_forgot_are_loaded_again(make_app, postgres_url, throwaway_redis):
    """A restarted or newly promoted server knows none of the store's scripts."""
    handle = redis_app(make_app, postgres_url, throwaway_redis)
    handle.app.get("/_t/write?value=a")
    redis.Redis(port=throwaway_redis.port).script_flush()
    assert handle.app.get("/_t/write?value=b").json["value"] == "b"
    assert handle.app.get("/_t/read").json["value"] == "b"
    handle.app.get("/_t/invalidate")  # the delete script, forgotten too
    assert handle.app.get("/_t/read").json == {"value": None, "new": True}
    other = TestApp(handle.router, extra_environ=LOOPBACK)
    other.get("/_t/write?value=o")
    assert other.get("/_t/read").json["value"] == "o"


def test_a_write_no_replica_confirmed_is_refused_and_reads_go_on(
    make_app, postgres_url, throwaway_redis
):
    replicated = redis_app(
        make_app,
        postgres_url,
        throwaway_redis,
        **{"session.redis_min_replicas": "1", "session.redis_replica_timeout": "0.05"},
    )
    plain = redis_app(make_app, postgres_url, throwaway_redis)
    plain.app.get("/_t/write?value=before")  # written without waiting for a replica
    replicated.app.set_cookie("session", plain.app.cookies["session"])

    refused = replicated.app.get("/_t/write?value=after", status="*")
    assert refused.status_int == 503
    # The same client's next requests: its session is still served.
    assert replicated.app.get("/_t/read").json["value"] in ("before", "after")
    assert replicated.app.get("/_t/write?value=again", status="*").status_int == 503
    # Another client reads too; its first write is refused the same way, never a 500.
    other = TestApp(replicated.router, extra_environ=LOOPBACK)
    assert other.get("/_t/read").json["new"] is True
    assert other.get("/_t/write?value=o", status="*").status_int == 503


def test_a_write_redis_refuses_at_the_commit_point_keeps_the_old_session(
    make_app, postgres_url, throwaway_redis
):
    """A write the Redis server refuses at the commit point (out of memory: reads still
    answer) answers 503 and stores nothing, and the next requests of the same client
    and of another succeed."""
    handle = redis_app(make_app, postgres_url, throwaway_redis)
    handle.app.get("/_t/write?value=before")
    server = redis.Redis(port=throwaway_redis.port)
    server.config_set("maxmemory-policy", "noeviction")
    server.config_set("maxmemory", "1")  # every write command is refused, reads go on
    try:
        refused = handle.app.get("/_t/write?value=after", status="*")
        assert refused.status_int == 503
        assert "Set-Cookie" not in refused.headers
        # The same client, on the same app and connection pool: its old session stands.
        assert handle.app.get("/_t/read").json["value"] == "before"
        other = TestApp(handle.router, extra_environ=LOOPBACK)
        assert other.get("/_t/read").json == {"value": None, "new": True}
    finally:
        server.config_set("maxmemory", "0")
    assert handle.app.get("/_t/write?value=after").json["value"] == "after"
    assert handle.app.get("/_t/read").json["value"] == "after"
    other.get("/_t/write?value=o")
    assert other.get("/_t/read").json["value"] == "o"
