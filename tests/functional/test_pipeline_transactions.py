"""What the session transaction rests on, shown with psycopg and PostgreSQL alone.

A state-changing request's session statements run in one psycopg pipeline with no
``BEGIN``: PostgreSQL runs a pipeline's statements up to its Sync as one implicit
transaction. These tests pin each property the SQL store relies on
(``stores/sqlstore/transaction.py``), so an upgrade of either that changes one fails
here first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_dsn(postgres_url: str) -> str:
    return sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)


@pytest.fixture
def conns(pg_dsn: str) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """A connection that runs the pipelines, and another that watches."""
    with (
        psycopg.connect(pg_dsn, autocommit=True) as ours,
        psycopg.connect(pg_dsn, autocommit=True) as other,
    ):
        ours.execute("DROP TABLE IF EXISTS pipeline_rows")
        ours.execute("CREATE TABLE pipeline_rows (id text PRIMARY KEY, n int)")
        ours.execute("INSERT INTO pipeline_rows VALUES ('a', 0)")
        try:
            yield ours, other
        finally:
            if ours.info.transaction_status != TransactionStatus.IDLE:
                ours.rollback()
            ours.execute("DROP TABLE pipeline_rows")


def _open_pipeline(conn: psycopg.Connection) -> ExitStack:
    pipeline = ExitStack()
    pipeline.enter_context(conn.pipeline())
    return pipeline


def test_statements_before_the_sync_are_one_transaction_committed_by_it(conns):
    ours, _ = conns
    cur = ours.cursor()
    pipeline = _open_pipeline(ours)
    cur.execute("SELECT now(), n FROM pipeline_rows WHERE id = %s", ("a",))
    ((started, n),) = cur.fetchall()  # rows fetched with a flush request, no Sync
    cur.execute("UPDATE pipeline_rows SET n = n + 1 WHERE id = %s RETURNING now()", ("a",))
    pipeline.close()  # the Sync
    ((written_at,),) = cur.fetchall()
    assert written_at == started  # now() is the transaction's start: one transaction
    assert ours.execute("SELECT n FROM pipeline_rows").fetchone() == (n + 1,)
    assert ours.info.transaction_status == TransactionStatus.IDLE


def test_a_write_before_the_sync_is_invisible_to_others_until_it(conns):
    ours, other = conns
    cur = ours.cursor()
    pipeline = _open_pipeline(ours)
    cur.execute("SELECT n FROM pipeline_rows WHERE id = %s", ("a",))
    cur.fetchall()
    cur.execute("UPDATE pipeline_rows SET n = 1 WHERE id = %s RETURNING n", ("a",))
    assert cur.fetchall() == [(1,)]  # executed and answered, not yet committed
    assert other.execute("SELECT n FROM pipeline_rows").fetchone() == (0,)
    pipeline.close()
    assert other.execute("SELECT n FROM pipeline_rows").fetchone() == (1,)


def test_an_error_before_the_sync_undoes_every_statement_since_the_last_one(conns):
    ours, _ = conns
    cur = ours.cursor()
    pipeline = _open_pipeline(ours)
    cur.execute("SELECT n FROM pipeline_rows WHERE id = %s", ("a",))
    cur.fetchall()
    cur.execute("UPDATE pipeline_rows SET n = 100 WHERE id = %s", ("a",))
    cur.execute("SELECT 1 / 0")
    with pytest.raises(psycopg.errors.DivisionByZero):
        pipeline.close()
    assert ours.execute("SELECT n FROM pipeline_rows").fetchone() == (0,)
    assert ours.execute("SELECT 1").fetchone() == (1,)  # the connection goes on


def test_begin_turns_it_into_an_explicit_transaction_that_keeps_what_ran(conns):
    ours, _ = conns
    cur = ours.cursor()
    pipeline = _open_pipeline(ours)
    cur.execute("SELECT now() FROM pipeline_rows WHERE id = %s", ("a",))
    ((started,),) = cur.fetchall()
    cur.execute("BEGIN", prepare=False)
    cur.execute("UPDATE pipeline_rows SET n = 5 WHERE id = %s", ("a",))
    pipeline.close()  # a Sync now leaves the transaction open
    assert cur.rowcount == 1
    assert ours.info.transaction_status == TransactionStatus.INTRANS
    assert ours.execute("SELECT now()").fetchone() == (started,)
    ours.rollback()
    assert ours.execute("SELECT n FROM pipeline_rows").fetchone() == (0,)


def test_a_sync_after_reads_alone_leaves_nothing_open(conns):
    ours, _ = conns
    cur = ours.cursor()
    pipeline = _open_pipeline(ours)
    cur.execute("SELECT n FROM pipeline_rows WHERE id = %s", ("a",))
    assert cur.fetchall() == [(0,)]
    pipeline.close()
    assert ours.info.transaction_status == TransactionStatus.IDLE
    assert not ours.pgconn.pipeline_status
