"""PostgreSQL killed under a Redis read cache with runtime failover: cached sessions live on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis
from webtest import TestApp

from myapp.sessions.request.factory import storage_key
from tests.conftest import REDIS_URL, AppHandle
from tests.servers import ThrowawayPostgres
from tests.support.cookies import token_of
from tests.support.databases import migrate

from .apps import wait_for
from .test_faults import FAST, _flush, _health

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def cached_failover(
    make_app: Callable[..., AppHandle], throwaway_pg: ThrowawayPostgres, redis_prefix: str
) -> tuple[AppHandle, ThrowawayPostgres]:
    url = throwaway_pg.create_database("app")
    migrate(url)
    handle = make_app(
        "custom",
        **{
            **FAST,
            "sqlalchemy.url": url,
            "session.backends": "sql redis",
            "session.redis_url": REDIS_URL,
            "session.redis_prefix": redis_prefix,
            "session.cache": "redis",
            "session.runtime_failover": "true",
            "session.breaker_threshold": "2",
        },
    )
    return handle, throwaway_pg


def _browser(handle: AppHandle, cookie: str | None = None) -> TestApp:
    browser = TestApp(handle.router)
    if cookie is not None:
        browser.set_cookie("session", cookie)
    return browser


def _cart(browser: TestApp) -> dict[str, Any]:
    return browser.get("/_r/cart").json


def _row(server: ThrowawayPostgres, cookie: str) -> tuple[Any, ...] | None:
    key = storage_key(token_of(cookie))
    with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
        return conn.execute(
            "SELECT data->'cart', version FROM user_sessions WHERE id = %s", (key,)
        ).fetchone()


def test_cached_session_survives_a_killed_primary_and_ended_ones_stay_ended(
    cached_failover: tuple[AppHandle, ThrowawayPostgres], redis_prefix: str
) -> None:
    handle, server = cached_failover
    kept = _browser(handle)
    kept.get("/_r/cart_add?item=before")
    kept_cookie = kept.cookies["session"]
    ended_before = _browser(handle)
    ended_before.get("/_r/cart_add?item=gone")
    ended_before_cookie = ended_before.cookies["session"]
    ended_before.get("/_t/invalidate")
    ended_during = _browser(handle)
    ended_during.get("/_r/cart_add?item=soon-gone")
    ended_during_cookie = ended_during.cookies["session"]
    _flush(server)
    server.kill()

    # The cache's copy is read without the database and moves to the redis store.
    assert _cart(kept)["cart"] == ["before"]
    for count in (2, 3, 4):
        assert kept.get("/_r/cart_add?item=outage").json == {"count": count}
    assert _health(handle)["session_backend"] == "redis"
    assert _cart(kept)["cart"] == ["before", "outage", "outage", "outage"]
    assert _cart(_browser(handle, ended_before_cookie)) == {"cart": [], "new": True}
    ended_during.get("/_t/invalidate")
    assert _cart(_browser(handle, ended_during_cookie)) == {"cart": [], "new": True}

    server.start()
    wait_for(lambda: _health(handle)["status"] == "ok", 10, "the switch back to sql")
    assert kept.get("/_r/cart_add?item=after").json == {"count": 5}
    assert _cart(kept)["cart"] == ["before", "outage", "outage", "outage", "after"]
    # Moved back over the stale row, conditional on the version it left at.
    cart, version = _row(server, kept_cookie)
    assert cart == ["before", "outage", "outage", "outage", "after"] and version == 2
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert client.get(redis_prefix + storage_key(token_of(kept_cookie))) is None
    finally:
        client.close()
    # Neither ended session comes back: not from the cache, the database or Redis.
    for cookie in (ended_before_cookie, ended_during_cookie):
        assert _cart(_browser(handle, cookie)) == {"cart": [], "new": True}
