"""Which driver errors and server reports retire the pooled connections (no server)."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from sqlalchemy.exc import InternalError

from myapp.sessions.database.pool import (
    FENCE_KEY,
    PrimaryFence,
    is_read_only_error,
    note_failure,
    retired,
    serves_read_only,
    watch_for_failover,
)
from myapp.sessions.stores.sqlstore.connection import store_error


class _PGconn:
    def __init__(self, **status: str) -> None:
        self.status = {name.encode(): value.encode() for name, value in status.items()}

    def parameter_status(self, name: bytes) -> bytes | None:
        return self.status.get(name)


class _Connection:
    closed = False

    def __init__(self, **status: str) -> None:
        self.pgconn = _PGconn(**status)


def test_sqlstate_25006_is_a_read_only_refusal_wrapped_or_not():
    error = psycopg.errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only")
    assert is_read_only_error(error)
    assert is_read_only_error(InternalError("UPDATE", {}, error))
    assert not is_read_only_error(psycopg.OperationalError("connection refused"))
    assert not is_read_only_error(None)


def test_a_server_reporting_hot_standby_or_read_only_serves_read_only():
    both = (b"in_hot_standby", b"default_transaction_read_only")
    assert serves_read_only(_Connection(in_hot_standby="on"), both)
    assert serves_read_only(_Connection(default_transaction_read_only="on"), both)
    assert not serves_read_only(_Connection(default_transaction_read_only="on"), both[:1])
    assert not serves_read_only(_Connection(in_hot_standby="off"), both)
    assert not serves_read_only(object(), both)


def test_target_session_attrs_decides_which_reports_retire_a_connection():
    expected = {
        "read-write": (b"in_hot_standby", b"default_transaction_read_only"),
        "primary": (b"in_hot_standby",),
        "any": (),
    }
    for attrs, reports in expected.items():
        engine = sa.create_engine(f"postgresql+psycopg://u@h/db?target_session_attrs={attrs}")
        assert watch_for_failover(engine).refused_reports == reports
    plain = sa.create_engine("postgresql+psycopg://u@h/db")
    assert watch_for_failover(plain).refused_reports == ()


def test_a_read_only_refusal_retires_every_connection_opened_before_it():
    fence = PrimaryFence()
    before = {FENCE_KEY: (fence, fence.generation)}
    assert not retired(before, _Connection())
    note_failure(before, psycopg.OperationalError("server closed the connection"))
    assert not retired(before, _Connection())
    note_failure(before, psycopg.errors.ReadOnlySqlTransaction("read-only"))
    after = {FENCE_KEY: (fence, fence.generation)}
    assert retired(before, _Connection())
    assert not retired(after, _Connection())
    assert not retired({}, _Connection())  # not stamped (not PostgreSQL)


def test_only_a_read_write_url_retires_a_connection_that_reports_read_only():
    lenient, standbys, strict = PrimaryFence(), PrimaryFence("primary"), PrimaryFence("read-write")
    read_only = _Connection(default_transaction_read_only="on")
    assert not retired({FENCE_KEY: (lenient, 0)}, read_only)
    # libpq's "primary" connects to a fenced primary again: retiring would loop.
    assert not retired({FENCE_KEY: (standbys, 0)}, read_only)
    assert retired({FENCE_KEY: (strict, 0)}, read_only)
    assert strict.generation == 1  # and the others opened with it go too
    assert retired({FENCE_KEY: (standbys, 0)}, _Connection(in_hot_standby="on"))


def test_a_read_only_refusal_is_a_store_error_of_its_own_kind():
    error = psycopg.errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only")
    assert store_error(error).kind == "read_only"
    assert store_error(InternalError("UPDATE", {}, error)).kind == "read_only"
