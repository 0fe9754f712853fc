"""Migrations run against PostgreSQL itself, never through transaction pooling."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.databases import REPO, advisory_locks, create_database, drop_database, pg_url

pytestmark = [pytest.mark.postgres, pytest.mark.pgbouncer]


@pytest.fixture
def fresh_database() -> Iterator[str]:
    name = create_database("myapp_migrate")
    try:
        yield name
    finally:
        drop_database(name)


def _ini(tmp_path: Path, url: str, pgbouncer: str = "none") -> Path:
    ini = tmp_path / "migrate.ini"
    text = (REPO / "production.ini").read_text()
    text = text.replace("%(here)s/migrations", str(REPO / "migrations"))
    text = text.replace(
        "sqlalchemy.url = postgresql+psycopg://myapp@127.0.0.1:5432/myapp",
        f"sqlalchemy.url = {url}\ndb.pgbouncer = {pgbouncer}",
    )
    ini.write_text(text)
    return ini


def _alembic(ini: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [os.path.join(os.path.dirname(sys.executable), "alembic"), "-c", str(ini), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_pointed_at_transaction_pooling_it_stops_before_any_ddl(
    pgbouncer, fresh_database, tmp_path
):
    # The ini does not say so: the run sees it by itself.
    ini = _ini(tmp_path, pgbouncer.url_for(fresh_database))
    result = _alembic(ini, "upgrade", "head")
    assert result.returncode == 2, result.stderr
    assert "refusing to migrate" in result.stderr
    assert "served by one server connection" in result.stderr
    assert "-x db_url=" in result.stderr  # says what to run instead
    assert _tables(pg_url(fresh_database)) == set()
    assert advisory_locks(pg_url(fresh_database)) == 0  # no lock left behind


def test_an_ini_that_says_transaction_pooling_needs_the_direct_url(
    pgbouncer, fresh_database, tmp_path
):
    ini = _ini(tmp_path, pgbouncer.url_for(fresh_database), pgbouncer="transaction")
    result = _alembic(ini, "upgrade", "head")
    assert result.returncode == 2
    assert "db.pgbouncer = transaction and no -x db_url" in result.stderr
    assert _tables(pg_url(fresh_database)) == set()

    direct = _alembic(ini, "-x", f"db_url={pg_url(fresh_database)}", "upgrade", "head")
    assert direct.returncode == 0, direct.stderr
    assert "user_sessions" in _tables(pg_url(fresh_database))


def test_through_session_pooling_it_migrates(make_pgbouncer, fresh_database, tmp_path):
    with make_pgbouncer(pool_mode="session") as session_pooling:
        ini = _ini(tmp_path, session_pooling.url_for(fresh_database))
        result = _alembic(ini, "upgrade", "head")
    assert result.returncode == 0, result.stderr
    assert "user_sessions" in _tables(pg_url(fresh_database))
    assert advisory_locks(pg_url(fresh_database)) == 0
