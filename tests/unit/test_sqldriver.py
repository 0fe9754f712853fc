"""The SQL store's driver path: statements compiled once, results read like SQLAlchemy's."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from myapp.sessions.stores.sqlstore.connection import CompiledStatements, DriverResult, kept_cursor
from myapp.sessions.stores.sqlstore.table import user_sessions

DIALECT = postgresql.psycopg.dialect()


def test_kept_statement_is_compiled_once_with_its_literal_parameters():
    statement = (
        sa.update(user_sessions).values(version=1).where(user_sessions.c.id == sa.bindparam("key"))
    )
    statements = CompiledStatements(DIALECT)
    statements.keep(statement)
    sql, defaults, returns_rows, only_reads = statements(statement)
    assert statements(statement) is statements(statement)  # compiled once
    assert "%(key)s" in sql and defaults == {"version": 1, "key": None}
    assert not returns_rows and not only_reads
    returning = sa.update(user_sessions).values(version=1).returning(user_sessions.c.version)
    assert statements(returning).returns_rows


def test_statement_not_kept_is_compiled_on_each_use():
    statements = CompiledStatements(DIALECT)
    statement = sa.select(user_sessions.c.id).where(user_sessions.c.user_id == "u1")
    first, second = statements(statement), statements(statement)
    assert first == second and first is not second
    assert list(first.defaults.values()) == ["u1"] and first.returns_rows and first.only_reads
    text = statements(sa.text("DELETE FROM user_sessions"))
    assert not text.returns_rows and not text.only_reads  # text counts as a write


def test_statement_needing_bind_processors_is_refused():
    statement = sa.select(sa.literal(1)).where(
        sa.bindparam("blob", type_=sa.PickleType()) == sa.bindparam("other")
    )
    with pytest.raises(TypeError, match="bind processors"):
        CompiledStatements(DIALECT).keep(statement)


def test_result_reads_like_sqlalchemys():
    rows = DriverResult([("a", 1)], rowcount=1)
    assert rows.first() == ("a", 1) and rows.scalar() == "a" and rows.one() == ("a", 1)
    assert rows.all() == [("a", 1)] and rows.rowcount == 1
    nothing = DriverResult(None, rowcount=3)  # an UPDATE without RETURNING
    assert nothing.first() is None and nothing.scalar() is None and nothing.all() == []
    assert nothing.rowcount == 3
    with pytest.raises(ValueError, match="exactly one row"):
        DriverResult([], rowcount=0).one()


class _Driver:
    def cursor(self) -> object:
        return object()


class _Pooled:
    """What the pool lends: the driver's connection and the record's lasting info."""

    def __init__(self, info: dict) -> None:
        self.info = info
        self.driver_connection = _Driver()


def test_cursor_is_kept_with_its_connection_and_renewed_with_a_new_one():
    info: dict = {}
    pooled = _Pooled(info)
    first = kept_cursor(pooled)
    assert kept_cursor(pooled) is first  # the next checkout of the same connection
    reconnected = _Pooled(info)  # the record replaced a broken connection
    assert kept_cursor(reconnected) is not first
