"""Hostile cookies and values: never adopted, never a 5xx, never in the logs."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp

from myapp.sessions.request.factory import CookieSigner, new_token
from myapp.sessions.request.session import check_value, dumps, loads
from tests.conftest import SECRET
from tests.support.cookies import token_of

INCLUDES = "tests.support.views tests.reliability.views"
OLD_SECRET = "Qw7Xn2Lp9Rk4Tz1Vm8Bc3Hs6Jd0Fg5Ye2Ua7Io"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _accepted(value: object) -> bool:
    try:
        check_value("k", value)
    except (TypeError, ValueError):
        return False
    return True


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_every_accepted_value_round_trips_exactly(data):
    data = {k: v for k, v in data.items() if _accepted(k) and _accepted(v)}
    assert loads(dumps(data)) == data
    assert json.loads(dumps(data)) == data


@pytest.fixture(scope="module")
def memory_app(postgres_url):
    import myapp
    from tests.conftest import base_settings

    settings = base_settings(
        **{
            "sqlalchemy.url": postgres_url,
            "session.backends": "memory",
            "pyramid.includes": INCLUDES,
        }
    )
    return TestApp(myapp.main({}, **settings))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_cookie_bytes_give_a_fresh_session_and_a_2xx(memory_app, raw):
    value = raw.decode("latin-1").replace("\r", "").replace("\n", "")
    response = memory_app.get(
        "/_t/read", headers={"Cookie": f"session={value}"}, expect_errors=True
    )
    assert response.status_int == 200
    assert response.json == {"value": None, "new": True}


@pytest.mark.postgres
def test_a_validly_signed_unknown_id_is_never_adopted(make_app):
    handle = make_app("sql-postgres", **{"pyramid.includes": INCLUDES})
    chosen = new_token()
    cookie = CookieSigner((SECRET.encode(),)).dumps(chosen)
    handle.app.set_cookie("session", cookie)
    handle.app.get("/_t/write?value=x")
    assert chosen not in handle.app.cookies["session"]


@pytest.mark.postgres
def test_sign_in_rotates_the_id_and_the_old_one_is_dead(make_app):
    handle = make_app("sql-postgres", **{"pyramid.includes": INCLUDES})
    handle.app.get("/_t/write?value=x")
    before = handle.app.cookies["session"]
    handle.app.get("/_t/login?user=rotating-erin")
    assert handle.app.cookies["session"] != before
    replay = TestApp(handle.router)
    replay.set_cookie("session", before)
    assert replay.get("/_t/read").json["new"] is True


@pytest.mark.postgres
def test_replay_after_invalidate_gets_a_fresh_session(make_app):
    handle = make_app("sql-postgres", **{"pyramid.includes": INCLUDES})
    handle.app.get("/_t/write?value=x")
    stolen = handle.app.cookies["session"]
    handle.app.get("/_t/invalidate")
    replay = TestApp(handle.router)
    replay.set_cookie("session", stolen)
    assert replay.get("/_t/read").json == {"value": None, "new": True}


@pytest.mark.postgres
def test_secret_rotation_accepts_old_only_while_listed_and_resigns(make_app):
    old = make_app("sql-postgres", **{"session.secret": OLD_SECRET})
    old.app.get("/_t/write?value=kept")
    cookie = old.app.cookies["session"]

    rotated = make_app("sql-postgres", **{"session.secret": f"{SECRET} {OLD_SECRET}"})
    rotated.app.set_cookie("session", cookie)
    response = rotated.app.get("/_t/read")
    assert response.json["value"] == "kept"
    resigned = rotated.app.cookies["session"]
    assert resigned != cookie and token_of(resigned) == token_of(cookie)

    dropped = make_app("sql-postgres", **{"session.secret": SECRET})
    dropped.app.set_cookie("session", cookie)
    assert dropped.app.get("/_t/read").json["new"] is True


@pytest.mark.postgres
def test_no_token_secret_or_data_reaches_the_logs(make_app, caplog):
    caplog.set_level(logging.DEBUG)
    handle = make_app("sql-postgres", **{"pyramid.includes": INCLUDES})
    handle.app.get("/_t/write?value=PRIVATE-DATA-42")
    token = handle.app.cookies["session"]
    handle.app.get("/_t/login?user=bob")
    handle.app.get("/_t/big?size=40000", status=413)
    bad = TestApp(handle.router)
    bad.set_cookie("session", token[:-3] + "AAA")
    bad.get("/_t/read")
    text = caplog.text
    for secret in (token, token_of(token), SECRET, "PRIVATE-DATA-42"):
        assert secret not in text


@pytest.mark.postgres
def test_oversize_session_is_refused_and_nothing_is_stored(make_app):
    handle = make_app("sql-postgres", **{"pyramid.includes": INCLUDES, "session.max_size": "1024"})
    response = handle.app.get("/_t/big?size=5000", status=413)
    assert "too large" in response.text
    assert "session" not in handle.app.cookies
    assert handle.app.get("/_t/read").json["new"] is True
