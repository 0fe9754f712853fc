"""Ending sessions reaches every store that may hold them, and the read cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from webtest import TestApp

from tests.conftest import LOOPBACK
from tests.support.ops import add_session, run, write_ini
from tests.support.site import new_user, post_form, sign_in, signed_in_as

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def user_id_of(handle, name: str) -> str:
    from myapp.accounts import find_user

    with handle.engine.connect() as conn:
        return str(find_user(conn, name)[0].id)


@pytest.fixture
def two_stores(make_app, redis_prefix):
    """PostgreSQL serves; Redis holds what was created while it served (a past failover)."""
    return make_app(
        "sql-postgres",
        **{"session.backends": "sql redis", "session.redis_prefix": f"{redis_prefix}end:"},
    )


def test_sign_out_everywhere_else_reaches_sessions_left_on_redis(two_stores):
    name, password = new_user(two_stores.engine, "everywhere")
    sign_in(two_stores.app, name, password)
    redis = two_stores.chain.store("redis")
    left_behind = add_session(redis, user_id=user_id_of(two_stores, name))
    page = two_stores.app.get("/account/sessions")
    assert len(page.html.select("tr.session")) == 2  # listed from both stores

    post_form(two_stores.app, "/account/sessions", "/account/sessions/end-others")
    assert redis.load(left_behind, time.time()) is None
    assert signed_in_as(two_stores.app.get("/cart")) == name


def test_end_this_session_and_sign_out_reach_every_store(two_stores):
    name, password = new_user(two_stores.engine, "ending")
    sign_in(two_stores.app, name, password)
    redis = two_stores.chain.store("redis")
    other = add_session(redis, user_id=user_id_of(two_stores, name))
    post_form(two_stores.app, "/account/sessions", "/account/sessions/end", key=other)
    assert redis.load(other, time.time()) is None

    # A copy of this very session in another store ends with it.
    own = two_stores.app.get("/account/sessions").html.select_one("tr.current input[name=key]")
    key = own["value"]
    record = two_stores.store.load(key, time.time())
    redis.save(record.with_changes(version=0), None)
    post_form(two_stores.app, "/cart", "/signout")
    assert redis.load(key, time.time()) is None
    assert two_stores.store.load(key, time.time()) is None


def test_end_user_from_the_shell_stops_the_cached_session(
    make_app, redis_prefix, postgres_url, tmp_path: Path
):
    prefix = f"{redis_prefix}cached-end:"
    handle = make_app("sql-postgres", **{"session.cache": "redis", "session.redis_prefix": prefix})
    name, password = new_user(handle.engine, "cached")
    browser = TestApp(handle.router, extra_environ=LOOPBACK)
    sign_in(browser, name, password)
    assert signed_in_as(browser.get("/cart")) == name  # now answered from the cache

    ini = write_ini(
        tmp_path, postgres_url, redis_prefix=prefix, backends="sql", **{"session.cache": "redis"}
    )
    result = run("myapp-sessions", "end-user", ini, name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sql: ended 1 session of '{name}'" in result.stdout
    assert signed_in_as(browser.get("/cart")) is None
