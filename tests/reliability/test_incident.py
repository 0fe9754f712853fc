"""Regression demonstration of a production crash at server start.

A Node app ran ``CREATE TABLE IF NOT EXISTS "Sessions" (...)`` in every worker at start-up
and crashed with ``duplicate key value violates unique constraint
"pg_type_typname_nsp_index"``. Every table also gets a row type in pg_type, and IF NOT
EXISTS only sees committed catalog rows: concurrent creators all pass the check, then
collide on the pg_type unique index. Serialising the DDL with an advisory lock fixes it.
"""

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.reliability.ddl_race import Failure, race_create_tables

ADMIN_DSN = os.environ.get(
    "TEST_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=root dbname=postgres"
)
WORKERS = 8
ROUNDS = 20
# The winner's commit lands while a loser inserts its pg_type row (unique violation on
# pg_type_typname_nsp_index, the incident), between the loser's IF NOT EXISTS check and
# its type lookup ("type ... already exists", 42710), or just before its pg_class
# insert ("relation ... already exists", 42P07). All three are the same race.
RACE_SQLSTATES = {"23505", "42710", "42P07"}

pytestmark = pytest.mark.postgres


@pytest.fixture
def scratch_dsn() -> Iterator[str]:
    """A fresh database on the shared server, dropped after the test."""
    name = f"incident_{uuid.uuid4().hex[:12]}"
    database = sql.Identifier(name)
    with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(database))
    try:
        yield make_conninfo(ADMIN_DSN, dbname=name)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))


def _tables() -> list[str]:
    # Round 0 uses the incident's exact name; each later round needs a table not yet created.
    return ["Sessions", *(f"Sessions_{n}" for n in range(1, ROUNDS))]


def _existing_tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def _summary(failures: list[Failure]) -> str:
    rounds = {failure.table for failure in failures}
    return f"{len(failures)} failures in {len(rounds)}/{ROUNDS} rounds"


def test_concurrent_create_table_if_not_exists_collides_in_pg_type(scratch_dsn: str) -> None:
    failures = race_create_tables(scratch_dsn, _tables(), WORKERS)

    collisions = [f for f in failures if "pg_type_typname_nsp_index" in f.message]
    assert collisions, f"no worker hit the pg_type collision ({_summary(failures)})"
    # Only the race's errors: nothing points at a broken setup instead.
    assert {f.sqlstate for f in failures} <= RACE_SQLSTATES, failures
    # One worker per round always wins, so every table exists despite the crashes.
    assert _existing_tables(scratch_dsn) == set(_tables())


def test_advisory_lock_serialises_the_ddl(scratch_dsn: str) -> None:
    failures = race_create_tables(scratch_dsn, _tables(), WORKERS, with_lock=True)

    assert failures == [], _summary(failures)
    assert _existing_tables(scratch_dsn) == set(_tables())
