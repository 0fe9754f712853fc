"""``session.cache = redis``: PostgreSQL stays the truth, Redis serves reads."""

from __future__ import annotations

import json
import time

import pytest
import redis

from myapp.sessions.request.factory import new_token, storage_key
from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.cachedstore import TOMBSTONE, CachedStore
from tests.servers import ThrowawayRedis
from tests.support.cookies import token_of
from tests.support.counting import RedisCommandLog, count_sql

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def cached_app(make_app, redis_prefix: str, **overrides):
    return make_app(
        "sql-postgres",
        **{"session.cache": "redis", "session.redis_prefix": redis_prefix, **overrides},
    )


def key_of(handle) -> str:
    return storage_key(token_of(handle.app.cookies["session"]))


def cached(handle, key: str):
    store: CachedStore = handle.store
    return store.cache.get(key)


@pytest.fixture
def app(make_app, redis_prefix):
    return cached_app(make_app, redis_prefix)


def test_the_cached_store_stands_in_for_the_sql_store(app):
    assert isinstance(app.store, CachedStore)
    assert app.store.name == "sql"


def test_read_is_served_by_one_redis_get_and_no_sql(app):
    app.app.get("/_t/write?value=a")
    log = RedisCommandLog(app.store.cache.client)
    try:
        with count_sql(app.engine) as statements:
            assert app.app.get("/_t/read").json["value"] == "a"
    finally:
        log.restore()
    assert len(statements) == 0
    assert log.commands == ["GET"]


def test_write_reaches_the_database_and_the_cache_at_the_same_version(app):
    app.app.get("/_t/write?value=a")
    app.app.get("/_t/write?value=b")
    key = key_of(app)
    in_db = app.store.primary.load(key, time.time())
    in_cache = cached(app, key)
    assert '"b"' in in_db.data
    assert in_cache.version == in_db.version
    assert json.loads(in_cache.data) == json.loads(in_db.data)


def test_a_failed_view_changes_neither_database_nor_cache(app):
    app.app.get("/_t/write?value=kept")
    with pytest.raises(Exception, match="the view failed"):
        app.app.get("/_t/write_then_raise")
    assert '"kept"' in cached(app, key_of(app)).data
    assert app.app.get("/_t/read").json["value"] == "kept"


def test_a_miss_is_filled_from_the_database(app):
    app.app.get("/_t/write?value=a")
    key = key_of(app)
    app.store.cache.client.delete(app.store.cache.prefix + key)
    assert app.app.get("/_t/read").json["value"] == "a"
    assert '"a"' in cached(app, key).data


def test_invalidate_leaves_a_tombstone_and_the_old_cookie_is_refused(app):
    app.app.get("/_t/write?value=a")
    old_cookie, key = app.app.cookies["session"], key_of(app)
    app.app.get("/_t/invalidate")
    assert cached(app, key) == TOMBSTONE
    app.app.set_cookie("session", old_cookie)
    assert app.app.get("/_t/read").json["value"] is None


def test_rotation_ends_the_old_key_in_the_cache(app):
    app.app.get("/_t/write?value=a")
    old_key = key_of(app)
    app.app.get("/_t/rotate")
    assert cached(app, old_key) == TOMBSTONE
    assert '"a"' in cached(app, key_of(app)).data


def test_delete_user_ends_every_cached_session_of_the_user(make_app, redis_prefix):
    first = cached_app(make_app, redis_prefix)
    second = cached_app(make_app, redis_prefix)
    for handle in (first, second):
        handle.app.get("/_t/login?user=carol-cache")
        assert handle.app.get("/_t/read").json["new"] is False
    assert first.store.delete_user("carol-cache") == 2
    for handle in (first, second):
        assert handle.app.get("/_t/read").json["new"] is True


def test_a_fill_that_lost_the_race_with_a_delete_is_refused(app):
    app.app.get("/_t/write?value=a")
    key = key_of(app)
    read_before_delete = app.store.primary.load(key, time.time())
    app.store.delete(key)
    # A reader that loaded the row before the delete committed now fills the cache.
    app.store.cache.put(read_before_delete, read_before_delete.version, time.time())
    assert cached(app, key) == TOMBSTONE
    assert app.store.load(key, time.time()) is None


def test_an_older_version_never_replaces_a_newer_one(app):
    app.app.get("/_t/write?value=a")
    key = key_of(app)
    older = app.store.primary.load(key, time.time())
    app.app.get("/_t/write?value=b")
    app.store.cache.put(older, older.version, time.time())
    assert '"b"' in cached(app, key).data


def test_an_expired_cache_entry_is_not_served(app):
    app.app.get("/_t/write?value=a")
    key = key_of(app)
    assert app.store.load(key, time.time() + 10 * 86_400) is None


def test_touching_a_session_the_database_ended_does_not_extend_it_in_the_cache(app):
    now = time.time()
    store: CachedStore = app.store
    record = SessionRecord(storage_key(new_token()), "{}", now, now, now + 5, "dora", "pytest")
    store.save(record, None)
    assert store.load(record.key, now) is not None  # cached, for its last 5 seconds
    store.primary.delete(record.key)  # ended in the database behind the cache's back
    assert store.touch(record, now, now + 900, now) is False
    assert not isinstance(cached(app, record.key), SessionRecord)
    # Past its real end and before the end the touch asked for: ended.
    assert store.load(record.key, now + 10) is None


@pytest.mark.slow
def test_a_dead_cache_falls_through_to_the_database(make_app, redis_prefix):
    with ThrowawayRedis() as server:
        handle = cached_app(
            make_app,
            redis_prefix,
            **{"session.redis_url": server.url, "session.store_timeout": "0.2"},
        )
        handle.app.get("/_t/write?value=a")
        server.kill()
        started = time.monotonic()
        assert handle.app.get("/_t/read").json["value"] == "a"
        handle.app.get("/_t/write?value=b")
        assert handle.app.get("/_t/read").json["value"] == "b"
        assert time.monotonic() - started < 2.0


@pytest.mark.slow
def test_writes_during_an_outage_are_not_served_stale_afterwards(make_app, redis_prefix):
    with ThrowawayRedis() as server:
        handle = cached_app(
            make_app,
            redis_prefix,
            **{
                "session.redis_url": server.url,
                "session.store_timeout": "0.2",
                "session.breaker_cooldown": "0.3",
            },
        )
        handle.app.get("/_t/write?value=before")
        server.freeze()  # unreachable, but keeps its (now stale) entry
        try:
            handle.app.get("/_t/write?value=during")
        finally:
            server.thaw()
        time.sleep(0.4)
        assert handle.app.get("/_t/read").json["value"] == "during"
        client = redis.Redis.from_url(server.url)
        assert client.get(handle.store.cache.prefix + key_of(handle)) in (TOMBSTONE, None) or (
            '"during"' in cached(handle, key_of(handle)).data
        )
        client.close()


@pytest.mark.parametrize("with_data", ["", "1"])
def test_a_retried_request_writes_through_to_the_cache_once_committed(
    make_app, redis_prefix, with_data
):
    # pyramid_retry runs the request again on the same environ: the second attempt's
    # write must reach the cache through its own transaction, not the first one's.
    handle = cached_app(
        make_app,
        redis_prefix,
        **{"pyramid.includes": "tests.support.views tests.reliability.views"},
    )
    handle.app.get("/_t/write?value=first")
    response = handle.app.get(f"/_r/race_once?value=mine&with_data={with_data}")
    assert response.json == {"attempt": 1}
    key = key_of(handle)
    in_db = handle.store.primary.load(key, time.time())
    assert json.loads(in_db.data)["value"] == "mine"
    assert cached(handle, key).version == in_db.version


def test_binding_follows_the_request_not_its_environ(app):
    # pyramid_retry builds each attempt's request on the same environ dict.
    from pyramid.request import Request

    first = Request.blank("/_t/write")
    retried = Request(first.environ)
    assert app.store.bind(first) is app.store.bind(first)
    assert app.store.bind(retried) is not app.store.bind(first)
    assert app.store.bind(retried).request is retried


def test_entries_of_another_master_are_dropped_before_the_cache_is_read(app):
    """A promoted stale replica: entries older than the database, the key naming the
    master they came from. A new connection sees another server: entries go,
    tombstones stay, and the database answers until they are gone."""
    from webtest import TestApp

    from myapp.sessions.stores.redisstore.record import encode
    from tests.conftest import LOOPBACK

    app.app.get("/_t/write?value=a")
    key = key_of(app)
    older = app.store.primary.load(key, time.time())
    app.app.get("/_t/write?value=b")
    ended = TestApp(app.router, extra_environ=LOOPBACK)
    ended.get("/_t/write?value=gone")
    ended_key = storage_key(token_of(ended.cookies["session"]))
    ended.get("/_t/invalidate")

    cache = app.store.cache
    cache.client.set(cache.prefix + key, encode(older, older.version, cache.authenticator))
    cache.client.set(cache.fence.master_key, "0" * 40)
    cache.client.connection_pool.disconnect()  # the next command connects anew

    assert app.app.get("/_t/read").json["value"] == "b"
    assert cache.client.get(cache.prefix + ended_key) == TOMBSTONE
    server_id = cache.client.info("replication")["master_replid"]
    assert cache.client.get(cache.fence.master_key).decode() == server_id
    assert not cache.fence.fenced
    # The next requests, of this client and another, are served from the cache again.
    app.app.get("/_t/write?value=c")
    assert app.app.get("/_t/read").json["value"] == "c"
    assert '"c"' in cached(app, key).data
    other = TestApp(app.router, extra_environ=LOOPBACK)
    other.get("/_t/write?value=o")
    assert other.get("/_t/read").json["value"] == "o"
