"""The Redis store on a real three-master Redis Cluster (``redis+cluster://``).

In a Cluster a Lua script may only touch keys of one hash slot, and sessions of one user
land in many slots, so there the per-user index is kept by separate commands. These
tests prove each path on real servers: a session written and read through the app, the
scripted conditional save, the user index, and invalidation.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster
from webtest import TestApp

from myapp.sessions.stores.base import SessionRecord, StaleSession
from myapp.sessions.stores.redisstore import RedisStore, make_client
from tests.support.records import authenticator
from tests.support.rediscluster import ThrowawayRedisCluster, redis_binaries_missing

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(
        redis_binaries_missing() is not None,
        reason=f"a real Redis Cluster needs redis-server and redis-cli: {redis_binaries_missing()}",
    ),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayRedisCluster]:
    with ThrowawayRedisCluster() as running:
        yield running


@pytest.fixture
def store(cluster: ThrowawayRedisCluster, redis_prefix: str) -> Iterator[RedisStore]:
    client = make_client(cluster.url, 1.0)
    assert isinstance(client, RedisCluster)
    built = RedisStore(
        client,
        prefix=redis_prefix + "cluster:",
        max_lifetime=3600,
        authenticator=authenticator("redis"),
    )
    yield built
    built.close()


def record(user: str | None = None, data: str = '{"a":1}') -> SessionRecord:
    now = time.time()
    return SessionRecord(
        key=secrets.token_hex(32),
        data=data,
        created=now,
        last_active=now,
        expires=now + 600,
        user_id=user,
        user_agent="pytest",
    )


def session_keys(client: RedisCluster, prefix: str) -> set[bytes]:
    """Session keys under ``prefix`` on every master, without the user indexes."""
    return {
        key
        for key in client.scan_iter(match=prefix + "*", count=1000)
        if not key.startswith((prefix + "user:").encode())
    }


def test_the_cluster_spreads_slots_over_three_masters(cluster, store):
    store.check()
    masters = {node.name for node in store.client.get_primaries()}
    assert masters == {f"127.0.0.1:{port}" for port in cluster.ports}


def test_a_session_is_written_and_read_back_through_the_app(cluster, make_app, redis_prefix):
    handle = make_app("redis", **{"session.redis_url": cluster.url, "session.backends": "redis"})
    assert handle.store.name == "redis"
    assert isinstance(handle.store.client, RedisCluster)

    handle.app.get("/_t/write", params={"value": "on-the-cluster"})
    assert handle.app.get("/_t/read").json == {"value": "on-the-cluster", "new": False}
    assert len(session_keys(handle.store.client, redis_prefix)) == 1

    # Another process (a second app on the same cluster) reads the same session.
    other = make_app("redis", **{"session.redis_url": cluster.url, "session.backends": "redis"})
    other.app.cookiejar = handle.app.cookiejar
    assert other.app.get("/_t/read").json["value"] == "on-the-cluster"


def test_the_scripted_save_is_conditional_on_the_version(store):
    saved = record(data='{"n":1}')
    assert store.save(saved, None) == 1
    with pytest.raises(StaleSession) as info:
        store.save(saved, None)  # a second insert of the same key
    assert info.value.gone is False

    assert store.save(record_like(saved, '{"n":2}'), 1) == 2
    with pytest.raises(StaleSession) as info:
        store.save(record_like(saved, '{"n":3}'), 1)  # read at version 1, now at 2
    assert info.value.gone is False

    loaded = store.load(saved.key, time.time())
    assert loaded is not None
    assert (loaded.version, loaded.data) == (2, '{"n":2}')

    store.delete(saved.key)
    with pytest.raises(StaleSession) as info:
        store.save(record_like(saved, '{"n":4}'), 2)
    assert info.value.gone is True
    assert store.touch(saved, time.time(), time.time() + 60, time.time()) is False


def record_like(saved: SessionRecord, data: str) -> SessionRecord:
    return SessionRecord(
        saved.key,
        data,
        saved.created,
        time.time(),
        saved.expires,
        saved.user_id,
        saved.user_agent,
    )


def test_the_user_index_lists_and_ends_every_session_of_a_user(store):
    user = f"alice-{secrets.token_hex(4)}"
    first, second, other = record(user), record(user), record("bob-" + user)
    for each in (first, second, other):
        assert store.save(each, None) == 1
    # Keys of one user sit in different slots (and, here, usually on different masters).
    slots = {store.client.keyslot(store._key(r.key)) for r in (first, second)}
    assert len(slots) == 2

    listed = store.list_user(user, time.time())
    assert {r.key for r in listed} == {first.key, second.key}
    assert all(r.user_id == user for r in listed)

    assert store.delete_user(user, except_key=second.key) == 1
    assert [r.key for r in store.list_user(user, time.time())] == [second.key]
    assert store.delete_user(user) == 1
    assert store.list_user(user, time.time()) == []
    assert store.load(first.key, time.time()) is None
    assert store.load(second.key, time.time()) is None
    assert store.load(other.key, time.time()) is not None

    # delete() of a signed-in session unindexes it as well.
    store.delete(other.key)
    assert store.list_user(other.user_id, time.time()) == []
    assert not store.client.exists(store.user_prefix + other.user_id)


def test_two_signed_in_browsers_are_listed_and_ended_together(cluster, make_app):
    handle = make_app("redis", **{"session.redis_url": cluster.url, "session.backends": "redis"})
    user = f"carol-{secrets.token_hex(4)}"
    laptop, phone = handle.app, TestApp(handle.router)
    for browser in (laptop, phone):
        browser.get("/_t/login", params={"user": user})
        browser.get("/_t/write", params={"value": "signed-in"})
    store = handle.store
    assert len(store.list_user(user, time.time())) == 2

    assert store.delete_user(user) == 2
    assert store.list_user(user, time.time()) == []
    for browser in (laptop, phone):
        assert browser.get("/_t/read").json["value"] is None


def test_invalidate_removes_the_key(cluster, make_app, redis_prefix):
    handle = make_app("redis", **{"session.redis_url": cluster.url, "session.backends": "redis"})
    client = handle.store.client
    user = f"dave-{secrets.token_hex(4)}"
    before = session_keys(client, redis_prefix)
    handle.app.get("/_t/login", params={"user": user})
    handle.app.get("/_t/write", params={"value": "to-end"})
    created = session_keys(client, redis_prefix) - before
    assert len(created) == 1
    (key,) = created
    assert client.exists(key) == 1

    handle.app.get("/_t/invalidate")
    assert client.exists(key) == 0
    assert handle.store.list_user(user, time.time()) == []
    assert handle.app.get("/_t/read").json["value"] is None
