"""Requests that have nothing to keep store no session: one-off messages travel in a
signed cookie; new anonymous sessions are bounded per client address."""

from __future__ import annotations

import time

import pytest
from pyramid.interfaces import ISessionFactory
from webtest import TestApp

from myapp.sessions.request.flashcookie import MAX_AGE
from tests.support.site import add_to_cart, cart_lines, csrf_token, flashes, signed_in_as

pytestmark = pytest.mark.usefixtures("site_users")
STORES = ("sql-postgres", "redis", "memory")
FLASH_COOKIE = "session_flash"


def live_sessions(handle) -> int:
    return handle.store.count(time.time())[0]


def visitor(handle, address: str = "192.0.2.60") -> TestApp:
    return TestApp(handle.router, extra_environ={"REMOTE_ADDR": address})


@pytest.mark.parametrize("backend", STORES)
def test_anonymous_pages_sign_out_and_head_store_nothing(make_app, backend):
    handle = make_app(backend)
    before = live_sessions(handle)
    for _ in range(5):
        stranger = visitor(handle)
        stranger.get("/account/sessions", status=303)
        stranger.head("/account/sessions", status=303)
        token = csrf_token(stranger.get("/"))
        stranger.post("/signout", {"csrf_token": token}, status=303)
        TestApp(handle.router).post("/signout", status=303)  # no token, no cookie at all
        assert "session" not in stranger.cookies
    assert live_sessions(handle) == before


# Redis is left out where the throttle writes: its keys share the store's prefix.
@pytest.mark.parametrize("backend", ("sql-postgres", "memory"))
def test_a_failed_sign_in_stores_nothing_and_still_says_why(make_app, backend):
    handle = make_app(backend)
    before = live_sessions(handle)
    stranger = visitor(handle)
    token = csrf_token(stranger.get("/signin"))
    response = stranger.post(
        "/signin", {"csrf_token": token, "username": "alice", "password": "nope"}
    )
    assert "session" not in stranger.cookies and FLASH_COOKIE in stranger.cookies
    page = response.follow()
    assert flashes(page) == ["Wrong username or password."]
    assert page.html.find("input", {"name": "username"})["value"] == "alice"
    assert flashes(stranger.get("/signin")) == []  # said once
    assert FLASH_COOKIE not in stranger.cookies
    assert live_sessions(handle) == before
    # The same visitor then signs in, and another visitor is unaffected.
    token = csrf_token(stranger.get("/signin"))
    stranger.post(
        "/signin", {"csrf_token": token, "username": "alice", "password": "alice-password-1"}
    )
    assert signed_in_as(stranger.get("/")) == "alice"
    assert flashes(visitor(handle, "192.0.2.61").get("/")) == []


def test_the_sign_in_redirect_says_sign_in_first_without_a_row(make_app):
    handle = make_app("sql-postgres")
    before = live_sessions(handle)
    stranger = visitor(handle)
    page = stranger.get("/account/sessions").follow()
    assert flashes(page) == ["Please sign in first."]
    assert live_sessions(handle) == before


def test_messages_join_the_session_once_it_begins(make_app):
    handle = make_app("sql-postgres")
    stranger = visitor(handle)
    stranger.get("/account/sessions", status=303)  # a message in the cookie, unread
    add_to_cart(stranger, "teapot")
    assert "session" in stranger.cookies and FLASH_COOKIE not in stranger.cookies
    assert cart_lines(stranger.get("/cart")) == {"teapot": 1}


@pytest.mark.parametrize(
    "value",
    ["garbage", "a.b", "x" * 5000, "\u00e9.\u00e9", "eyJ0IjoxLCJmIjp7fX0.forged"],
)
def test_a_forged_or_garbled_flash_cookie_is_ignored(make_app, value):
    handle = make_app("memory")
    stranger = visitor(handle)
    page = stranger.get("/", headers={"Cookie": f"{FLASH_COOKIE}={value}"})
    assert page.status_int == 200 and flashes(page) == []
    assert stranger.get("/").status_int == 200


def test_an_old_flash_cookie_is_ignored(make_app):
    handle = make_app("memory")
    cookie = handle.registry.getUtility(ISessionFactory).flash_cookie
    old = cookie.dumps({"_f_": ["stale"]}, time.time() - MAX_AGE - 5)
    fresh = cookie.dumps({"_f_": ["fresh"]}, time.time())
    assert flashes(visitor(handle).get("/", headers={"Cookie": f"{FLASH_COOKIE}={old}"})) == []
    page = visitor(handle).get("/", headers={"Cookie": f"{FLASH_COOKIE}={fresh}"})
    assert flashes(page) == ["fresh"]


@pytest.mark.parametrize("backend", ("sql-postgres", "memory"))
def test_new_anonymous_sessions_are_bounded_per_address(make_app, backend):
    handle = make_app(backend, **{"myapp.anonymous_sessions_per_address": "3"})
    address = f"198.51.100.{int(time.time() * 1000) % 250}"
    before = live_sessions(handle)
    for _ in range(3):
        add_to_cart(visitor(handle, address), "teapot")
    refused = visitor(handle, address)
    token = csrf_token(refused.get("/"))
    response = refused.post("/cart/add", {"csrf_token": token, "product": "teapot"}, status=429)
    assert int(response.headers["Retry-After"]) > 0
    assert "session" not in refused.cookies
    assert live_sessions(handle) == before + 3
    # The visitor is still served; another address, and sessions that exist, go on.
    assert refused.get("/").status_int == 200
    add_to_cart(visitor(handle, "198.51.100.251"), "teapot")
    assert live_sessions(handle) == before + 4


def test_a_new_session_is_admitted_when_the_counters_cannot_count(make_app, caplog):
    handle = make_app("sql-postgres", **{"myapp.anonymous_sessions_per_address": "1"})
    with handle.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE signin_throttle RENAME TO signin_throttle_gone")
    try:
        for _ in range(2):  # past the bound, were it counted
            shopper = visitor(handle, "198.51.100.252")
            add_to_cart(shopper, "teapot")
            assert cart_lines(shopper.get("/cart")) == {"teapot": 1}
    finally:
        with handle.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE signin_throttle_gone RENAME TO signin_throttle")
    assert "sign-in throttling cannot use the 'sql' store" in caplog.text
