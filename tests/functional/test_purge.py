"""Purging at scale beside live reads, and the app's own purge thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from myapp.sessions.operations.purge import PURGE_LOCK_ID, Purger, get_purge_thread
from myapp.sessions.stores.sqlstore import SqlStore
from tests.support.databases import emptied_engine, migrated_database
from tests.support.ops import add_session, purge_while_another_purges
from tests.support.records import authenticator

pytestmark = pytest.mark.postgres

EXPIRED_ROWS = 200_000
BATCH = 5_000

INSERT_EXPIRED = sa.text(
    """
    INSERT INTO user_sessions
        (id, data, created_at, last_active_at, expires_at, expires_bucket, version)
    SELECT md5('expired-' || g) || md5('salt-' || g), '{}'::jsonb,
           now() - interval '3 days', now() - interval '2 days', now() - interval '1 day',
           floor(extract(epoch FROM now() - interval '1 day'))::bigint / 3600 * 3600 + 3600, 1
    FROM generate_series(1, :n) AS g
    """
)


@pytest.fixture(scope="module")
def purge_url() -> Iterator[str]:
    with migrated_database("myapp_purge") as url:
        yield url


@pytest.fixture
def engine(purge_url: str) -> Iterator[sa.Engine]:
    with emptied_engine(purge_url, pool_size="10") as engine:
        yield engine


@pytest.fixture
def store(engine: sa.Engine) -> Iterator[SqlStore]:
    store = SqlStore(engine, authenticator=authenticator("sql"))
    yield store
    store.close()  # its own autocommit pool too


def test_purging_200k_rows_never_blocks_session_reads(engine, store):
    with engine.begin() as conn:
        conn.execute(INSERT_EXPIRED, {"n": EXPIRED_ROWS})
    live = [add_session(store, user_id="reader") for _ in range(50)]
    assert store.count(time.time()) == (50, EXPIRED_ROWS)

    done = threading.Event()
    waits: list[float] = []
    failures: list[str] = []

    def read_sessions() -> None:
        select = sa.text("SELECT data FROM user_sessions WHERE id = :key")
        index = 0
        while not done.is_set():
            key = live[index % len(live)]
            index += 1
            started = time.perf_counter()
            with engine.begin() as conn:  # its own transaction, as a request's would be
                row = conn.execute(select, {"key": key}).first()
            waits.append(time.perf_counter() - started)
            if row is None:
                failures.append(key)

    reader = threading.Thread(target=read_sessions, name="session-reader")
    reader.start()
    try:
        purger = Purger([store], batch_size=BATCH, lock_engine=engine)
        started = time.perf_counter()
        (result,) = purger.run()
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        reader.join(30)

    assert result.outcome == "done", result.error
    assert result.deleted == EXPIRED_ROWS
    assert result.batches == EXPIRED_ROWS // BATCH
    assert store.count(time.time()) == (50, 0)
    assert failures == []
    assert len(waits) > 20, "the reader barely ran during the purge"
    # Not a speed goal: a read may wait for about one batch at most, never the purge.
    bound = 1.0 + 3 * result.longest_batch
    assert max(waits) < bound, (max(waits), result.longest_batch, elapsed)


def test_a_purge_under_a_held_lock_does_nothing(engine, store):
    add_session(store, expired=True)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": PURGE_LOCK_ID})
        (result,) = Purger([store], batch_size=10, lock_engine=engine).run()
        holder.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": PURGE_LOCK_ID})
    assert result.outcome == "locked"
    assert store.count(time.time()) == (0, 1)


def test_two_concurrent_purges_never_both_work(engine, store):
    for _ in range(30):
        add_session(store, expired=True)
    first, second = purge_while_another_purges(store, engine)
    assert second.outcome == "locked" and second.deleted == 0
    assert first.outcome == "done" and first.deleted == 30


def test_the_app_purges_on_its_own_when_asked(make_app, purge_url):
    handle = make_app(
        "sql-postgres",
        **{
            "sqlalchemy.url": purge_url,
            "session.purge_interval": "0.2",
            "session.purge_batch_size": "7",
        },
    )
    thread = get_purge_thread(handle.registry)
    try:
        assert thread is not None and thread.daemon and thread.is_alive()
        for _ in range(20):
            add_session(handle.store, expired=True)
        kept = add_session(handle.store)
        purged = 'myapp_sessions_purged_total{store="sql"} 20.0'
        deadline = time.monotonic() + 10
        # The thread counts a batch once its DELETE returned: poll both, the rows
        # and the metric, rather than read the metric the moment the rows are gone.
        while time.monotonic() < deadline and (
            handle.store.count(time.time())[1] or purged not in handle.app.get("/metrics").text
        ):
            time.sleep(0.05)
        assert handle.store.count(time.time()) == (1, 0)
        assert handle.store.load(kept, time.time()) is not None
        assert purged in handle.app.get("/metrics").text
    finally:
        thread.stop()
    assert not thread.is_alive()


def test_purge_is_off_by_default(make_app):
    handle = make_app("memory")
    assert get_purge_thread(handle.registry) is None


def test_purge_thread_logs_store_errors(make_app, closed_port_url, caplog):
    caplog.set_level(logging.INFO, logger="myapp.sessions.operations.purge")
    handle = make_app(
        "memory",
        **{
            "sqlalchemy.url": closed_port_url,
            "session.backends": "sql memory",
            "session.purge_interval": "0.1",
        },
    )
    thread = get_purge_thread(handle.registry)
    try:
        deadline = time.monotonic() + 10
        while thread.runs < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "a failing purge must be logged"
    assert "session purge of 'sql' failed" in errors[0].getMessage()
    assert "refused" in errors[0].getMessage().lower()
