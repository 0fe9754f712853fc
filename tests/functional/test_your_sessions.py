""" "Your sessions": listing a user's sessions and ending one, or all others, on every store."""

from __future__ import annotations

import time

from webtest import TestApp

from myapp.sessions.codec import storage_key
from tests.support.site import csrf_token, flashes, new_user, post_form, sign_in, signed_in_as

COOKIE = "session"


def browser(handle, agent: str) -> TestApp:
    return TestApp(handle.router, extra_environ={"HTTP_USER_AGENT": agent})


def key_of(app: TestApp) -> str:
    return storage_key(app.cookies[COOKIE].split(".", 1)[0])


def accounts(handle) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two fresh users: this module counts sessions, so no test may see another's."""
    return new_user(handle.engine, "alice"), new_user(handle.engine, "bob")


def listed(page) -> list[tuple[str, bool]]:
    return [
        (row.find(class_="agent").get_text(" ", strip=True), "current" in row["class"])
        for row in page.html.select("tr.session")
    ]


def test_anonymous_visitors_are_sent_to_sign_in(app):
    page = app.app.get("/account/sessions", status=303).follow()
    assert page.request.path == "/signin"
    assert flashes(page) == ["Please sign in first."]


def test_lists_the_users_sessions_and_marks_this_device(app):
    alice, bob = accounts(app)
    laptop, phone, other_user = (
        browser(app, "Laptop"),
        browser(app, "Phone"),
        browser(app, "Bob"),
    )
    sign_in(laptop, *alice)
    sign_in(phone, *alice)
    sign_in(other_user, *bob)
    page = laptop.get("/account/sessions")
    assert listed(page) == [("Laptop (this device)", True), ("Phone", False)]
    assert page.html.find(id="end-others") is not None


def test_ending_another_session_signs_that_browser_out(app):
    alice, _ = accounts(app)
    laptop, phone = browser(app, "Laptop"), browser(app, "Phone")
    sign_in(laptop, *alice)
    sign_in(phone, *alice)
    phone_key = key_of(phone)
    page = post_form(laptop, "/account/sessions", "/account/sessions/end", key=phone_key)
    assert flashes(page) == ["That session has been ended: its browser is signed out."]
    assert listed(page) == [("Laptop (this device)", True)]
    assert app.store.load(phone_key, time.time()) is None
    assert signed_in_as(phone.get("/")) is None
    assert signed_in_as(laptop.get("/")) == alice[0]


def test_sign_out_everywhere_else_keeps_this_session(app):
    alice, bob_account = accounts(app)
    laptop, phone, tablet = browser(app, "Laptop"), browser(app, "Phone"), browser(app, "Tablet")
    for each in (laptop, phone, tablet):
        sign_in(each, *alice)
    bob = browser(app, "Bob")
    sign_in(bob, *bob_account)
    page = post_form(laptop, "/account/sessions", "/account/sessions/end-others")
    assert flashes(page) == ["Signed out everywhere else (2 other sessions ended)."]
    assert listed(page) == [("Laptop (this device)", True)]
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
