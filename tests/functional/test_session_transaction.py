"""State-changing requests load and write their session in one PostgreSQL transaction."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from myapp.sessions.database.requesttm import expects_writes
from myapp.sessions.request.factory import storage_key
from tests.support.cookies import token_of
from tests.support.counting import count_sql
from tests.support.views import Boom

pytestmark = pytest.mark.postgres

COOKIE = "session"


def _stored(handle):
    token = token_of(handle.app.cookies[COOKIE])
    return handle.store.load(storage_key(token), now=time.time())


def _left_in_transaction(handle) -> int:
    with handle.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )
        ).scalar()


def _verbs(statements) -> list[str]:
    return statements.verbs()


class Poster:
    """Sends POSTs with the session's CSRF token, as the site's forms do."""

    def __init__(self, handle) -> None:
        self.handle = handle
        handle.app.get("/_t/write?value=before")
        self.token = handle.app.get("/_t/csrf_form").json["token"]

    def __call__(self, path: str, headers: dict[str, str] | None = None, **kwargs):
        headers = {**(headers or {}), "X-CSRF-Token": self.token}
        return self.handle.app.post(path, headers=headers, **kwargs)


@pytest.fixture
def handle(make_app):
    handle = make_app("sql-postgres")
    handle.post = Poster(handle)
    return handle


def test_safe_and_unsafe_methods():
    assert not any(expects_writes(m) for m in ("GET", "head", "OPTIONS", "TRACE"))
    assert all(expects_writes(m) for m in ("POST", "PUT", "PATCH", "delete"))


def test_a_post_that_writes_is_one_transaction_in_two_round_trips(handle):
    version = _stored(handle).version
    with count_sql(handle.engine) as statements:
        handle.post("/_t/write?value=after")
    # No BEGIN or COMMIT: both statements went in one pipeline, and PostgreSQL runs
    # a pipeline's statements up to its one Sync as one (implicit) transaction
    # (tests/functional/test_pipeline_transactions.py). Two round trips: the rows of
    # the SELECT, then the UPDATE with the Sync.
    assert _verbs(statements) == ["SELECT", "UPDATE"]
    assert statements.pipelines == 1
    assert statements.round_trips == 2
    assert _stored(handle).version == version + 1
    assert handle.app.get("/_t/read").json["value"] == "after"
    assert _left_in_transaction(handle) == 0


def test_a_get_that_writes_stays_on_two_autocommit_statements(handle):
    with count_sql(handle.engine) as statements:
        handle.app.get("/_t/write?value=after")
    assert _verbs(statements) == ["SELECT", "UPDATE"]


def test_a_post_that_only_reads_commits_and_hands_its_connection_back(handle):
    held = handle.store.driver.held
    with count_sql(handle.engine) as statements:
        assert handle.post("/_t/read").json["value"] == "before"
    assert _verbs(statements) == ["SELECT"]
    assert statements.pipelines == 1  # its Sync ended the read's transaction
    assert _left_in_transaction(handle) == 0
    assert len(held) >= 1  # back among the held connections, not lost


def test_a_post_whose_view_raises_rolls_back_and_keeps_the_previous_value(handle):
    with count_sql(handle.engine) as statements, pytest.raises(Exception, match="the view failed"):
        handle.post("/_t/write_then_raise")
    verbs = _verbs(statements)  # the view's own INSERT is rolled back too
    assert verbs[0] == "SELECT"
    assert "UPDATE" not in verbs and "COMMIT" not in verbs
    assert _left_in_transaction(handle) == 0
    assert handle.app.get("/_t/read").json["value"] == "before"


def test_a_doomed_post_writes_nothing(handle):
    handle.post("/_t/write_then_doom")
    assert handle.app.get("/_t/read").json["value"] == "before"
    assert _left_in_transaction(handle) == 0


def test_a_resource_failing_after_the_committed_write_puts_the_old_value_back(handle):
    cookie = handle.app.cookies[COOKIE]
    with pytest.raises(Boom, match="refused to vote"):
        handle.post("/_t/write_then_other_resource_fails")
    assert handle.app.cookies[COOKIE] == cookie
    assert handle.app.get("/_t/read").json["value"] == "before"
    handle.post("/_t/write?value=after")
    assert handle.app.get("/_t/read").json["value"] == "after"


def test_a_failed_database_commit_keeps_the_previous_value(handle):
    # The view's own transaction fails at COMMIT (a deferred unique constraint); the
    # session was written into that transaction, so it is rolled back with it.
    with pytest.raises(Exception, match="uq_test_deferred_n"):
        handle.post("/_t/write_then_commit_fails")
    assert handle.app.get("/_t/read").json["value"] == "before"
    assert _left_in_transaction(handle) == 0


def test_view_data_and_session_commit_together(handle):
    with count_sql(handle.engine) as statements:
        handle.post("/_t/write_with_data")
    # The session's read transaction ends; the write joined the view's transaction.
    verbs = _verbs(statements)
    assert verbs[0] == "SELECT"
    assert "INSERT" in verbs and "UPDATE" in verbs
    assert handle.app.get("/_t/read").json["value"] == "persisted"
    assert _left_in_transaction(handle) == 0


def test_a_post_that_rotates_writes_both_rows_in_its_transaction(handle):
    before = _stored(handle)
    with count_sql(handle.engine) as statements:
        handle.post("/_t/rotate")
    verbs = _verbs(statements)
    # Two writes: the first turns the load's implicit transaction into an explicit
    # one (BEGIN keeps what ran before), the second commits it.
    assert verbs[:2] == ["SELECT", "BEGIN"] and verbs[-1] == "COMMIT"
    assert verbs.count("BEGIN") == 1 and verbs.count("COMMIT") == 1
    after = _stored(handle)
    assert after.key != before.key
    assert handle.store.load(before.key, time.time()) is None


def test_a_lost_race_is_refused_then_retried_on_fresh_data(make_app):
    # Another writer changes the session between this request's load and its write:
    # the version check refuses the write, pyramid_retry runs the request again.
    handle = make_app(
        "sql-postgres", **{"pyramid.includes": "tests.support.views tests.reliability.views"}
    )
    handle.post = Poster(handle)
    before = _stored(handle)
    with count_sql(handle.engine) as statements:
        response = handle.post("/_r/race_once?value=mine")
    assert response.json == {"attempt": 1}
    # Each attempt had its own session transaction, one pipeline each (a retry
    # reuses the environ).
    assert statements.pipelines == 2
    after = _stored(handle)
    assert after.version == before.version + 2  # the competing write, then ours once
    assert json.loads(after.data)["value"] == "mine"
    assert _left_in_transaction(handle) == 0


def test_a_database_failure_inside_the_transaction_answers_503_and_leaks_nothing(handle):
    held = handle.store.driver.held
    with handle.engine.connect() as conn:
        conn.execute(sa.text("ALTER TABLE user_sessions RENAME TO user_sessions_away"))
        conn.commit()
    try:
        handle.post("/_t/write?value=lost", status=503)
    finally:
        with handle.engine.connect() as conn:
            conn.execute(sa.text("ALTER TABLE user_sessions_away RENAME TO user_sessions"))
            conn.commit()
    assert _left_in_transaction(handle) == 0
    assert handle.post("/_t/write?value=back").json == {"value": "back"}
    assert len(held) >= 1


def _prepared_on(pooled) -> list[str]:
    return [
        row[0]
        for row in pooled.driver_connection.execute(
            "SELECT statement FROM pg_prepared_statements", prepare=False
        )
    ]


def test_psycopg_prepares_the_store_statements_itself_and_nothing_else_is_prepared(handle):
    for n in range(8):  # past psycopg's prepare_threshold (5)
        handle.post(f"/_t/write?value={n}")
    pooled = handle.store.driver.held.acquire()
    try:
        prepared = _prepared_on(pooled)
        # Prepared by psycopg (protocol-level, no PREPARE statement of ours), for the
        # store's own statements only.
        assert any("FROM user_sessions" in text for text in prepared)
        assert not any(text.lstrip().upper().startswith("PREPARE") for text in prepared)
    finally:
        handle.store.driver.held.release(pooled)
    with count_sql(handle.engine) as statements:
        handle.post("/_t/write?value=last")
    assert not {"PREPARE", "EXECUTE", "DEALLOCATE"} & set(statements.verbs())


HOSTILE = "'; DROP TABLE user_sessions; -- \\' \\\\ %(key)s %s $1 E'\\x00' \"quoted\" ünïcode 😀"


def test_values_bound_by_the_server_arrive_exactly_as_sent(handle):
    # No value is ever quoted into SQL text: psycopg sends them apart (extended protocol).
    agent = "Mozilla/5.0 '); DELETE FROM user_sessions; -- \\ %(data)s"
    handle.post("/_t/write", params={"value": HOSTILE}, headers={"User-Agent": agent})
    assert handle.app.get("/_t/read").json["value"] == HOSTILE
    assert _stored(handle).user_agent == agent
    assert sum(handle.store.count(time.time())) >= 1  # the table is still there


def test_binding_follows_the_request_not_its_environ(make_app):
    from pyramid.request import Request

    store = make_app("sql-postgres").store
    first = Request.blank("/_t/write", method="POST")
    retried = Request(first.environ)
    assert store.bind(first) is store.bind(first)
    assert store.bind(retried) is not store.bind(first)
    assert store.bind(retried).request is retried


@pytest.fixture
def poster(make_app):
    handle = make_app(
        "sql-postgres", **{"pyramid.includes": "tests.support.views tests.reliability.views"}
    )
    handle.post = Poster(handle)
    return handle


def test_a_read_only_post_whose_connection_dies_before_commit_still_answers(poster):
    # Nothing was written, so the failed COMMIT loses nothing: the answer stands.
    assert poster.post("/_r/lose_session_connection").json == {"value": "before"}
    assert _left_in_transaction(poster) == 0
    assert poster.post("/_t/write?value=after").json == {"value": "after"}
    assert poster.app.get("/_t/read").json["value"] == "after"


def test_a_post_whose_writes_lose_their_connection_answers_503_and_keeps_the_session(poster):
    poster.post("/_r/lose_session_connection?rotate=1", status=503)
    assert _left_in_transaction(poster) == 0
    # The rotation never happened: the old cookie still opens the old session.
    assert poster.app.get("/_t/read").json["value"] == "before"
