"""Real servers, real faults: killed, frozen, restarted, dropped tables, in a running app."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from myapp.sessions import NoStoreReady, get_observer
from myapp.sessions.events import SessionObserver
from tests.conftest import AppHandle
from tests.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.databases import migrate

from .apps import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# Generous: proves "bounded, not hung" (store_timeout 1 s, connect_timeout 2 s).
BOUNDED = 8.0
FAST = {
    "session.recheck_interval": "0.2",
    "session.breaker_cooldown": "0.3",
    "pyramid.includes": "tests.support.views tests.reliability.views",
}


class Recorder(SessionObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def active_store(self, store: str, preferred: bool) -> None:
        self.events.append(("active_store", (store, preferred)))

    def fallback(self, from_store: str | None, to_store: str, reason: str) -> None:
        self.events.append(("fallback", (from_store, to_store)))

    def recovered(self, from_store: str, to_store: str) -> None:
        self.events.append(("recovered", (from_store, to_store)))


@pytest.fixture
def pg(throwaway_pg: ThrowawayPostgres) -> tuple[ThrowawayPostgres, str]:
    url = throwaway_pg.create_database("app")
    migrate(url)
    return throwaway_pg, url


def _flush(server: ThrowawayPostgres) -> None:
    """Make what was committed survive a SIGKILL: the throwaway server commits
    asynchronously, and a crash loses the last fraction of a second."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _app(make_app: Callable[..., AppHandle], **settings: Any) -> AppHandle:
    return make_app("custom", **{**FAST, **settings})


def _sql_redis(url: str, redis_url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "sqlalchemy.url": url,
        "session.backends": "sql redis",
        "session.redis_url": redis_url,
        "session.redis_prefix": prefix,
        **extra,
    }


def _health(handle: AppHandle) -> dict[str, Any]:
    return handle.app.get("/healthz").json


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


# -- PostgreSQL ----------------------------------------------------------------


def test_primary_down_at_start_serves_from_redis_then_returns(make_app, pg, redis_prefix, caplog):
    server, url = pg
    server.stop()
    caplog.set_level(logging.INFO, logger="myapp")
    handle = _app(make_app, **_sql_redis(url, "redis://127.0.0.1:6379/0", redis_prefix))
    recorder = Recorder()
    get_observer(handle.registry).add(recorder)
    assert _health(handle)["session_backend"] == "redis"
    handle.app.get("/_r/cart_add?item=a")

    server.start()
    wait_for(lambda: _health(handle)["status"] == "ok", 10, "the switch back to sql")
    assert ("recovered", ("redis", "sql")) in recorder.events
    assert ("active_store", ("sql", True)) in recorder.events
    assert "is ready again" in caplog.text
    # Created on Redis during the outage, still valid, and moved into PostgreSQL.
    assert handle.app.get("/_r/cart_add?item=b").json == {"count": 2}
    with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM user_sessions").fetchone()[0] == 1


def test_primary_killed_without_failover_answers_503_naming_the_store(make_app, pg, caplog):
    server, url = pg
    handle = _app(make_app, **{"sqlalchemy.url": url, "session.backends": "sql"})
    handle.app.get("/_t/write?value=kept")
    _flush(server)
    server.kill()
    caplog.set_level(logging.INFO, logger="myapp")

    load = handle.app.get("/_t/read", status=503)  # fails while loading
    assert load.headers["Retry-After"]
    fresh = handle.app.__class__(handle.router)  # no cookie: fails while committing
    commit = fresh.get("/_t/write?value=new", status=503)
    assert commit.headers["Retry-After"]
    assert "session store 'sql' failed" in caplog.text

    server.start()  # the pool still holds connections to the dead server
    assert handle.app.get("/_t/read").json["value"] == "kept"


def test_primary_killed_with_failover_keeps_serving_and_recovers(make_app, pg, redis_prefix):
    server, url = pg
    settings = _sql_redis(url, "redis://127.0.0.1:6379/0", redis_prefix)
    handle = _app(
        make_app,
        **settings,
        **{"session.runtime_failover": "true"},
        **{"session.breaker_threshold": "2"},
    )
    handle.app.get("/_r/cart_add?item=before")
    cookie = handle.app.cookies["session"]
    _flush(server)
    server.kill()

    # Its session is in PostgreSQL: unavailable for now, never ended. A change is
    # refused (503), and the cookie stays as it is.
    add = "/_r/cart_add?item=x"
    responses = [handle.app.get(add, expect_errors=True) for _ in range(5)]
    assert [r.status_int for r in responses] == [503] * 5
    assert all(r.headers["Retry-After"] and "Set-Cookie" not in r.headers for r in responses)
    assert handle.app.cookies["session"] == cookie
    others = [handle.app.__class__(handle.router) for _ in range(3)]
    for other in others:  # new visitors are served from Redis
        assert other.get("/_r/cart_add?item=outage").status_int == 200
    assert _health(handle)["session_backend"] == "redis"

    server.start()
    wait_for(lambda: _health(handle)["status"] == "ok", 10, "the switch back to sql")
    assert handle.app.get("/_r/cart").json["cart"] == ["before"]
    for other in others:  # made on Redis, read through and moved on first use
        assert other.get("/_r/cart").json["cart"] == ["outage"]


def test_restarted_primary_with_dead_pooled_connections_next_request_succeeds(make_app, pg):
    server, url = pg
    handle = _app(make_app, **{"sqlalchemy.url": url, "session.backends": "sql"})
    for _ in range(3):
        handle.app.get("/_r/cart_add?item=x")
    assert handle.engine.pool.checkedin() >= 1  # connections to the old server

    server.restart()
    add = "/_r/cart_add?item=y"
    statuses = [handle.app.get(add, expect_errors=True).status_int for _ in range(10)]
    assert statuses == [200] * 10  # pool_pre_ping replaced the dead connections
    assert handle.app.get("/_r/cart").json["cart"] == ["x"] * 3 + ["y"] * 10


def test_table_dropped_under_a_running_app(make_app, pg, redis_prefix, caplog):
    server, url = pg
    plain = _app(make_app, **{"sqlalchemy.url": url, "session.backends": "sql"})
    failover = _app(
        make_app,
        **_sql_redis(url, "redis://127.0.0.1:6379/0", redis_prefix),
        **{"session.runtime_failover": "true"},
    )
    plain.app.get("/_t/write?value=1")
    with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
        conn.execute("DROP TABLE user_sessions")
    caplog.set_level(logging.INFO, logger="myapp")

    assert plain.app.get("/_t/read", status=503)
    assert "user_sessions" in caplog.text
    assert failover.app.get("/_t/write?value=2").json == {"value": "2"}
    assert failover.app.get("/_t/read").json["value"] == "2"


def test_frozen_postgres_costs_bounded_time(make_app, pg, redis_prefix):
    server, url = pg
    plain = _app(make_app, **{"sqlalchemy.url": url, "session.backends": "sql"})
    failover = _app(
        make_app,
        **_sql_redis(url, "redis://127.0.0.1:6379/0", redis_prefix),
        **{"session.runtime_failover": "true"},
    )
    plain.app.get("/_t/write?value=1")
    failover.app.get("/_t/write?value=2")
    server.freeze()
    try:
        response, seconds = _timed(lambda: plain.app.get("/_t/read", expect_errors=True))
        assert response.status_int == 503 and seconds < BOUNDED
        fresh = plain.app.__class__(plain.router)
        response, seconds = _timed(lambda: fresh.get("/_t/write?value=n", expect_errors=True))
        assert response.status_int == 503 and seconds < BOUNDED
        # Its session is in the frozen database: refused, not replaced.
        response, seconds = _timed(lambda: failover.app.get("/_t/write?value=3", status=503))
        assert seconds < BOUNDED
        newcomer = failover.app.__class__(failover.router)
        response, seconds = _timed(lambda: newcomer.get("/_t/write?value=4"))
        assert response.status_int == 200 and seconds < BOUNDED
    finally:
        server.thaw()
    # The shut-down connections were dropped and a probe closed the breaker.
    wait_for(lambda: _health(plain)["status"] == "ok", 10, "sql answering again")
    assert plain.app.get("/_t/read").json["value"] == "1"
    wait_for(lambda: _health(failover)["status"] == "ok", 10, "the switch back to sql")
    assert failover.app.get("/_t/read").json["value"] == "2"


# -- Redis --------------------------------------------------------------------------


def _redis_memory(server: ThrowawayRedis, **extra: Any) -> dict[str, Any]:
    return {
        "sqlalchemy.url": "sqlite://",  # unused: no sql store is configured
        "session.backends": "redis memory",
        "session.redis_url": server.url,
        **extra,
    }


def test_redis_down_at_start_serves_from_memory_then_returns(make_app, throwaway_redis):
    throwaway_redis.stop()
    handle = _app(make_app, **_redis_memory(throwaway_redis))
    assert _health(handle)["session_backend"] == "memory"
    handle.app.get("/_r/cart_add?item=a")
    throwaway_redis.start()
    wait_for(lambda: _health(handle)["status"] == "ok", 10, "the switch back to redis")
    assert handle.app.get("/_r/cart_add?item=b").json == {"count": 2}


def test_redis_killed_mid_traffic(make_app, throwaway_redis, caplog):
    plain = _app(make_app, **_redis_memory(throwaway_redis, **{"session.backends": "redis"}))
    failover = _app(make_app, **_redis_memory(throwaway_redis, **{"session.runtime_failover": "1"}))
    plain.app.get("/_t/write?value=1")
    failover.app.get("/_t/write?value=2")
    throwaway_redis.kill()
    caplog.set_level(logging.INFO, logger="myapp")

    assert plain.app.get("/_t/read", status=503)
    fresh = plain.app.__class__(plain.router)
    assert fresh.get("/_t/write?value=x", status=503)  # the write fails at commit
    assert "session store 'redis' failed" in caplog.text
    # Its session is in Redis, which memory cannot see: refused, never replaced.
    for _ in range(3):
        assert failover.app.get("/_r/cart_add?item=m", status=503).headers["Retry-After"]
    newcomer = failover.app.__class__(failover.router)
    for _ in range(6):
        assert newcomer.get("/_r/cart_add?item=m").status_int == 200
    assert _health(failover)["session_backend"] == "memory"


def test_frozen_redis_costs_bounded_time(make_app, throwaway_redis):
    handle = _app(make_app, **_redis_memory(throwaway_redis, **{"session.backends": "redis"}))
    handle.app.get("/_t/write?value=1")
    throwaway_redis.freeze()
    try:
        response, seconds = _timed(lambda: handle.app.get("/_t/read", expect_errors=True))
        assert response.status_int == 503 and seconds < BOUNDED
    finally:
        throwaway_redis.thaw()
    wait_for(lambda: _health(handle)["status"] == "ok", 10, "redis answering again")
    assert handle.app.get("/_t/read").json["value"] == "1"


# -- both ---------------------------------------------------------------------------


def test_both_down_at_start_refuses_to_start(make_app, pg, throwaway_redis):
    server, url = pg
    server.stop()
    throwaway_redis.stop()
    with pytest.raises(NoStoreReady, match="sql.*redis"):
        _app(make_app, **_sql_redis(url, throwaway_redis.url, "p:"))


def test_both_killed_mid_traffic_answers_503(make_app, pg, throwaway_redis):
    server, url = pg
    handle = _app(
        make_app,
        **_sql_redis(url, throwaway_redis.url, "p:"),
        **{"session.runtime_failover": "true"},
    )
    handle.app.get("/_t/write?value=1")
    server.kill()
    throwaway_redis.kill()
    for _ in range(3):
        response, seconds = _timed(lambda: handle.app.get("/_t/read", expect_errors=True))
        assert response.status_int == 503 and seconds < BOUNDED
