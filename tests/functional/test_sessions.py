"""The session layer through WebTest, the same suite on every store."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import sqlalchemy as sa
from webtest import TestApp

from myapp.sessions.request.factory import storage_key
from tests.conftest import SECRET
from tests.support.cookies import token_of
from tests.support.counting import RedisCommandLog, count_sql
from tests.support.views import Boom

COOKIE = "session"


def cookie_token(app) -> str:
    value = app.app.cookies[COOKIE]
    return token_of(value)


def stored(app, token: str):
    return app.store.load(storage_key(token), now=time.time())


def count_sessions(app) -> int:
    return sum(app.store.count(time.time()))


def count_marks(app, note: str) -> int:
    with app.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM test_marks WHERE note = :n"), {"n": note}
        ).scalar()


class TestEveryStore:
    def test_session_implements_isession(self, app):
        assert app.app.get("/_t/isession").json == {"verified": True}

    def test_untouched_session_sets_no_cookie_and_calls_no_store(self, app):
        app.app.get("/_t/write?value=a")
        with count_sql(app.engine) as statements:
            log = RedisCommandLog(app.store.client) if app.backend == "redis" else None
            response = app.app.get("/_t/untouched")
            if log:
                log.restore()
        assert "Set-Cookie" not in response.headers
        assert len(statements) == 0
        if log:
            assert len(log) == 0

    def test_unchanged_session_is_not_rewritten_within_reissue_time(self, app):
        app.app.get("/_t/write?value=a")
        token = cookie_token(app)
        version = stored(app, token).version
        log = RedisCommandLog(app.store.client) if app.backend == "redis" else None
        with count_sql(app.engine) as statements:
            for _ in range(3):
                response = app.app.get("/_t/read")
                assert response.json["value"] == "a"
                assert "Set-Cookie" not in response.headers
        if app.backend.startswith("sql"):
            assert statements.writes() == []
            assert len(statements.reads()) == 3
        if log:
            log.restore()
            assert log.commands == ["GET"] * 3
        assert stored(app, token).version == version

    def test_write_persists_and_cookie_is_not_the_stored_key(self, app):
        app.app.get("/_t/write?value=hello")
        token = cookie_token(app)
        record = stored(app, token)
        assert record is not None
        assert record.key == storage_key(token) != token
        assert '"hello"' in record.data
        assert app.app.get("/_t/read").json == {"value": "hello", "new": False}

    def test_nested_change_is_saved_without_changed(self, app):
        app.app.get("/_t/write_nested?item=a")
        app.app.get("/_t/write_nested?item=b")
        assert app.app.get("/_t/write_nested?item=c").json == {"items": ["a", "b", "c"]}

    def test_write_then_raise_leaves_nothing_behind(self, app):
        with pytest.raises(Exception, match="the view failed after writing"):
            app.app.get("/_t/write_then_raise")
        assert COOKIE not in app.app.cookies
        assert count_marks(app, "must-not-persist") == 0

    def test_write_then_raise_keeps_the_previous_value(self, app):
        app.app.get("/_t/write?value=before")
        with pytest.raises(Exception, match="the view failed"):
            app.app.get("/_t/write_then_raise")
        assert app.app.get("/_t/read").json["value"] == "before"

    def test_doomed_transaction_does_not_persist_the_session(self, app):
        app.app.get("/_t/write?value=before")
        app.app.get("/_t/write_then_doom")
        assert app.app.get("/_t/read").json["value"] == "before"

    def test_doomed_new_session_sets_no_cookie(self, app):
        response = app.app.get("/_t/write_then_doom")
        assert "Set-Cookie" not in response.headers
        assert app.app.get("/_t/read").json == {"value": None, "new": True}

    def test_failed_commit_leaves_neither_session_nor_cookie(self, app):
        if app.backend == "sql-sqlite":
            pytest.skip("SQLite cannot defer a unique constraint to COMMIT")
        app.app.get("/_t/write?value=before")
        cookie = app.app.cookies[COOKIE]
        with pytest.raises(Exception, match="uq_test_deferred_n"):
            app.app.get("/_t/write_then_commit_fails")
        assert app.app.cookies[COOKIE] == cookie
        # Redis and memory wrote when the transaction voted; the abort undid it.
        assert app.app.get("/_t/read").json["value"] == "before"

    def test_resource_failing_after_the_session_write_undoes_it(self, app):
        # The view did no database work, so even the sql store wrote when the
        # transaction voted; the failure that followed put the old value back.
        app.app.get("/_t/write?value=before")
        cookie = app.app.cookies[COOKIE]
        with pytest.raises(Boom, match="refused to vote"):
            app.app.get("/_t/write_then_other_resource_fails")
        assert app.app.cookies[COOKIE] == cookie
        assert app.app.get("/_t/read").json["value"] == "before"
        app.app.get("/_t/write?value=after")
        assert app.app.get("/_t/read").json["value"] == "after"

    def test_resource_failing_after_a_new_session_write_leaves_no_session(self, app):
        rows_before = count_sessions(app)
        with pytest.raises(Boom, match="refused to vote"):
            app.app.get("/_t/write_then_other_resource_fails")
        assert COOKIE not in app.app.cookies
        assert count_sessions(app) == rows_before

    def test_failed_commit_of_a_new_session_stores_nothing(self, app):
        if app.backend == "sql-sqlite":
            pytest.skip("SQLite cannot defer a unique constraint to COMMIT")
        with pytest.raises(Exception, match="uq_test_deferred_n"):
            app.app.get("/_t/write_then_commit_fails")
        assert COOKIE not in app.app.cookies

    def test_session_first_touched_after_commit_is_written_in_its_own_transaction(self, app):
        response = app.app.get("/_t/touch_in_callback")
        assert COOKIE in response.headers["Set-Cookie"]
        assert app.app.get("/_t/read").json["value"] == "from-callback"
        if app.backend in ("sql-postgres", "sql-pgbouncer"):
            with app.engine.connect() as conn:
                idle = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction'"
                    )
                ).scalar()
            assert idle == 0

    def test_view_data_and_session_commit_together(self, app):
        app.app.get("/_t/write_with_data")
        assert app.app.get("/_t/read").json["value"] == "persisted"
        assert count_marks(app, "persisted") >= 1

    def test_invalidate_removes_the_record_and_the_cookie(self, app):
        app.app.get("/_t/write?value=a")
        token = cookie_token(app)
        response = app.app.get("/_t/invalidate")
        assert stored(app, token) is None
        assert re.search(rf"{COOKIE}=;", response.headers["Set-Cookie"])
        assert app.app.get("/_t/read").json == {"value": None, "new": True}

    def test_replaying_an_invalidated_cookie_gets_a_fresh_session(self, app):
        app.app.get("/_t/write?value=secret")
        old_cookie = app.app.cookies[COOKIE]
        app.app.get("/_t/invalidate")
        app.app.set_cookie(COOKIE, old_cookie)
        assert app.app.get("/_t/read").json == {"value": None, "new": True}

    def test_invalidate_then_write_starts_a_new_session(self, app):
        app.app.get("/_t/write?value=a")
        old = cookie_token(app)
        app.app.get("/_t/invalidate_and_write")
        new = cookie_token(app)
        assert new != old
        assert stored(app, old) is None
        assert app.app.get("/_t/read").json["value"] == "after-invalidate"

    def test_rotate_keeps_data_under_a_new_token(self, app):
        app.app.get("/_t/write?value=cart")
        old = cookie_token(app)
        app.app.get("/_t/rotate")
        new = cookie_token(app)
        assert new != old
        assert stored(app, old) is None
        assert app.app.get("/_t/read").json["value"] == "cart"

    def test_ending_all_sessions_of_a_user(self, make_app, backend):
        handle = make_app(backend)
        browser_a, browser_b = handle.app, TestApp(handle.router)  # one site, two browsers
        user = f"alice-{uuid.uuid4().hex[:8]}"  # the database is shared by the whole run
        browser_a.get(f"/_t/login?user={user}")
        browser_b.get(f"/_t/login?user={user}")
        assert len(handle.store.list_user(user, time.time())) == 2
        assert handle.store.delete_user(user) == 2
        assert browser_a.get("/_t/read").json["new"] is True
        assert browser_b.get("/_t/read").json["new"] is True

    def test_bad_value_is_refused_when_set(self, app):
        assert app.app.get("/_t/bad_value").text.startswith("refused: session['bad']")

    def test_oversize_session_is_refused_not_truncated(self, make_app, backend, caplog):
        handle = make_app(backend, **{"session.max_size": 1024})
        handle.app.get("/_t/write?value=small")
        response = handle.app.get("/_t/big?size=5000", status=413)
        assert "too large" in response.text
        assert "more than session.max_size (1024)" in caplog.text
        assert handle.app.get("/_t/read").json["value"] == "small"

    def test_csrf_with_the_session_storage_policy(self, app):
        token = app.app.get("/_t/csrf_form").json["token"]
        assert app.app.post("/_t/csrf_post", {"csrf_token": token}).json == {"posted": True}
        app.app.post("/_t/csrf_post", {"csrf_token": "wrong"}, status=400)


def test_read_before_the_transaction_holds_no_connection_during_the_view(make_app):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=a")
    with count_sql(handle.engine) as statements:
        report = handle.app.get("/_t/read_then_report").json
    assert report == {"value": "a", "checked_out": 0, "dbsession": False}
    assert len(statements) == 1


def test_read_after_the_transaction_began_joins_it(make_app):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=a")
    with count_sql(handle.engine) as statements:
        report = handle.app.get("/_t/begin_then_read").json
    assert report == {"value": "a", "checked_out": 1}  # no second connection
    assert len(statements.reads()) == 2


def test_write_without_database_work_is_one_statement_and_no_request_transaction(make_app):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=a")
    token = cookie_token(handle)
    with count_sql(handle.engine) as statements:
        handle.app.get("/_t/write?value=b")
    assert [s.split(None, 1)[0] for s in statements.statements] == ["SELECT", "UPDATE"]
    assert stored(handle, token).version == 2
    # Nothing was begun for the request: no connection is left checked out either.
    assert handle.engine.pool.checkedout() == 0


def test_write_after_database_work_joins_the_request_transaction(make_app):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=a")
    with count_sql(handle.engine) as statements:
        handle.app.get("/_t/write_with_data")
    verbs = [s.split(None, 1)[0] for s in statements.statements]
    assert verbs == ["SELECT", "INSERT", "UPDATE"]
    assert handle.app.get("/_t/read").json["value"] == "persisted"


BAD_COOKIES = {
    "garbage": "garbage",
    "tampered": None,  # built from a real cookie below
    "truncated": None,
    "oversize": "a" * 9000,
    "non_ascii": "sessión=ü",
    "empty": "",
    "dots": "." * 87,
}


@pytest.mark.parametrize("kind", sorted(BAD_COOKIES))
def test_bad_cookie_gets_a_fresh_session(make_app, kind):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=mine")
    real = handle.app.cookies[COOKIE]
    value = {
        "tampered": real[:-2] + ("AA" if not real.endswith("AA") else "BB"),
        "truncated": real[:40],
    }.get(kind, BAD_COOKIES[kind])
    handle.app.cookiejar.clear()
    response = handle.app.get(
        "/_t/read", headers={"Cookie": f"{COOKIE}={value}".encode().decode("latin-1")}
    )
    assert response.status_int == 200
    assert response.json == {"value": None, "new": True}


def test_duplicate_cookies_never_error(make_app):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=mine")
    real = handle.app.cookies[COOKIE]
    handle.app.cookiejar.clear()
    response = handle.app.get("/_t/read", headers={"Cookie": f"{COOKIE}=junk; {COOKIE}={real}"})
    assert response.status_int == 200
    response = handle.app.get("/_t/read", headers={"Cookie": f"{COOKIE}={real}; {COOKIE}=junk"})
    assert response.status_int == 200
    assert response.json["new"] is True


def test_a_cookie_signed_with_a_retired_secret_still_listed_works(make_app):
    old = make_app("sql-postgres")
    old.app.get("/_t/write?value=mine")
    cookie = old.app.cookies[COOKIE]
    newest = "rotated-secret-" + "Zq7Xk2Vb9Lm4Np8Rt3Wy6Hc1Jd5Gf0Ps"
    rotated = make_app("sql-postgres", **{"session.secret": f"{newest} {SECRET}"})
    rotated.app.set_cookie(COOKIE, cookie)
    assert rotated.app.get("/_t/read").json == {"value": "mine", "new": False}
    rotated.app.get("/_t/write?value=again")
    assert rotated.app.cookies[COOKIE] != cookie  # re-signed with the newest secret
    assert cookie_token(rotated) == token_of(cookie)
    dropped = make_app("sql-postgres", **{"session.secret": newest})
    dropped.app.set_cookie(COOKIE, cookie)
    assert dropped.app.get("/_t/read").json == {"value": None, "new": True}


def test_a_tampered_cookie_gets_a_fresh_session(make_app):
    handle = make_app("sql-postgres")
    handle.app.get("/_t/write?value=mine")
    real = handle.app.cookies[COOKIE]
    handle.app.cookiejar.clear()
    for tampered in (("B" if real[0] == "A" else "A") + real[1:], real[:-1] + "." + real[-1]):
        response = handle.app.get("/_t/read", headers={"Cookie": f"{COOKIE}={tampered}"})
        assert response.status_int == 200
        assert response.json == {"value": None, "new": True}
    # The real cookie still carries its session, and another visitor is unaffected.
    response = handle.app.get("/_t/read", headers={"Cookie": f"{COOKIE}={real}"})
    assert response.json == {"value": "mine", "new": False}
    other = make_app("sql-postgres")
    other.app.get("/_t/write?value=theirs")
    assert other.app.get("/_t/read").json == {"value": "theirs", "new": False}
