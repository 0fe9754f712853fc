"""The SQL store's held autocommit connections, on a real PostgreSQL."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from myapp.sessions.database import autocommit_engine, get_engine
from myapp.sessions.stores.sqlstore.connection import HeldConnections
from tests.support.counting import on_psycopg_statement

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    # A name of its own, so this test's backends can be counted in pg_stat_activity.
    name = "held-" + secrets.token_hex(4)
    settings = {
        "sqlalchemy.url": postgres_url,
        "sqlalchemy.pool_size": "2",
        "sqlalchemy.max_overflow": "3",
        "myapp.application_name": name,
    }
    engine = autocommit_engine(get_engine(settings))
    engine.test_name = name  # type: ignore[attr-defined]
    yield engine
    engine.dispose()


def _backends(engine: sa.Engine) -> list[int]:
    with psycopg.connect(
        engine.url.render_as_string(hide_password=False).replace(
            "postgresql+psycopg", "postgresql"
        ),
        autocommit=True,
    ) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (engine.test_name,),  # type: ignore[attr-defined]
        ).fetchall()
    return [pid for (pid,) in rows]


def _backends_settle_at(engine: sa.Engine, count: int, within: float = 5.0) -> int:
    """How many backends are left once their number reaches ``count`` (or time is up).

    A client closes its connection at once, but its backend leaves
    ``pg_stat_activity`` a moment later, later still on a loaded host.
    """
    deadline = time.monotonic() + within
    while (left := len(_backends(engine))) != count and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def _select_one(pooled) -> int:
    with pooled.driver_connection.cursor() as cursor:
        return cursor.execute("SELECT 1").fetchone()[0]


def test_a_released_connection_is_reused_without_a_pool_checkout(engine):
    held = HeldConnections(engine)
    checkouts = []
    sa.event.listen(engine, "checkout", lambda *args: checkouts.append(1))
    first = held.acquire()
    held.release(first)
    second = held.acquire()
    assert second.driver_connection is first.driver_connection
    assert len(checkouts) == 1
    held.release(second)


def test_a_connection_whose_backend_was_terminated_is_replaced_on_acquire(engine):
    held = HeldConnections(engine)
    pooled = held.acquire()
    killed = pooled.driver_connection.info.backend_pid
    held.release(pooled)
    with engine.connect() as other:
        other.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": killed})

    replacement = held.acquire()
    assert replacement.driver_connection.info.backend_pid != killed
    assert _select_one(replacement) == 1
    held.release(replacement)


def test_a_connection_the_driver_knows_is_closed_is_replaced(engine):
    held = HeldConnections(engine)
    pooled = held.acquire()
    broken = pooled.driver_connection
    held.release(pooled)
    broken.pgconn.finish()

    replacement = held.acquire()
    assert replacement.driver_connection is not broken
    assert _select_one(replacement) == 1
    held.release(replacement)


@pytest.mark.parametrize(("idle_ping_seconds", "pings"), [(0.0, 1), (60.0, 0)])
def test_only_a_connection_idle_long_enough_is_pinged(engine, idle_ping_seconds, pings):
    # A silent network drop leaves no readable socket: only the idle time shows it.
    held = HeldConnections(engine, idle_ping_seconds=idle_ping_seconds)
    held.release(held.acquire())
    sent: list[str] = []
    restore = on_psycopg_statement(lambda cursor, statement: sent.append(statement))
    try:
        held.release(held.acquire())
    finally:
        restore()
    assert len(sent) == pings


def test_at_most_pool_size_wait_and_the_overflow_is_closed(engine):
    held = HeldConnections(engine)
    many = [held.acquire() for _ in range(5)]  # pool_size 2 + max_overflow 3
    assert len(_backends(engine)) == 5
    for pooled in many:
        held.release(pooled)
    assert len(held) == 2
    assert _backends_settle_at(engine, 2) == 2


def test_disposing_of_the_engine_closes_the_held_connections(engine):
    held = HeldConnections(engine)
    pooled = held.acquire()
    held.release(pooled)
    assert _backends_settle_at(engine, 1) == 1

    engine.dispose()
    assert len(held) == 0
    assert _backends_settle_at(engine, 0) == 0
    # The holder goes on with a fresh connection from the new pool.
    again = held.acquire()
    assert _select_one(again) == 1
    held.release(again)


def test_discarding_closes_the_connection_and_frees_its_slot(engine):
    held = HeldConnections(engine)
    pooled = held.acquire()
    pooled.driver_connection.execute("BEGIN")
    held.discard(pooled, RuntimeError("interrupted"))
    assert len(held) == 0
    assert _backends_settle_at(engine, 0) == 0
    again = held.acquire()
    assert _select_one(again) == 1
    held.release(again)


def test_after_close_nothing_is_kept(engine):
    held = HeldConnections(engine)
    pooled = held.acquire()
    held.close()
    held.release(pooled)
    assert len(held) == 0
