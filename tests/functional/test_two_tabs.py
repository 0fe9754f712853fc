"""A form from a page opened before this browser signed in or out in another tab: the
page says what happened and sends the same action again in one click."""

from __future__ import annotations

import pytest

from tests.support.site import add_to_cart, cart_lines, csrf_token, flashes, sign_in

pytestmark = pytest.mark.usefixtures("site_users")


def resend(app, refused):
    """Click the one button of the refusal page."""
    return refused.forms["resend-form"].submit().follow()


def test_add_to_cart_from_a_tab_opened_before_sign_in(make_app):
    handle = make_app("sql-postgres")
    add_to_cart(handle.app, "cups")
    old_tab = handle.app.get("/")  # tab 1
    sign_in(handle.app)  # tab 2
    refused = handle.app.post(
        "/cart/add",
        {"csrf_token": csrf_token(old_tab), "product": "teapot", "quantity": "2"},
        status=400,
    )
    assert refused.html.find("h1").text == "Please confirm"
    assert refused.html.find(id="error-message").text.startswith(
        "You are now signed in as alice: this page was opened before that sign-in"
    )
    assert "Add 2 of Teapot to your cart." in refused.html.find(id="refused-action").text
    page = resend(handle.app, refused)
    assert flashes(page) == ["Added 2 of Teapot to your cart (now 2)."]
    assert cart_lines(page) == {"cups": 1, "teapot": 2}


def test_a_form_from_before_a_sign_out_still_works(make_app):
    handle = make_app("sql-postgres")
    sign_in(handle.app)
    old_tab = handle.app.get("/")
    handle.app.post("/signout", {"csrf_token": csrf_token(handle.app.get("/"))}).follow()
    page = handle.app.post(
        "/cart/add", {"csrf_token": csrf_token(old_tab), "product": "teapot"}
    ).follow()
    assert flashes(page) == ["Added 1 of Teapot to your cart (now 1)."]


def test_a_sign_in_form_refused_keeps_the_name_not_the_password(make_app):
    handle = make_app("sql-postgres")
    old_tab = handle.app.get("/signin")
    sign_in(handle.app, "alice")  # another tab
    refused = handle.app.post(
        "/signin",
        {"csrf_token": csrf_token(old_tab), "username": "bob", "password": "bob-password-2"},
        status=400,
    )
    assert "You are now signed in as alice" in refused.html.find(id="error-message").text
    form = refused.forms["resend-form"]
    assert form["username"].value == "bob"
    assert form["password"].value == ""  # a password is never written back into a page
    form["password"] = "bob-password-2"
    page = form.submit().follow()
    assert flashes(page) == ["Welcome back, bob."]


def test_a_form_posted_from_another_site_is_not_offered_again(make_app):
    handle = make_app("sql-postgres")
    page = handle.app.get("/")
    refused = handle.app.post(
        "/cart/add",
        {"csrf_token": csrf_token(page), "product": "teapot"},
        headers={"Origin": "https://evil.example"},
        extra_environ={"wsgi.url_scheme": "https"},
        status=400,
    )
    assert refused.html.find(id="resend-form") is None
    assert cart_lines(handle.app.get("/cart")) == {}


def test_an_anonymous_visitor_resends_a_refused_form_in_one_click(make_app):
    handle = make_app("redis")
    handle.app.get("/")
    refused = handle.app.post(
        "/cart/add", {"csrf_token": "from-a-page-long-gone", "product": "cups"}, status=400
    )
    assert "You signed out, or your session ended" in refused.html.find(id="error-message").text
    page = resend(handle.app, refused)
    assert flashes(page) == ["Added 1 of Pair of cups to your cart (now 1)."]
    # The next requests of this visitor and of another are served as usual.
    assert cart_lines(add_to_cart(handle.app, "teapot")) == {"cups": 1, "teapot": 1}
    assert cart_lines(add_to_cart(make_app("redis").app, "teapot")) == {"teapot": 1}
