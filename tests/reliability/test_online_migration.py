"""Upgrading a user_sessions of 1,000,000 rows while requests of the older release run,
and moving the columns of one of 300,000 (0004_user_sessions_layout) while the release
before it runs.

The figures (how long the upgrade took, the longest any request waited) are printed
and quoted in docs/operations.md; the test itself asserts only outcomes: no request
failed, the table was not rewritten, the new index is valid and the old one gone.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from myapp.sessions.stores.sqlstore import SqlStore
from myapp.sessions.stores.sqlstore.store import expiry_bucket
from tests.support.databases import ADMIN_DSN, create_database, drop_database, migrate, pg_url
from tests.support.records import authenticator, sign_stored_row

pytestmark = pytest.mark.postgres

ROWS = 1_000_000
CLIENTS = 3
# The site's head in the release before 0004_user_sessions_layout.
PREVIOUS_HEAD = "0005_orders"
# The longest a request may wait while user_sessions changes layout: one lock timeout of
# the migration's short lock waits (onlineddl.LOCK_TIMEOUT), and a second.
LOCK_WAIT_BOUND = 3.0
# Rows of the layout move's test: half the table above, to keep the suite's time (the
# move of 1,000,000, quoted in docs/operations.md, was measured with this set to ROWS).
LAYOUT_ROWS = 300_000

# Sessions as the older release (revision 0001_user_sessions) stored them, expiring over
# the next day but none within the hour: none expires while the test runs, whatever the
# time of day (a run that crossed the hour would otherwise find some to purge).
FILL = """
INSERT INTO user_sessions (id, data, created_at, last_active_at, expires_at, user_id, version)
SELECT md5('s' || g) || md5('t' || g), '{"cart": [1, 2], "csrf": "0123456789abcdef"}',
       now() - interval '1 hour', now() - interval '10 minutes',
       now() + interval '1 hour' + (g %% 86400) * interval '1 second', NULL, 1
FROM generate_series(1, %(rows)s) AS g
"""
# One request of the older release: a load, then a write of the session (no bucket).
LOAD = "SELECT data, version FROM user_sessions WHERE id = %s AND expires_at > now()"
SAVE = (
    "UPDATE user_sessions SET data = %s, version = version + 1, last_active_at = now(), "
    "expires_at = now() + interval '1 day' WHERE id = %s AND version = %s"
)
INSERT = (
    "INSERT INTO user_sessions (id, data, created_at, last_active_at, expires_at, version) "
    "VALUES (%s, '{}', now(), now(), now() + interval '1 day', 1)"
)


def key_of(g: int) -> str:
    return hashlib.md5(f"s{g}".encode()).hexdigest() + hashlib.md5(f"t{g}".encode()).hexdigest()


@pytest.fixture
def database() -> Iterator[str]:
    name = create_database("myapp_online")
    yield name
    drop_database(name)


class OlderRelease:
    """Clients of the release before the upgrade, each request its own transaction."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (when, seconds)
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        with psycopg.connect(self.dsn) as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    with conn.transaction():
                        if rng.random() < 0.1:
                            conn.execute(INSERT, (f"new-{n}-{rng.getrandbits(96):024x}",))
                        else:
                            key = key_of(rng.randint(1, ROWS))
                            row = conn.execute(LOAD, (key,)).fetchone()
                            if row is not None:
                                conn.execute(SAVE, ('{"cart": [3]}', key, row[1]))
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                self.latencies.append((time.monotonic(), time.perf_counter() - started))

    def longest(self, since: float, until: float) -> tuple[int, float, float]:
        window = [s for when, s in self.latencies if since <= when <= until]
        return len(window), max(window, default=0.0), statistics.median(window or [0.0])


def index_validity(conn: psycopg.Connection) -> dict[str, bool]:
    """user_sessions' indexes and whether each is valid (a failed concurrent build is not)."""
    return dict(
        conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'user_sessions'::regclass"
        ).fetchall()
    )


@pytest.mark.slow
def test_upgrading_a_million_sessions_under_requests(database: str) -> None:
    dsn = ADMIN_DSN.replace("dbname=postgres", f"dbname={database}")
    url = pg_url(database)
    migrate(url, "0003_signin_throttle")  # the release before: user_sessions at 0001
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FILL, {"rows": ROWS})
        conn.execute("VACUUM ANALYZE user_sessions")
        filenode = conn.execute("SELECT pg_relation_filenode('user_sessions')").fetchone()[0]

    clients = OlderRelease(dsn)
    clients.start()
    time.sleep(3)
    began = time.monotonic()
    # alembic upgrade, with its advisory lock, as a deploy runs it, to the release that
    # brought expires_bucket and mac (the next revision has a test of its own below)
    migrate(url, PREVIOUS_HEAD)
    ended = time.monotonic()
    time.sleep(2)
    clients.finish()

    assert clients.errors == []
    before = clients.longest(0, began)
    during = clients.longest(began, ended)
    after = clients.longest(ended, time.monotonic())
    assert before[0] > 10 and during[0] > 10 and after[0] > 10, (before, during, after)
    print(
        f"\nonline upgrade of {ROWS:,} rows: {ended - began:.1f} s; requests of the older "
        f"release before / during / after: {before[0]} / {during[0]} / {after[0]}, "
        f"longest {before[1] * 1e3:.0f} / {during[1] * 1e3:.0f} / {after[1] * 1e3:.0f} ms, "
        f"median {before[2] * 1e3:.1f} / {during[2] * 1e3:.1f} / {after[2] * 1e3:.1f} ms"
    )

    with psycopg.connect(dsn, autocommit=True) as conn:
        # Never rewritten: the same file on disk.
        assert conn.execute("SELECT pg_relation_filenode('user_sessions')").fetchone()[0] == (
            filenode
        )
        assert index_validity(conn) == {
            "pk_user_sessions": True,
            "ix_user_sessions_user_id": True,
            "ix_user_sessions_expires_bucket": True,
        }
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'user_sessions'::regclass"
        ).fetchone()[0]
        assert "fillfactor=80" in options
        # Rows nobody wrote during the upgrade carry the bucket of their expiry.
        missing, wrong = conn.execute(
            "SELECT count(*) FILTER (WHERE expires_bucket IS NULL), "
            "count(*) FILTER (WHERE expires_bucket <= extract(epoch FROM expires_at)) "
            "FROM user_sessions WHERE version = 1 AND id NOT LIKE 'new-%%'"
        ).fetchone()
        assert (missing, wrong) == (0, 0)
        expires = conn.execute(
            "SELECT extract(epoch FROM expires_at)::float8, expires_bucket FROM user_sessions "
            "WHERE id = %s",
            (key_of(ROWS // 2),),
        ).fetchone()

    # The new release reads and writes what the old one left, and purges by the new index.
    store = SqlStore(sa.create_engine(url), authenticator=authenticator("sql"))
    try:
        now = time.time()
        # Stored by the old release without an authenticator: not served until signed
        # (myapp-sessions sign-unsigned does every live row at an upgrade).
        assert store.load(key_of(ROWS // 2), now) is None
        sign_stored_row(store, key_of(ROWS // 2))
        record = store.load(key_of(ROWS // 2), now)
        assert record is not None
        if record.version == 1:
            assert expires[1] == expiry_bucket(expires[0])
        store.save(record.with_changes(data='{"n": 1}', last_active=now), record.version)
        assert store.purge_expired(now, 1000) == 0
    finally:
        store.close()


# Sessions as the release before 0004_user_sessions_layout stored them: each row's
# number g in its data, and every other column a function of g.
LAYOUT_FILL = """
INSERT INTO user_sessions (id, data, created_at, last_active_at, expires_at, user_id,
                           user_agent, version, expires_bucket, mac)
SELECT md5('s' || g) || md5('t' || g), jsonb_build_object('g', g, 'cart', '[1, 2]'::jsonb),
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second',
       now() - interval '10 minutes', now() + interval '1 day',
       CASE WHEN g %% 10 = 0 THEN 'user-' || (g %% 1000) END,
       'Mozilla/5.0 (X11; Linux x86_64) agent ' || (g %% 50), 1,
       (floor(extract(epoch FROM now() + interval '1 day'))::bigint / 3600 + 1) * 3600,
       md5('m' || g) || md5('n' || g)
FROM generate_series(1, %(rows)s) AS g
"""
# A row whose columns are not what LAYOUT_FILL made of its g (saves keep all but data).
LAYOUT_WRONG = """
SELECT count(*) FROM user_sessions, LATERAL (SELECT (data->>'g')::int AS g) AS n
WHERE id NOT LIKE 'new-%' AND NOT (
    user_agent = 'Mozilla/5.0 (X11; Linux x86_64) agent ' || (g % 50)
    AND user_id IS NOT DISTINCT FROM CASE WHEN g % 10 = 0 THEN 'user-' || (g % 1000) END
    AND created_at = timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
    AND expires_bucket IS NOT NULL AND mac IS NOT NULL AND id = md5('s' || g) || md5('t' || g))
"""
SIZE = "SELECT pg_total_relation_size('user_sessions')"
# One request of the previous release (the store's statements as they were): a load,
# then a save of the whole record, data cast to jsonb.
PREVIOUS_LOAD = (
    "SELECT CAST(data AS TEXT), version, user_id, user_agent FROM user_sessions "
    "WHERE id = %s AND expires_at > now()"
)
PREVIOUS_SAVE = (
    "UPDATE user_sessions SET version = version + 1, data = CAST(%s AS JSONB), "
    "last_active_at = now(), expires_at = now() + interval '1 day', expires_bucket = %s, "
    "user_id = %s, user_agent = %s, mac = %s WHERE id = %s AND version = %s "
    "AND expires_at > now() RETURNING version"
)
PREVIOUS_INSERT = (
    "INSERT INTO user_sessions (id, data, created_at, last_active_at, expires_at, "
    "expires_bucket, user_id, user_agent, version, mac) VALUES (%s, CAST(%s AS JSONB), "
    "now(), now(), now() + interval '1 day', %s, 'new-user', 'new agent', 1, %s) "
    "ON CONFLICT (id) DO NOTHING RETURNING version"
)


class PreviousRelease(OlderRelease):
    """Clients of the release before the layout: its store's statements, prepared (as
    psycopg prepares them by itself), and every write they made, to check after."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.written: dict[str, str] = {}  # key -> data last written

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        bucket = (int(time.time() + 86_400) // 3600 + 1) * 3600
        with psycopg.connect(self.dsn) as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    with conn.transaction():
                        self._request(conn, rng, n, bucket)
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                self.latencies.append((time.monotonic(), time.perf_counter() - started))

    def _request(self, conn: psycopg.Connection, rng: random.Random, n: int, bucket: int) -> None:
        mac = f"{rng.getrandbits(256):064x}"
        if rng.random() < 0.1:
            key = f"new-{n}-{rng.getrandbits(96):024x}"
            data = json.dumps({"new": n})
            if conn.execute(PREVIOUS_INSERT, (key, data, bucket, mac), prepare=True).fetchone():
                self.written[key] = data
            return
        g = rng.randint(1, LAYOUT_ROWS)
        key = key_of(g)
        row = conn.execute(PREVIOUS_LOAD, (key,), prepare=True).fetchone()
        if row is None:
            return
        _, version, user_id, user_agent = row
        data = json.dumps({"g": g, "cart": [rng.randint(1, 9)]})
        values = (data, bucket, user_id, user_agent, mac, key, version)
        if conn.execute(PREVIOUS_SAVE, values, prepare=True).fetchone():
            self.written[key] = data


@pytest.mark.slow
def test_moving_the_columns_of_sessions_under_requests(database: str) -> None:
    """0004_user_sessions_layout on LAYOUT_ROWS rows while the previous release serves:
    no request fails or waits longer than a lock timeout (and a second), the table is
    not rewritten, and every value is kept, those written during the move included."""
    dsn = ADMIN_DSN.replace("dbname=postgres", f"dbname={database}")
    url = pg_url(database)
    migrate(url, PREVIOUS_HEAD)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LAYOUT_FILL, {"rows": LAYOUT_ROWS})
        conn.execute("VACUUM ANALYZE user_sessions")
        filenode = conn.execute("SELECT pg_relation_filenode('user_sessions')").fetchone()[0]
        size = conn.execute(SIZE).fetchone()[0]

    clients = PreviousRelease(dsn)
    clients.start()
    time.sleep(3)
    began = time.monotonic()
    migrate(url)
    ended = time.monotonic()
    time.sleep(2)
    clients.finish()

    assert clients.errors == []
    before = clients.longest(0, began)
    during = clients.longest(began, ended)
    after = clients.longest(ended, time.monotonic())
    assert before[0] > 10 and during[0] > 10 and after[0] > 10, (before, during, after)
    print(
        f"\nonline layout move of {LAYOUT_ROWS:,} rows: {ended - began:.1f} s; requests of the "
        f"previous release before / during / after: {before[0]} / {during[0]} / {after[0]}, "
        f"longest {before[1] * 1e3:.0f} / {during[1] * 1e3:.0f} / {after[1] * 1e3:.0f} ms, "
        f"median {before[2] * 1e3:.1f} / {during[2] * 1e3:.1f} / {after[2] * 1e3:.1f} ms"
    )
    assert during[1] < LOCK_WAIT_BOUND, during

    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_relation_filenode('user_sessions')").fetchone()[0] == (
            filenode
        )
        assert index_validity(conn) == {
            "pk_user_sessions": True,
            "ix_user_sessions_user_id": True,
            "ix_user_sessions_expires_bucket": True,
        }
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'user_sessions'::regclass"
        ).fetchone() == (0,)
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'user_sessions'::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        ]
        assert columns[-5:] == ["data", "expires_bucket", "created_at", "user_id", "user_agent"]
        assert conn.execute(
            "SELECT count(*) FROM user_sessions WHERE id NOT LIKE 'new-%%'"
        ).fetchone() == (LAYOUT_ROWS,)
        assert conn.execute(LAYOUT_WRONG).fetchone() == (0,)
        grown = conn.execute(SIZE).fetchone()[0]
        print(f"table and indexes: {size / 2**20:.0f} MiB before, {grown / 2**20:.0f} MiB after")
        stored = dict(
            conn.execute(
                "SELECT id, CAST(data AS TEXT) FROM user_sessions WHERE id = ANY(%s)",
                (list(clients.written),),
            ).fetchall()
        )
        assert conn.execute(
            "SELECT count(*) FROM user_sessions WHERE id LIKE 'new-%%' AND NOT ("
            "user_id = 'new-user' AND user_agent = 'new agent' AND created_at IS NOT NULL)"
        ).fetchone() == (0,)
    assert len(clients.written) > 100
    assert {key: json.loads(data) for key, data in stored.items()} == {
        key: json.loads(data) for key, data in clients.written.items()
    }


@pytest.fixture
def previous_release() -> Iterator[tuple[str, str]]:
    """(dsn, url) of a database at the release before, with a few sessions."""
    name = create_database("myapp_resume")
    dsn = ADMIN_DSN.replace("dbname=postgres", f"dbname={name}")
    url = pg_url(name)
    migrate(url, "0003_signin_throttle")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FILL, {"rows": 100})
    yield dsn, url
    drop_database(name)


def _index_valid(dsn: str, name: str) -> bool | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
            (name,),
        ).fetchone()
    return None if row is None else bool(row[0]) and "expires_bucket" in row[1]


def _waiting_alter(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'ALTER TABLE user_sessions ADD COLUMN%%'"
            ).fetchone()[0]
        )


def test_the_upgrade_waits_out_a_long_transaction_without_queueing_requests(
    previous_release: tuple[str, str],
) -> None:
    """A transaction holding user_sessions makes ADD COLUMN give up after its lock
    timeout and try again, so requests queue behind it for one timeout at most, not
    for as long as that transaction lasts."""
    dsn, url = previous_release
    holder = psycopg.connect(dsn)
    holder.execute("SELECT count(*) FROM user_sessions")  # holds ACCESS SHARE until commit
    upgrade = threading.Thread(target=migrate, args=(url,))
    upgrade.start()
    try:
        deadline = time.monotonic() + 30
        while not _waiting_alter(dsn) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_alter(dsn), "the upgrade never queued for the table"
        # Queued behind the ALTER, a request gets the table once the ALTER gives up;
        # without the lock timeout it would wait for the holder, past 10 s.
        with psycopg.connect(dsn, autocommit=True) as reader:
            reader.execute("SET statement_timeout = '10s'")
            for _ in range(3):
                assert reader.execute("SELECT count(*) FROM user_sessions").fetchone()[0] == 100
                time.sleep(0.5)
        assert upgrade.is_alive()  # still trying while the holder holds
    finally:
        holder.commit()
        holder.close()
        upgrade.join(60)
    assert not upgrade.is_alive()
    assert _index_valid(dsn, "ix_user_sessions_expires_bucket") is True


@pytest.mark.postgres
def test_an_upgrade_interrupted_during_the_index_build_is_finished_by_the_next(
    previous_release: tuple[str, str],
) -> None:
    dsn, url = previous_release
    with psycopg.connect(dsn, autocommit=True) as conn:
        # What a killed CREATE INDEX CONCURRENTLY leaves: an invalid index of that name.
        conn.execute("ALTER TABLE user_sessions ADD COLUMN expires_bucket bigint")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY ix_user_sessions_expires_bucket "
                "ON user_sessions (version)"
            )
    assert _index_valid(dsn, "ix_user_sessions_expires_bucket") is False
    migrate(url)
    assert _index_valid(dsn, "ix_user_sessions_expires_bucket") is True
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM user_sessions WHERE expires_bucket IS NULL"
        ).fetchone() == (0,)
