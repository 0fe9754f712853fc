"""The user_sessions table at the edge of its coarse expiry: nothing expired is served,
nothing live is purged, and writes inside one bucket leave every index alone (HOT)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from myapp.sessions.operations.tablehealth import read_table_health
from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.sqlstore import SqlStore
from myapp.sessions.stores.sqlstore.store import expiry_bucket, to_datetime
from myapp.sessions.stores.sqlstore.table import EXPIRY_BUCKET_SECONDS
from tests.support.databases import migrated_database
from tests.support.records import authenticator

B = EXPIRY_BUCKET_SECONDS
SESSIONS = 200


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def engine(request, postgres_url: str, sqlite_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url if request.param == "postgres" else sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> Iterator[SqlStore]:
    store = SqlStore(engine, authenticator=authenticator("sql"))
    yield store
    store.close()


def session(expires: float, *, last_active: float | None = None) -> SessionRecord:
    last = expires - 600 if last_active is None else last_active
    return SessionRecord(
        key=secrets.token_hex(32),
        data='{"cart": [1]}',
        created=last - 60,
        last_active=last,
        expires=expires,
        user_id=None,
        user_agent="pytest",
    )


def kept(engine: sa.Engine, key: str) -> bool:
    """Whether the row is still stored (other tests share the database: a purge's count
    may include their rows, so each test asks about its own)."""
    return bucket_of(engine, key) is not None


def purge_all(store: SqlStore, now: float) -> int:
    deleted = 0
    while batch := store.purge_expired(now, batch_size=3):
        deleted += batch
    return deleted


def bucket_of(engine: sa.Engine, key: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT expires_bucket FROM user_sessions WHERE id = :key"), {"key": key}
        ).scalar()


def mac_of(engine: sa.Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT mac FROM user_sessions WHERE id = :key"), {"key": key}
        ).scalar()


def row_exists(engine: sa.Engine, key: str) -> bool:
    with engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM user_sessions WHERE id = :key")
        return conn.execute(query, {"key": key}).scalar() == 1


def test_the_bucket_is_always_later_than_the_expiry() -> None:
    for expires in (0.0, B - 0.000001, B, B + 0.5, 1_765_000_000.25, 1_765_000_000 // B * B):
        assert expires < expiry_bucket(expires) <= expires + B


def test_a_session_expired_inside_the_current_bucket_is_refused_but_kept(store, engine):
    """Between its expiry and the end of its bucket a session is never served, and the
    purge leaves it for the next one (it deletes whole buckets)."""
    boundary = (time.time() // B + 1) * B  # the end of the current hour
    record = session(boundary - 5)
    record = record.with_changes(version=store.save(record, None))
    assert bucket_of(engine, record.key) == boundary
    just_after = boundary - 4.999
    assert store.load(record.key, boundary - 5.001) is not None
    assert store.load(record.key, boundary - 5) is None  # expires_at <= now: expired
    assert store.load(record.key, just_after) is None
    assert not store.touch(record, just_after, just_after + 600, just_after)
    purge_all(store, just_after)
    assert kept(engine, record.key)
    purge_all(store, boundary - 0.001)
    assert kept(engine, record.key)
    purge_all(store, boundary)
    assert not kept(engine, record.key)
    assert store.load(record.key, boundary - 5.001) is None  # gone for good


def test_a_session_expiring_exactly_on_a_boundary_belongs_to_the_next_bucket(store, engine):
    boundary = (time.time() // B + 1) * B
    record = session(boundary)
    store.save(record, None)
    assert bucket_of(engine, record.key) == boundary + B
    assert store.load(record.key, boundary - 0.001) is not None
    purge_all(store, boundary)
    assert kept(engine, record.key)  # live up to the boundary, then in a live bucket
    assert store.load(record.key, boundary) is None
    purge_all(store, boundary + B)
    assert not kept(engine, record.key)


def test_a_write_that_crosses_a_boundary_moves_the_bucket(store, engine):
    boundary = (time.time() // B + 1) * B
    record = session(boundary - 1, last_active=boundary - 601)
    version = store.save(record, None)
    later = record.with_changes(last_active=boundary - 600, expires=boundary)
    later = later.with_changes(version=store.save(later, version))
    assert bucket_of(engine, record.key) == boundary + B
    assert store.touch(later, boundary - 599, boundary - 2, boundary - 599)
    assert bucket_of(engine, record.key) == boundary  # a shorter expiry moves it back
    # Purged with the bucket it is in now, not the one it was in.
    purge_all(store, boundary - 1)
    assert kept(engine, record.key)
    purge_all(store, boundary)
    assert not kept(engine, record.key)


def test_the_purge_never_deletes_a_live_session_whose_bucket_is_out_of_date(store, engine):
    """An older release's touch moved expires_at and left the bucket behind: the row is
    in an ended bucket but still live, and the purge checks the exact expiry."""
    now = time.time()
    record = session(now + 3 * B, last_active=now)
    record = record.with_changes(version=store.save(record, None))
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE user_sessions SET expires_bucket = :stale WHERE id = :key"),
            {"stale": int(now) - B, "key": record.key},
        )
    purge_all(store, now)
    assert kept(engine, record.key)
    assert store.load(record.key, now) is not None
    # The next write of this release puts the bucket right again.
    assert store.touch(record, now, now + 3 * B, now)
    assert bucket_of(engine, record.key) == expiry_bucket(now + 3 * B)


def test_rows_an_older_release_inserted_without_a_bucket_are_purged_when_expired(store, engine):
    now = time.time()
    expired, live = secrets.token_hex(32), secrets.token_hex(32)
    with engine.begin() as conn:
        for key, expires in ((expired, now - 60), (live, now + 60)):
            conn.execute(
                sa.text(
                    "INSERT INTO user_sessions "
                    "(id, data, created_at, last_active_at, expires_at, version) "
                    "VALUES (:key, '{}', :t, :t, :expires, 1)"
                ),
                {"key": key, "t": to_datetime(now - 600), "expires": to_datetime(expires)},
            )
    assert store.load(expired, now) is None
    assert store.load(live, now) is None  # no authenticator yet: never served unsigned
    # The live one is signed, as at an upgrade. (The database is shared with other tests:
    # what is counted is this test's rows, not what the calls report.)
    store.sign_unsigned(now, batch_size=10)
    assert mac_of(engine, live) is not None and mac_of(engine, expired) is None
    purge_all(store, now)
    assert not row_exists(engine, expired) and row_exists(engine, live)
    record = store.load(live, now)
    assert record is not None
    store.save(record.with_changes(data='{"n": 2}', last_active=now), record.version)
    assert bucket_of(engine, live) == expiry_bucket(record.expires)


@pytest.mark.postgres
def test_writes_inside_one_bucket_are_heap_only() -> None:
    with migrated_database("myapp_hot") as url:  # statistics of this test's writes alone
        _writes_inside_one_bucket_are_heap_only(url)


def _writes_inside_one_bucket_are_heap_only(url: str) -> None:
    engine = sa.create_engine(url)
    store = SqlStore(engine, authenticator=authenticator("sql"))
    now = time.time()
    start = (now // B) * B + 60  # early in the hour: 30 writes a second apart stay in it
    keys = []
    for _ in range(SESSIONS):
        record = session(start + B + 120, last_active=start)
        keys.append(record.with_changes(version=store.save(record, None)))
    before = _updates(engine)
    for round_ in range(1, 31):
        moment = start + round_
        for i, record in enumerate(keys):
            if round_ % 5:
                changed = record.with_changes(
                    data=f'{{"n": {round_}}}', last_active=moment, expires=moment + B + 120
                )
                keys[i] = changed.with_changes(version=store.save(changed, record.version))
            else:
                assert store.touch(record, moment, moment + B + 120, moment)
                keys[i] = record.with_changes(last_active=moment, expires=moment + B + 120)
    store.close()  # its backends exit, which flushes their statistics
    after = _wait_for_updates(engine, before[0] + SESSIONS * 30)
    engine.dispose()
    updates, hot = after[0] - before[0], after[1] - before[1]
    assert updates == SESSIONS * 30
    # The same bucket all along: no index changed, and the pages have room.
    assert hot >= 0.95 * updates, (hot, updates)


def _updates(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        row = conn.execute(
            sa.text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE relname = 'user_sessions'"
            )
        ).one()
        return int(row[0]), int(row[1])


def _wait_for_updates(engine: sa.Engine, expected: int) -> tuple[int, int]:
    deadline = time.monotonic() + 30
    while True:
        counts = _updates(engine)
        if counts[0] >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


@pytest.mark.postgres
def test_the_table_health_reading_counts_this_tables_writes() -> None:
    with migrated_database("myapp_health") as url:
        engine = sa.create_engine(url)
        store = SqlStore(engine, authenticator=authenticator("sql"))
        now = time.time()
        record = session(now + 600, last_active=now)
        version = store.save(record, None)
        store.save(record.with_changes(data='{"n": 2}'), version)
        store.close()  # flushes the statistics of its backends
        _wait_for_updates(engine, 1)
        health = read_table_health(engine)
        engine.dispose()
    assert health is not None
    assert (health.updates, health.hot_updates) == (1, 1)
    assert health.table_bytes > 0 and health.index_bytes > 0
    assert health.verdict().startswith("healthy")


def test_there_is_no_table_health_reading_on_sqlite(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    assert read_table_health(engine) is None
    engine.dispose()
