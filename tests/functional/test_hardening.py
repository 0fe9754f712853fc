"""The site against a hostile internet: headers, hosts, redirects, anonymous visitors,
what sign-in keeps, server errors, and inputs that must never give a 5xx."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from webob import Request
from webtest import TestApp

from myapp.accounts import create_user, find_user
from myapp.security import CONTENT_SECURITY_POLICY
from tests.support.site import (
    USERS,
    add_to_cart,
    cart_lines,
    csrf_token,
    flashes,
    new_user,
    post_form,
    sign_in,
    signed_in_as,
)

COOKIE = "session"
CSRF_COOKIE = "session_csrf"
pytestmark = pytest.mark.usefixtures("site_users")


def live_sessions(handle) -> int:
    return handle.store.count(time.time())[0]


def session_cookies(response) -> list[str]:
    return [c for c in response.headers.getall("Set-Cookie") if c.startswith(f"{COOKIE}=")]


# -- anonymous visitors ----------------------------------------------------------


def test_browsing_without_a_cookie_stores_no_session(app):
    before = live_sessions(app)
    for path in ("/", "/cart", "/signin", "/", "/signin?next=/cart"):
        response = TestApp(app.router).get(path)
        assert session_cookies(response) == []
    assert live_sessions(app) == before


def test_the_session_begins_with_the_first_change_and_csrf_still_holds(app):
    visitor = TestApp(app.router)
    token = csrf_token(visitor.get("/"))
    assert CSRF_COOKIE in visitor.cookies and COOKIE not in visitor.cookies
    visitor.post("/cart/add", {"product": "teapot", "csrf_token": "forged" * 6}, status=400)
    visitor.post("/cart/add", {"product": "teapot"}, status=400)
    assert COOKIE not in visitor.cookies
    visitor.post("/cart/add", {"product": "teapot", "quantity": "1", "csrf_token": token})
    assert COOKIE in visitor.cookies
    page = visitor.get("/cart")
    assert cart_lines(page) == {"teapot": 1}
    assert csrf_token(page) == token  # the session took the cookie's token over

    stranger = TestApp(app.router)
    stranger.get("/")  # a CSRF cookie of its own
    stranger.post("/cart/add", {"product": "teapot", "csrf_token": token}, status=400)


def test_sign_in_without_a_session_needs_the_csrf_cookie(make_app):
    handle = make_app("sql-postgres")
    visitor = TestApp(handle.router)
    token = csrf_token(visitor.get("/signin"))
    fields = {"username": "alice", "password": USERS["alice"], "csrf_token": token}
    attacker = TestApp(handle.router)  # a forged cross-site form: no CSRF cookie of the victim
    attacker.post("/signin", fields, status=400)
    assert signed_in_as(visitor.post("/signin", fields).follow()) == "alice"


def test_browsing_with_a_session_does_not_rewrite_it(app):
    add_to_cart(app.app, "cups")
    cookie = app.app.cookies[COOKIE]
    for path in ("/", "/cart", "/signin"):
        response = app.app.get(path)
        assert "Set-Cookie" not in response.headers, path
    assert app.app.cookies[COOKIE] == cookie
    assert cart_lines(app.app.get("/cart")) == {"cups": 1}


# -- headers ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/cart", "/signin", "/account/sessions"])
def test_pages_that_read_the_session_are_never_cached_by_others(make_app, path):
    handle = make_app("redis")
    sign_in(handle.app)
    response = handle.app.get(path)
    assert "no-store" in response.headers["Cache-Control"]
    assert "Cookie" in response.headers["Vary"]
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers


def test_static_files_and_errors_get_the_headers_hsts_with_secure_cookies(make_app):
    handle = make_app("memory", **{"session.cookie_secure": "true"})
    css = handle.app.get("/static/site.css")
    assert css.headers["Cache-Control"] == "max-age=3600"  # no session: cacheable
    assert "Vary" not in css.headers
    missing = handle.app.get("/nope", status=404)
    for response in (css, missing):
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_pages_have_no_inline_script_or_style(make_app):
    handle = make_app("memory")
    sign_in(handle.app)
    for path in ("/", "/cart", "/signin", "/account/sessions", "/nope"):
        html = handle.app.get(path, status="*").html
        assert html.find("script") is None
        assert html.find("style") is None
        assert not html.select("[style]")
        assert not [
            tag for tag in html.find_all(True) if any(a.startswith("on") for a in tag.attrs)
        ]


def test_foreign_host_headers_get_400(make_app, caplog):
    caplog.set_level(logging.INFO, logger="myapp.security")
    handle = make_app("memory", **{"myapp.allowed_hosts": "shop.example.org .example.net"})
    for host in ("shop.example.org", "SHOP.example.org:8443", "www.example.net", "example.net"):
        assert handle.app.get("/", headers={"Host": host}).status_int == 200
    for host in ("evil.example", "shop.example.org.evil.example", "", "[::1]", "a@b", "\u00e9"):
        response = Request.blank("/", environ={"HTTP_HOST": host}).get_response(handle.router)
        assert response.status_int == 400
        assert "X-Content-Type-Options" in response.headers
        assert session_cookies(response) == []
    refusals = [r for r in caplog.records if "not in myapp.allowed_hosts" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.WARNING] + [logging.INFO] * 5


# -- next, sign-in and what it keeps ---------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\u3000/evil.example",
        "/\r\nSet-Cookie: x=1",
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/caf\u00e9",
        "/a b",
        "/" + "x" * 3000,
    ],
)
def test_odd_next_falls_back_home_after_signing_in(make_app, target):
    handle = make_app("sql-postgres")
    page = handle.app.get("/signin", params={"next": target})
    assert page.html.find("input", {"name": "next"})["value"] == ""
    response = handle.app.post(
        "/signin",
        {
            "csrf_token": csrf_token(page),
            "username": "alice",
            "password": USERS["alice"],
            "next": target,
        },
    )
    assert response.status_int == 303
    assert response.location == "http://localhost/"
    assert COOKIE in handle.app.cookies


def test_good_next_is_kept():
    from myapp.auth import safe_next

    assert safe_next("/account/sessions?x=%20y#top", "") == "/account/sessions?x=%20y#top"


def test_sign_in_keeps_only_the_cart(make_app):
    handle = make_app("sql-postgres")
    add_to_cart(handle.app, "teapot", 2)
    handle.app.get("/_t/write?value=planted")
    page = sign_in(handle.app)
    assert signed_in_as(page) == "alice"
    assert cart_lines(handle.app.get("/cart")) == {"teapot": 2}
    assert handle.app.get("/_t/read").json["value"] is None


def test_sign_in_renews_a_hash_made_with_other_parameters(make_app):
    handle = make_app("sql-postgres")
    older = PasswordHasher.from_parameters(CHEAPEST)
    older_params = PasswordHasher(
        time_cost=2, memory_cost=older.memory_cost, parallelism=1, hash_len=16, salt_len=8
    )
    name, password = new_user(handle.engine, "rehash")
    with handle.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM users WHERE username = :n"), {"n": name})
        create_user(conn, name, password, hasher=older_params)
        before = find_user(conn, name)[1]
    sign_in_page = handle.app.get("/signin")
    handle.app.post(
        "/signin",
        {"csrf_token": csrf_token(sign_in_page), "username": name, "password": password},
    )
    with handle.engine.connect() as conn:
        after = find_user(conn, name)[1]
    assert after != before and "t=2" in before
    assert not older.check_needs_rehash(after)
    older.verify(after, password)


# -- server errors -----------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_answer_persists_no_session_change(app, status):
    app.app.get("/_t/write?value=before")
    app.app.get(f"/_t/write_then_answer_500?status={status}", status=status)
    assert app.app.get("/_t/read").json["value"] == "before"
    with app.engine.connect() as conn:
        marks = conn.execute(
            sa.text("SELECT count(*) FROM test_marks WHERE note = 'must-not-persist'")
        ).scalar()
    assert marks == 0


def test_a_5xx_answer_on_a_new_session_sets_no_cookie(app):
    response = app.app.get("/_t/write_then_answer_500", status=500)
    assert session_cookies(response) == []


def test_a_4xx_answer_still_saves_the_session(app):
    app.app.get("/_t/write?value=before")
    app.app.get("/signin", status=200)
    app.app.post("/cart/add", {"product": "x"}, status=400)  # CSRF refused
    assert app.app.get("/_t/read").json["value"] == "before"


# -- no input gives a 5xx ------------------------------------------------------------


HOSTILE = [
    ("GET", "/signin?next=%00", None),
    ("GET", "/signin?next=%C0%AF", None),
    ("GET", "/%E3%80%80", None),
    ("GET", "/cart?x=%ff", None),
    ("POST", "/signin", {"username": "\udcff", "password": "x"}),
    # Below WebOb's 10 KB in-memory body limit: a temporary file would outlive the test.
    ("POST", "/signin", {"username": "a" * 3000, "password": "b" * 3000}),
    ("POST", "/signin", {"username": "alice", "password": "\x00"}),
    ("POST", "/cart/add", {"product": "\x00", "quantity": "1e9"}),
    ("POST", "/account/sessions/end", {"key": "\u3000"}),
]


@pytest.mark.parametrize(("method", "path", "fields"), HOSTILE)
@pytest.mark.parametrize("cookie", [None, "session=\u00e9\x00; session_csrf=\u00e9"])
def test_hostile_input_never_gets_a_5xx(make_app, method, path, fields, cookie):
    handle = make_app("sql-postgres")
    visitor = TestApp(handle.router, extra_environ={"REMOTE_ADDR": "192.0.2.77"})
    headers = {"Cookie": cookie.encode("latin-1", "replace").decode("latin-1")} if cookie else {}
    if method == "GET":
        response = visitor.get(path, headers=headers, status="*", expect_errors=True)
    else:
        token = csrf_token(visitor.get("/signin"))
        body = {k: v.encode("utf-8", "surrogatepass") for k, v in fields.items()}
        response = visitor.post(
            path, {"csrf_token": token, **body}, headers=headers, status="*", expect_errors=True
        )
    assert response.status_int < 500, response.text[:500]


def test_flash_after_wrong_password_is_shown(make_app):
    handle = make_app("memory")
    page = post_form(handle.app, "/signin", "/signin", username="alice", password="nope")
    assert flashes(page) == ["Wrong username or password."]
