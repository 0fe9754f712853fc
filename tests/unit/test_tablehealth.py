"""The plain-words verdict on user_sessions, from a reading of its statistics."""

from __future__ import annotations

import dataclasses

from myapp.sessions.operations.tablehealth import TableHealth

NOW = 1_800_000_000.0
HEALTHY = TableHealth(
    updates=1_000_000,
    hot_updates=990_000,
    live_rows=100_000,
    dead_rows=2_000,
    table_bytes=50 << 20,
    index_bytes=20 << 20,
    toast_bytes=0,
    last_vacuum=NOW - 600,
    vacuums=12,
    read_at=NOW,
)


def reading(**changes: object) -> TableHealth:
    return dataclasses.replace(HEALTHY, **changes)


def test_a_table_that_keeps_up_is_called_healthy():
    assert HEALTHY.problems() == []
    assert HEALTHY.verdict().startswith("healthy")
    assert HEALTHY.hot_share == 0.99


def test_few_heap_only_updates_point_at_the_indexes_and_the_migration():
    (problem,) = reading(hot_updates=10_000).problems()
    assert "1% of session updates are heap-only" in problem
    assert "alembic upgrade head" in problem


def test_many_dead_rows_point_at_long_transactions_and_vacuum():
    (problem,) = reading(dead_rows=50_000).problems()
    assert "33% of the rows are dead" in problem and "VACUUM" in problem


def test_dead_rows_and_no_vacuum_for_a_day_point_at_autovacuum():
    problems = reading(dead_rows=20_000, last_vacuum=NOW - 2 * 86_400).problems()
    assert any("no vacuum for more than a day" in p for p in problems)


def test_indexes_far_larger_than_the_table_call_for_a_reindex():
    (problem,) = reading(index_bytes=200 << 20).problems()
    assert "REINDEX TABLE CONCURRENTLY" in problem


def test_a_new_table_has_too_few_rows_for_a_verdict():
    fresh = reading(updates=50, hot_updates=0, dead_rows=40, live_rows=10, last_vacuum=None)
    assert fresh.problems() == []
    assert any(line.startswith("last vacuum        never") for line in fresh.lines())
    assert reading(updates=0, hot_updates=0).hot_share is None
