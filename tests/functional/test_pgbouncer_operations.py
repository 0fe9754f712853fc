"""The operator tools and the purge work through PgBouncer in transaction pooling mode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from myapp.accounts import find_user
from myapp.sessions.database import get_engine
from myapp.sessions.operations.purge import PURGE_LOCK_ID, Purger, get_purge_thread
from myapp.sessions.stores.sqlstore import SqlStore
from tests.support.databases import advisory_locks, migrated_database
from tests.support.ops import add_session, purge_while_another_purges, run, write_ini
from tests.support.records import authenticator
from tests.support.site import new_user

pytestmark = [pytest.mark.postgres, pytest.mark.pgbouncer]


@pytest.fixture(scope="module")
def direct_url() -> Iterator[str]:
    """A database of its own: these tests count every session in it."""
    with migrated_database("myapp_bouncer_ops") as url:
        yield url


@pytest.fixture
def bouncer_url(pgbouncer, direct_url: str) -> str:
    return pgbouncer.url_for(sa.make_url(direct_url).database)


@pytest.fixture
def engine(bouncer_url: str) -> Iterator[sa.Engine]:
    engine = get_engine({"sqlalchemy.url": bouncer_url, "db.pgbouncer": "transaction"})
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM user_sessions"))
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> Iterator[SqlStore]:
    store = SqlStore(engine, authenticator=authenticator("sql"), transaction_pooling=True)
    yield store
    store.close()


@pytest.fixture
def ini(tmp_path: Path, bouncer_url: str, redis_prefix: str) -> Path:
    return write_ini(
        tmp_path,
        bouncer_url,
        redis_prefix=f"{redis_prefix}bouncer-ops:",
        backends="sql",
        **{"db.pgbouncer": "transaction"},
    )


def test_a_purge_deletes_expired_sessions_and_leaves_no_lock_behind(engine, store, direct_url):
    for _ in range(25):
        add_session(store, expired=True)
    kept = add_session(store)
    (result,) = Purger([store], batch_size=10, lock_engine=engine).run()
    assert (result.outcome, result.deleted, result.batches) == ("done", 25, 3)
    assert store.count(time.time()) == (1, 0)
    assert store.load(kept, time.time()) is not None
    assert advisory_locks(direct_url) == 0


def test_a_purge_skips_its_turn_while_another_holds_the_lock(engine, store, direct_url):
    add_session(store, expired=True)
    holder = sa.create_engine(direct_url)
    try:
        with holder.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": PURGE_LOCK_ID})
            (result,) = Purger([store], batch_size=10, lock_engine=engine).run()
            conn.rollback()
    finally:
        holder.dispose()
    assert result.outcome == "locked"
    assert store.count(time.time()) == (0, 1)
    (again,) = Purger([store], batch_size=10, lock_engine=engine).run()
    assert (again.outcome, again.deleted) == ("done", 1)


def test_two_purgers_through_the_pool_never_both_work(engine, store):
    for _ in range(30):
        add_session(store, expired=True)
    first, second = purge_while_another_purges(store, engine)
    assert second.outcome == "locked" and second.deleted == 0
    assert first.outcome == "done" and first.deleted == 30


def test_the_apps_purge_thread_works_through_pgbouncer(make_app, bouncer_url, direct_url):
    handle = make_app(
        "sql-pgbouncer",
        **{"sqlalchemy.url": bouncer_url, "session.purge_interval": "0.2"},
    )
    thread = get_purge_thread(handle.registry)
    try:
        for _ in range(12):
            add_session(handle.store, expired=True)
        deadline = time.monotonic() + 10
        while handle.store.count(time.time())[1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handle.store.count(time.time())[1] == 0
    finally:
        thread.stop()
    assert advisory_locks(direct_url) == 0


def test_the_session_scripts_work_through_pgbouncer(ini, engine, store):
    name, _ = new_user(engine, "bounced")
    with engine.connect() as conn:
        user_id = str(find_user(conn, name)[0].id)
    mine = [add_session(store, user_id=user_id) for _ in range(2)]
    for _ in range(3):
        add_session(store, expired=True)

    check = run("myapp-sessions", "check", ini)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "READY: sessions would be served by 'sql'." in check.stdout

    stats = run("myapp-sessions", "stats", ini)
    assert stats.returncode == 0, stats.stdout + stats.stderr
    assert stats.stdout.splitlines()[1].split() == ["sql", "2", "3"]

    purge = run("myapp-sessions", "purge", ini)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert store.count(time.time()) == (2, 0)

    ended = run("myapp-sessions", "end-user", ini, name)
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert not any(store.load(key, time.time()) for key in mine)


def test_create_user_works_through_pgbouncer(ini, engine):
    name = f"bounced-{int(time.time() * 1000)}"
    result = run(
        "myapp-create-user", "--ini", ini, "--password-stdin", name, input="a-long-password\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with engine.connect() as conn:
        found = find_user(conn, name)
    assert found is not None
    again = run(
        "myapp-create-user", "--ini", ini, "--if-missing", "--password-stdin", name, input="x\n"
    )
    assert again.returncode == 0, again.stdout + again.stderr
