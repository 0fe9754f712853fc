""" "Your sessions": listing a user's sessions and ending one, or all others, on every store."""

from __future__ import annotations

import re
import time

from webtest import TestApp

from myapp.sessions.request.factory import storage_key
from tests.support.cookies import token_of
from tests.support.site import csrf_token, flashes, new_user, post_form, sign_in, signed_in_as

COOKIE = "session"
LAPTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
TABLET = (
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
OTHER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0"


def browser(handle, agent: str) -> TestApp:
    return TestApp(handle.router, extra_environ={"HTTP_USER_AGENT": agent})


def key_of(app: TestApp) -> str:
    return storage_key(token_of(app.cookies[COOKIE]))


def accounts(handle) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two fresh users: this module counts sessions, so no test may see another's."""
    return new_user(handle.engine, "alice"), new_user(handle.engine, "bob")


def listed(page) -> list[tuple[str, bool]]:
    """(device name, this device?) of every row; only this device's row says so."""
    rows = []
    for row in page.html.select("tr.session"):
        current = "current" in row["class"]
        assert (row.find(class_="this-device") is not None) == current
        rows.append((row.find(class_="agent").get_text(" ", strip=True), current))
    return rows


def test_anonymous_visitors_are_sent_to_sign_in(app):
    page = app.app.get("/account/sessions", status=303).follow()
    assert page.request.path == "/signin"
    assert flashes(page) == ["Please sign in first."]


def test_lists_the_users_sessions_and_marks_this_device(app):
    alice, bob = accounts(app)
    laptop, phone, other_user = (
        browser(app, LAPTOP),
        browser(app, PHONE),
        browser(app, OTHER),
    )
    sign_in(laptop, *alice)
    sign_in(phone, *alice)
    sign_in(other_user, *bob)
    page = laptop.get("/account/sessions")
    assert listed(page) == [("Chrome on Linux", True), ("Safari on iPhone", False)]
    assert page.html.find(id="end-others") is not None
    assert page.html.select_one("tr.session.current .this-device").text == "This device"
    # The full User-Agent string is there on hover, for whoever wants it.
    assert page.html.select("tr.session .agent")[1]["title"] == PHONE


def test_ending_another_session_signs_that_browser_out(app):
    alice, _ = accounts(app)
    laptop, phone = browser(app, LAPTOP), browser(app, PHONE)
    sign_in(laptop, *alice)
    sign_in(phone, *alice)
    phone_key = key_of(phone)
    page = post_form(laptop, "/account/sessions", "/account/sessions/end", key=phone_key)
    assert flashes(page) == ["That session has been ended: its browser is signed out."]
    assert listed(page) == [("Chrome on Linux", True)]
    assert app.store.load(phone_key, time.time()) is None
    assert signed_in_as(phone.get("/")) is None
    assert signed_in_as(laptop.get("/")) == alice[0]


def test_sign_out_everywhere_else_keeps_this_session(app):
    alice, bob_account = accounts(app)
    laptop, phone, tablet = browser(app, LAPTOP), browser(app, PHONE), browser(app, TABLET)
    for each in (laptop, phone, tablet):
        sign_in(each, *alice)
    bob = browser(app, OTHER)
    sign_in(bob, *bob_account)
    page = post_form(laptop, "/account/sessions", "/account/sessions/end-others")
    assert flashes(page) == ["Signed out everywhere else (2 other sessions ended)."]
    assert listed(page) == [("Chrome on Linux", True)]
    assert page.html.find(id="end-others") is None
    assert signed_in_as(phone.get("/")) is None
    assert signed_in_as(tablet.get("/")) is None
    assert signed_in_as(bob.get("/")) == bob_account[0]  # another user's sessions are not touched


def test_a_key_of_another_user_is_refused(make_app):
    handle = make_app("sql-postgres")
    alice_account, bob_account = accounts(handle)
    alice, bob = browser(handle, "Alice"), browser(handle, "Bob")
    sign_in(alice, *alice_account)
    sign_in(bob, *bob_account)
    bob_key = key_of(bob)
    page = post_form(alice, "/account/sessions", "/account/sessions/end", key=bob_key)
    assert flashes(page) == ["That session has already ended."]
    assert handle.store.load(bob_key, time.time()) is not None
    assert signed_in_as(bob.get("/")) == bob_account[0]


def test_ending_this_device_signs_out(make_app):
    handle = make_app("sql-sqlite")
    alice, _ = accounts(handle)
    laptop = browser(handle, "Laptop")
    sign_in(laptop, *alice)
    own_key = key_of(laptop)
    page = post_form(laptop, "/account/sessions", "/account/sessions/end", key=own_key)
    assert flashes(page) == ["You have been signed out."]
    assert signed_in_as(page) is None
    assert handle.store.load(own_key, time.time()) is None


def test_ending_sessions_needs_a_signed_in_user(make_app):
    handle = make_app("memory")
    page = handle.app.get("/")
    response = handle.app.post(
        "/account/sessions/end", {"csrf_token": csrf_token(page), "key": "0" * 64}
    )
    assert response.status_int == 303
    assert "/signin" in response.location


def test_times_are_relative_with_the_exact_time_on_hover(make_app):
    handle = make_app("memory")
    alice, _ = accounts(handle)
    laptop = browser(handle, LAPTOP)
    sign_in(laptop, *alice)
    row = laptop.get("/account/sessions").html.select_one("tr.session.current")
    for cls in ("created", "last-active"):
        when = row.find("time", class_=cls)
        assert when.text == "just now"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", when["title"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when["datetime"])


class TestSignedOutElsewhere:
    def test_a_device_ended_from_another_is_told_why_once(self, app):
        alice, _ = accounts(app)
        laptop, phone = browser(app, LAPTOP), browser(app, PHONE)
        sign_in(laptop, *alice)
        sign_in(phone, *alice)
        post_form(laptop, "/account/sessions", "/account/sessions/end", key=key_of(phone))
        page = phone.get("/")
        assert flashes(page) == ["You were signed out from another device."]
        assert signed_in_as(page) is None
        assert flashes(phone.get("/")) == []

    def test_sign_out_everywhere_else_tells_the_others(self, make_app):
        handle = make_app("sql-postgres")
        alice, _ = accounts(handle)
        laptop, phone = browser(handle, LAPTOP), browser(handle, PHONE)
        sign_in(laptop, *alice)
        sign_in(phone, *alice)
        post_form(laptop, "/account/sessions", "/account/sessions/end-others")
        page = phone.get("/account/sessions").follow()
        assert page.request.path == "/signin"
        # One banner: why, then what to do.
        assert flashes(page) == ["You were signed out from another device. Please sign in first."]

    def test_signing_out_here_says_nothing_about_other_devices(self, make_app):
        handle = make_app("sql-postgres")
        alice, _ = accounts(handle)
        laptop = browser(handle, LAPTOP)
        sign_in(laptop, *alice)
        assert flashes(post_form(laptop, "/", "/signout")) == ["You have been signed out."]
        assert flashes(laptop.get("/")) == []
        sign_in(laptop, *alice)
        page = post_form(laptop, "/account/sessions", "/account/sessions/end", key=key_of(laptop))
        assert flashes(page) == ["You have been signed out."]
        assert flashes(laptop.get("/")) == []

    def test_a_forged_marker_says_nothing(self, make_app):
        handle = make_app("memory")
        visitor = TestApp(handle.router)
        visitor.set_cookie("signed_in", "1.1.forged-signature")
        assert flashes(visitor.get("/")) == []
