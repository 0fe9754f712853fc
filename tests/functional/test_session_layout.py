"""user_sessions in the layout of 0004_user_sessions_layout: a save logs none of the columns
it leaves alone, and the move keeps every value, including rows the previous release
writes while it runs."""

from __future__ import annotations

import importlib
import json
import secrets
import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from myapp.sessions.stores.base import SessionRecord
from myapp.sessions.stores.sqlstore import SqlStore
from tests.support.databases import ADMIN_DSN, create_database, drop_database, migrate, pg_url
from tests.support.records import authenticator

pytestmark = pytest.mark.postgres

layout = importlib.import_module("myapp.sessions.migrations.0004_user_sessions_layout")

PREVIOUS = "0005_orders"  # the site's head in the release before the move
USER_AGENT = "Mozilla/5.0 " + "x" * 244  # as long as the column takes: 256
USER_ID = "u" * 64
MOVED = ("data", "expires_bucket", "created_at", "user_id", "user_agent")


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """(dsn, url) of a new database, not migrated."""
    name = create_database("myapp_layout")
    yield ADMIN_DSN.replace("dbname=postgres", f"dbname={name}"), pg_url(name)
    drop_database(name)


@pytest.fixture
def store(database: tuple[str, str]) -> Iterator[SqlStore]:
    engine = sa.create_engine(database[1])
    store = SqlStore(engine, authenticator=authenticator("sql"))
    yield store
    store.close()
    engine.dispose()


def record(n: int, now: float, *, user_id: str | None = USER_ID) -> SessionRecord:
    return SessionRecord(
        key=secrets.token_hex(32),
        data=f'{{"cart":[{n}],"csrf":"{secrets.token_hex(16)}"}}',
        created=now - 60 - n,
        last_active=now,
        expires=now + 3600 + n,
        user_id=user_id,
        user_agent=f"{USER_AGENT[:-4]}{n:04d}",
    )


def saved_wal(dsn: str, store: SqlStore, session: SessionRecord) -> int:
    """The length of the heap record one save of ``session`` (stored, at its version)
    logs for user_sessions: a save of changed data, as every request that writes does."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        # How pg_walinspect names the table's blocks: "rel <tablespace>/<db>/<file> ".
        relation = conn.execute(
            "SELECT format('rel %s/%s/%s ', t.oid, d.oid, pg_relation_filenode(c.oid)) "
            "FROM pg_database d, pg_class c, "
            "pg_tablespace t WHERE d.datname = current_database() AND c.relname = "
            "'user_sessions' AND t.oid = coalesce(nullif(c.reltablespace, 0), d.dattablespace)"
        ).fetchone()[0]
        for _ in range(3):
            start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            changed = session.with_changes(data=f'{{"cart":[{secrets.randbelow(10**6)}]}}')
            version = store.save(changed, session.version)
            session = changed.with_changes(version=version)
            end = conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
            records = conn.execute(
                "SELECT record_type, record_length, fpi_length FROM "
                "pg_get_wal_records_info(%s, %s) WHERE resource_manager = 'Heap' "
                "AND strpos(block_ref, %s) > 0",
                (start, end, relation),
            ).fetchall()
            assert [kind for kind, _, _ in records] == ["HOT_UPDATE"], records
            _, length, image = records[0]
            if not image:  # a checkpoint came between: the page was logged whole
                return int(length)
    raise AssertionError("every save logged a full page image")


@pytest.mark.parametrize("revision", [PREVIOUS, "head"])
def test_a_save_logs_none_of_the_columns_it_leaves_alone(
    database: tuple[str, str], store: SqlStore, revision: str
) -> None:
    """A save changes last_active_at, expires_at, version, mac and data; in the new
    layout user_agent (256 B here) and user_id (64 B) come after all of them, so the
    heap-only update logs neither. The previous layout logs both: the control that the
    measurement sees them."""
    dsn, url = database
    migrate(url, revision)
    now = time.time()
    session = record(1, now)
    session = session.with_changes(version=store.save(session, None))
    length = saved_wal(dsn, store, session)
    print("WALLEN", revision, length)
    if revision == "head":
        assert length < len(USER_AGENT), length
    else:
        assert length > len(USER_AGENT) + len(USER_ID), length


def _columns(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'user_sessions'::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        ]


SNAPSHOT = (
    "SELECT id, data::jsonb, expires_bucket, created_at, user_id, user_agent, "
    "last_active_at, expires_at, version, mac FROM user_sessions ORDER BY id"
)


def test_the_move_keeps_every_value_of_rows_written_before_and_while_it_runs(
    database: tuple[str, str], store: SqlStore
) -> None:
    dsn, url = database
    migrate(url, PREVIOUS)
    now = time.time()
    stored = {}
    for n in range(40):
        session = record(n, now, user_id=USER_ID if n % 2 else None)
        stored[session.key] = session.with_changes(version=store.save(session, None))
    # What an upgrade that stopped after its first step leaves: the copies and the
    # trigger; the previous release goes on writing meanwhile.
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in layout.copy_statements():
            conn.execute(statement)
    for n, key in enumerate(list(stored)[:10]):
        session = stored[key].with_changes(data=f'{{"saved":{n}}}', last_active=now + 1)
        stored[key] = session.with_changes(version=store.save(session, stored[key].version))
    for n in range(40, 45):
        session = record(n, now)
        stored[session.key] = session.with_changes(version=store.save(session, None))
    with psycopg.connect(dsn) as conn:
        copied = conn.execute(
            "SELECT count(*) FROM user_sessions WHERE data_new IS NOT NULL "
            "AND data_new::jsonb = data AND created_at_new = created_at "
            "AND user_id_new IS NOT DISTINCT FROM user_id AND user_agent_new = user_agent "
            "AND expires_bucket_new = expires_bucket"
        ).fetchone()[0]
        before = conn.execute(SNAPSHOT).fetchall()
    assert copied == 15  # every row written since the trigger, none before

    migrate(url)

    with psycopg.connect(dsn) as conn:
        assert conn.execute(SNAPSHOT).fetchall() == before
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'user_sessions'::regclass"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname = %s", (layout.TRIGGER,)
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'user_sessions'::regclass "
            "AND contype = 'c'"
        ).fetchone() == (0,)
        types = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) || "
                "CASE WHEN attnotnull THEN ' not null' ELSE '' END FROM pg_attribute "
                "WHERE attrelid = 'user_sessions'::regclass AND attnum > 0 AND NOT attisdropped"
            ).fetchall()
        )
    assert _columns(dsn)[-len(MOVED) :] == list(MOVED)
    assert _columns(dsn).index("mac") < _columns(dsn).index("data")
    assert types["data"] == "json not null"
    assert types["created_at"] == "timestamp with time zone not null"
    assert types["user_agent"] == "character varying(256)"
    # The new release serves what both wrote: every authenticator still matches.
    for key, session in stored.items():
        loaded = store.load(key, now)
        assert loaded is not None
        assert (loaded.version, loaded.user_id, loaded.user_agent) == (
            session.version,
            session.user_id,
            session.user_agent,
        )
        assert json.loads(loaded.data) == json.loads(session.data)


def test_a_users_sessions_are_listed_through_the_moved_user_id_index(
    database: tuple[str, str], store: SqlStore
) -> None:
    dsn, url = database
    migrate(url, PREVIOUS)
    now = time.time()
    mine = set()
    for n in range(30):
        session = record(n, now, user_id=USER_ID if n % 3 == 0 else f"other-{n}")
        store.save(session, None)
        if n % 3 == 0:
            mine.add(session.key)
    migrate(url)
    assert {session.key for session in store.list_user(USER_ID, now)} == mine
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT id FROM user_sessions WHERE user_id = %s", (USER_ID,)
            )
        )
        valid, definition = conn.execute(
            "SELECT indisvalid, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indexrelid = 'ix_user_sessions_user_id'::regclass"
        ).fetchone()
    assert "ix_user_sessions_user_id" in plan, plan
    assert valid and definition.endswith("(user_id)")


def _stored_data_and_mac(dsn: str, key: str) -> tuple[str, str]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT data::text, mac FROM user_sessions WHERE id = %s", (key,)
        ).fetchone()


@pytest.mark.parametrize("revision", [PREVIOUS, "head"])
def test_rows_are_signed_in_a_form_that_verifies_on_the_column_they_are_in(
    database: tuple[str, str], store: SqlStore, revision: str
) -> None:
    """On json (head) a row is signed over its data's very text; on jsonb (a database not
    moved yet) over the canonical form, since jsonb hands back a text of its own. Either
    way the next load verifies it."""
    dsn, url = database
    migrate(url, revision)
    store.check()
    assert store.statements.data_verbatim is (revision == "head")
    now = time.time()
    first = record(1, now)
    version = store.save(first, None)
    loaded = store.load(first.key, now)
    assert loaded is not None and loaded.version == version
    store.save(loaded.with_changes(data='{"cart": [1, 2], "n": 1.5}'), version)
    again = store.load(first.key, now)
    assert again is not None and json.loads(again.data) == {"cart": [1, 2], "n": 1.5}
    text, mac = _stored_data_and_mac(dsn, first.key)
    stored_form = store.authenticator.sign_stored(again, again.version)
    assert (mac == stored_form) is (revision == "head")
    # jsonb hands back a text of its own; json the very text written.
    assert (text == '{"cart": [1, 2], "n": 1.5}') is (revision == "head")


def test_a_row_signed_over_the_canonical_form_still_loads_on_json(
    database: tuple[str, str], store: SqlStore
) -> None:
    """Rows a release signed over the canonical form (on jsonb, before the move) keep
    loading after it: the load tries the stored form, then the canonical one."""
    url = database[1]
    migrate(url, PREVIOUS)
    store.check()  # jsonb: signs over the canonical form
    now = time.time()
    first = record(2, now)
    store.save(first, None)
    migrate(url)  # the move to json, rows kept as they were signed
    moved = SqlStore(sa.create_engine(url), authenticator=authenticator("sql"))
    try:
        moved.check()
        assert moved.statements.data_verbatim
        loaded = moved.load(first.key, now)
        assert loaded is not None and json.loads(loaded.data) == json.loads(first.data)
    finally:
        moved.close()
