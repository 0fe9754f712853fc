"""One contract, every store in the form it is used: sql (PostgreSQL, SQLite, through
PgBouncer), redis, memory, sql behind the Redis read cache, the SQL store bound to a
request whose database transaction is open, and a store written outside the package
(``tests.support.outsidestore``), built as the app builds it from its dotted name.

Every store keeps the core (``ISessionStore``); each optional capability is checked
through its interface on the stores that declare it, and skipped on the others."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import sqlalchemy as sa
import transaction
from pyramid.registry import Registry
from pyramid.request import Request
from zope.interface.verify import verifyObject

from myapp.sessions.assemble import build_store
from myapp.sessions.chain import Breaker
from myapp.sessions.database import get_dbsession_factory, get_engine, get_tm_dbsession
from myapp.sessions.exceptions import StaleSession, StoreNotReady
from myapp.sessions.interfaces import (
    IPurgeable,
    IReadCache,
    IRequestBoundStore,
    ISessionStore,
    IStoreStatistics,
    IUserSessions,
    IUserSessionsTable,
)
from myapp.sessions.options import SessionOptions
from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.cachedstore import CachedStore, RedisCache
from myapp.sessions.stores.memorystore import MemoryStore
from myapp.sessions.stores.redisstore import RedisStore, make_client
from myapp.sessions.stores.sqlstore import SqlStore
from myapp.sessions.stores.sqlstore.table import EXPIRY_BUCKET_SECONDS
from tests.conftest import SECRET
from tests.support.records import authenticator

STORES = (
    pytest.param("sql-postgres", marks=pytest.mark.postgres),
    pytest.param("sql-pgbouncer", marks=[pytest.mark.postgres, pytest.mark.pgbouncer]),
    "sql-sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    "memory",
    pytest.param("sql-cached", marks=[pytest.mark.postgres, pytest.mark.redis]),
    pytest.param("sql-request", marks=pytest.mark.postgres),
    "outside",
)
OUTSIDE_STORE = "tests.support.outsidestore:DictStore"


CAPABILITIES = (IUserSessions, IPurgeable, IStoreStatistics, IReadCache, IUserSessionsTable)


def needs(store, capability):
    """Skip a test of an optional capability on a store that does not declare it."""
    if not capability.providedBy(store):
        pytest.skip(f"the {store.name!r} store does not provide {capability.__name__}")


def in_request_transaction(parent: SqlStore):
    """``parent`` bound to a POST whose view opened a database transaction: every
    statement runs in that transaction (aborted at the end)."""
    manager = transaction.TransactionManager(explicit=True)
    manager.begin()
    request = Request.blank("/", method="POST")
    request.tm = manager
    request.dbsession = get_tm_dbsession(get_dbsession_factory(parent.engine), manager)
    request.dbsession.connection()  # the view did database work
    bound = parent.bind(request)
    assert bound.in_request_transaction()
    return bound, manager


@pytest.fixture(params=STORES)
def store(request, postgres_url, sqlite_url, redis_prefix):
    kind = request.param
    if kind == "sql-request":
        parent = SqlStore(sa.create_engine(postgres_url), authenticator=authenticator("sql"))
        bound, manager = in_request_transaction(parent)
        verifyObject(IRequestBoundStore, bound)
        yield bound
        manager.abort()
        parent.close()
        return
    if kind == "sql-cached":
        cache = RedisCache(
            make_client("redis://127.0.0.1:6379/0", 1.0),
            prefix=redis_prefix + "c:",
            authenticator=authenticator("cache"),
            breaker=Breaker,
        )
        built = CachedStore(
            SqlStore(sa.create_engine(postgres_url), authenticator=authenticator("sql")), cache
        )
    elif kind == "sql-pgbouncer":
        url = request.getfixturevalue("pgbouncer_url")
        engine = get_engine({"sqlalchemy.url": url, "db.pgbouncer": "transaction"})
        built = SqlStore(engine, authenticator=authenticator("sql"), transaction_pooling=True)
    elif kind.startswith("sql"):
        engine = sa.create_engine(postgres_url if kind == "sql-postgres" else sqlite_url)
        built = SqlStore(engine, authenticator=authenticator("sql"))
    elif kind == "redis":
        built = RedisStore(
            make_client("redis://127.0.0.1:6379/0", 1.0),
            prefix=redis_prefix + "contract:",
            max_lifetime=3600,
            authenticator=authenticator("redis"),
        )
    elif kind == "outside":
        options = SessionOptions.from_settings(
            {"session.backends": OUTSIDE_STORE, "session.secret": SECRET}
        )
        built = build_store(options.backends[0], options, Registry())
    else:
        built = MemoryStore(max_entries=1000)
    verifyObject(ISessionStore, built)
    # Bound to a request, every store provides the request-bound contract too.
    verifyObject(IRequestBoundStore, built.bind(Request.blank("/")))
    for capability in CAPABILITIES:
        if capability.providedBy(built):
            verifyObject(capability, built)
    yield built
    built.close()


def record(
    now: float | None = None, *, ttl: float = 600, user: str | None = None, data: str = '{"a":1}'
):
    now = time.time() if now is None else now
    return SessionRecord(
        key=secrets.token_hex(32),
        data=data,
        created=now,
        last_active=now,
        expires=now + ttl,
        user_id=user,
        user_agent="pytest",
    )


def test_check_passes_on_a_ready_store(store):
    assert store.check() is None  # raises StoreNotReady otherwise


def test_check_fails_when_the_store_cannot_serve(postgres_url):
    engine = sa.create_engine(sa.make_url(postgres_url).set(database="no_such_database"))
    store = SqlStore(engine, authenticator=authenticator("sql"))
    with pytest.raises(StoreNotReady):
        store.check()
    store.close()


def test_new_session_round_trips(store):
    saved = record(data='{"name":"Zoë ✓","n":[1,2.5,null,true],"d":{"k":"v"}}')
    assert store.save(saved, None) == 1
    loaded = store.load(saved.key, time.time())
    assert loaded is not None
    assert loaded.version == 1
    assert json.loads(loaded.data) == {
        "name": "Zoë ✓",
        "n": [1, 2.5, None, True],
        "d": {"k": "v"},
    }
    assert loaded.user_agent == "pytest"
    assert abs(loaded.expires - saved.expires) < 0.01


def test_inserting_an_existing_key_is_refused(store):
    saved = record()
    store.save(saved, None)
    with pytest.raises(StaleSession) as info:
        store.save(saved, None)
    assert info.value.gone is False


def test_update_needs_the_version_it_read(store):
    saved = record()
    store.save(saved, None)
    assert store.save(saved.with_changes(data='{"a":2}'), 1) == 2
    with pytest.raises(StaleSession) as info:
        store.save(saved.with_changes(data='{"a":3}'), 1)
    assert info.value.gone is False
    assert store.load(saved.key, time.time()).data.replace(" ", "") == '{"a":2}'


def test_update_of_a_deleted_session_is_refused_and_not_resurrected(store):
    saved = record()
    store.save(saved, None)
    store.delete(saved.key)
    with pytest.raises(StaleSession) as info:
        store.save(saved.with_changes(data='{"late":true}'), 1)
    assert info.value.gone is True
    assert store.load(saved.key, time.time()) is None


def test_expired_session_is_not_loaded(store):
    now = time.time()
    saved = record(now - 100, ttl=1)
    store.save(saved.with_changes(last_active=now - 0.5, expires=now + 0.2), None)
    assert store.load(saved.key, now) is not None
    assert store.load(saved.key, now + 1) is None


def test_late_touch_does_not_revive_an_expired_session(store):
    now = time.time()
    saved = record(now, ttl=0.3)
    store.save(saved, None)
    time.sleep(0.4)
    later = time.time()
    assert store.touch(saved, later, later + 600, later) is False
    assert store.load(saved.key, later) is None


def test_touch_moves_the_expiry_of_a_live_session(store):
    now = time.time()
    saved = record(now, ttl=60)
    saved = saved.with_changes(version=store.save(saved, None))
    assert store.touch(saved, now + 1, now + 900, now + 1) is True
    loaded = store.load(saved.key, now + 2)
    assert abs(loaded.expires - (now + 900)) < 0.01
    assert loaded.version == 1  # a touch is not a data change
    assert loaded.data.replace(" ", "") == saved.data


def test_touch_after_a_newer_save_writes_nothing_and_keeps_it_live(store):
    now = time.time()
    saved = record(now, ttl=60)
    saved = saved.with_changes(version=store.save(saved, None))
    newer = saved.with_changes(data='{"b":2}', last_active=now + 1, expires=now + 120)
    store.save(newer, 1)
    # A touch of the version read before: the newer save already moved the expiry.
    assert store.touch(saved, now + 2, now + 900, now + 2) is True
    loaded = store.load(saved.key, now + 3)
    assert loaded.version == 2
    assert json.loads(loaded.data) == {"b": 2}


def test_delete_is_idempotent(store):
    saved = record()
    store.save(saved, None)
    store.delete(saved.key)
    store.delete(saved.key)
    assert store.load(saved.key, time.time()) is None


def test_sessions_of_one_user_are_listed_and_ended_together(store):
    needs(store, IUserSessions)
    user = "user-" + secrets.token_hex(4)
    now = time.time()
    mine = [record(now + i, user=user) for i in range(3)]
    other = record(user="someone-else-" + user)
    for item in [*mine, other]:
        store.save(item, None)
    listed = store.list_user(user, time.time())
    assert [r.key for r in listed] == [r.key for r in mine]
    assert store.delete_user(user, except_key=mine[0].key) == 2
    assert [r.key for r in store.list_user(user, time.time())] == [mine[0].key]
    assert store.load(other.key, time.time()) is not None


def test_purge_removes_only_expired_sessions(store):
    now = time.time()
    live = record(now, ttl=600)
    store.save(live, None)
    if not IPurgeable.providedBy(store):
        # Written as if long ago: a 1 ms TTL, and the store drops it by itself.
        dead = [
            record(now - 1000, ttl=1).with_changes(last_active=now - 0.001, expires=now + 0.001)
            for _ in range(5)
        ]
    else:
        # Expired before the last expiry bucket ended: the SQL store purges by whole
        # buckets (the load refuses an expired session at once all the same).
        dead = [record(now - 2 * EXPIRY_BUCKET_SECONDS, ttl=1) for _ in range(5)]
    for item in dead:
        store.save(item, None)
    time.sleep(0.01)
    if IPurgeable.providedBy(store):
        purged = 0
        while batch := store.purge_expired(time.time(), batch_size=2):
            purged += batch
        assert purged >= 5
    assert all(store.load(item.key, time.time()) is None for item in dead)
    assert store.load(live.key, time.time()) is not None


def test_top_users_counts_live_sessions_most_first(store):
    needs(store, IStoreStatistics)
    now = time.time()
    busy, quiet = "busy-" + secrets.token_hex(4), "quiet-" + secrets.token_hex(4)
    for _ in range(3):
        store.save(record(now, user=busy), None)
    store.save(record(now, user=quiet), None)
    store.save(record(now - 100, ttl=1, user=quiet).with_changes(last_active=now - 2), None)
    top = [pair for pair in store.top_users(time.time(), 100_000) if pair[0] in (busy, quiet)]
    assert top == [(busy, 3), (quiet, 1)]


def test_a_record_reads_back_whatever_the_store_does_to_its_json(store):
    """PostgreSQL's jsonb reorders keys and rewrites numbers (1e+16 as 10000000000000000):
    the record's authenticator must still hold when it is read back."""
    data = (
        '{"z":1e+16,"a":[1.0,2,1e-07,-12345678901234567890],"\\u00e9":"caf\\u00e9 \\ud83c\\udf75"}'
    )
    user = secrets.token_hex(8)
    saved = record(data=data, user=user)
    version = store.save(saved, None)
    loaded = store.load(saved.key, time.time())
    assert loaded is not None
    assert json.loads(loaded.data) == json.loads(data)
    touched = loaded.with_changes(version=version)
    later = time.time()
    assert store.touch(touched, later, later + 600, later) is True
    assert store.load(saved.key, later) is not None
    if IUserSessions.providedBy(store):
        assert [r.key for r in store.list_user(user, later)] == [saved.key]
