"""The site's pages through WebTest, on every store: cart, sign-in, sign-out, CSRF, errors."""

from __future__ import annotations

import re
import time

import pytest
from webtest import TestApp

from myapp.sessions.request.factory import storage_key
from myapp.sessions.stores.base import StoreError
from tests.support.cookies import token_of as cookie_token
from tests.support.site import (
    add_to_cart,
    cart_lines,
    csrf_token,
    flashes,
    post_form,
    sign_in,
    signed_in_as,
)

COOKIE = "session"
pytestmark = pytest.mark.usefixtures("site_users")


def token_of(app: TestApp) -> str:
    return cookie_token(app.cookies[COOKIE])


def stored(handle, token: str):
    return handle.store.load(storage_key(token), time.time())


class TestCart:
    def test_home_lists_products_with_add_forms(self, app):
        page = app.app.get("/")
        assert page.html.find(id="product-green-tea") is not None
        assert page.html.select("form[action$='/cart/add']")
        assert page.html.select_one("#product-green-tea img")["src"].endswith(
            "/static/products/green-tea.svg"
        )

    def test_the_home_page_does_not_write_the_session(self, make_app):
        handle = make_app("sql-postgres")
        add_to_cart(handle.app, "cups")
        before = stored(handle, token_of(handle.app))
        for _ in range(3):
            response = handle.app.get("/")
            assert "Set-Cookie" not in response.headers
        after = stored(handle, token_of(handle.app))
        assert (after.version, after.data) == (before.version, before.data)

    def test_add_shows_a_flash_once_and_the_line_in_the_cart(self, app):
        page = add_to_cart(app.app, "green-tea", 2)
        assert flashes(page) == ["Added 2 of Green tea to your cart (now 2)."]
        assert cart_lines(page) == {"green-tea": 2}
        assert page.html.find(id="cart-total").text == "€9.00"
        again = app.app.get("/cart")
        assert flashes(again) == []
        assert cart_lines(again) == {"green-tea": 2}
        assert again.html.select_one("#cart-link .count").get_text(" ", strip=True) == "2 items"

    def test_change_quantity_and_remove(self, app):
        add_to_cart(app.app, "teapot")
        add_to_cart(app.app, "cups", 3)
        page = post_form(app.app, "/cart", "/cart/update", product="cups", quantity=5)
        assert flashes(page) == ["Pair of cups: quantity set to 5."]
        assert cart_lines(page) == {"teapot": 1, "cups": 5}
        page = post_form(app.app, "/cart", "/cart/update", product="cups", quantity=0)
        assert flashes(page) == ["Removed Pair of cups from your cart."]
        page = post_form(app.app, "/cart", "/cart/remove", product="teapot")
        assert flashes(page) == ["Removed Teapot from your cart."]
        assert cart_lines(page) == {}
        assert page.html.find(id="cart-empty") is not None

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"product": "caviar", "quantity": 1}, "That product is not in our catalogue."),
            ({"product": "teapot", "quantity": 0}, "Please choose a quantity from 1 to 99."),
            ({"product": "teapot", "quantity": "lots"}, "Please choose a quantity from 1 to 99."),
            ({"product": "teapot", "quantity": 100}, "You can have at most 99 of Teapot."),
        ],
    )
    def test_bad_additions_are_refused_with_a_flash(self, make_app, fields, message):
        handle = make_app("sql-postgres")
        page = post_form(handle.app, "/", "/cart/add", **fields)
        assert flashes(page) == [message]
        assert cart_lines(page) == {}

    def test_removing_what_is_not_there_says_so(self, make_app):
        handle = make_app("memory")
        page = post_form(handle.app, "/", "/cart/remove", product="cups")
        assert flashes(page) == ["Pair of cups was not in your cart."]

    def test_cart_survives_a_browser_restart(self, app):
        add_to_cart(app.app, "black-tea", 4)
        # A browser restart keeps only cookies with an expiry (Max-Age), so copy those.
        kept = [c for c in app.app.cookiejar if c.expires is not None and not c.discard]
        assert [c.name for c in kept] == [COOKIE]
        restarted = TestApp(app.router)
        restarted.set_cookie(COOKIE, kept[0].value)
        assert cart_lines(restarted.get("/cart")) == {"black-tea": 4}

    def test_session_cookie_is_persistent_httponly_and_samesite(self, make_app):
        handle = make_app("sql-postgres")
        token = csrf_token(handle.app.get("/"))  # browsing alone sets no session cookie
        response = handle.app.post("/cart/add", {"csrf_token": token, "product": "cups"})
        header = next(c for c in response.headers.getall("Set-Cookie") if c.startswith("session="))
        max_age = int(re.search(r"Max-Age=(\d+)", header).group(1))
        assert 2_591_000 < max_age <= 2_592_000  # the absolute lifetime, 30 days
        assert "HttpOnly" in header
        assert "SameSite=Lax" in header


class TestSignIn:
    def test_sign_in_rotates_the_session_and_keeps_the_cart(self, app):
        add_to_cart(app.app, "teapot", 2)
        before = token_of(app.app)
        page = sign_in(app.app)
        assert flashes(page) == ["Welcome back, alice."]
        assert signed_in_as(page) == "alice"
        after = token_of(app.app)
        assert after != before
        assert stored(app, before) is None  # the pre-sign-in id is dead (fixation)
        record = stored(app, after)
        assert record.user_id is not None
        assert cart_lines(app.app.get("/cart")) == {"teapot": 2}

    def test_replaying_the_pre_sign_in_cookie_is_anonymous(self, make_app):
        handle = make_app("sql-postgres")
        add_to_cart(handle.app, "teapot")
        old_cookie = handle.app.cookies[COOKIE]
        sign_in(handle.app)
        attacker = TestApp(handle.router)
        attacker.set_cookie(COOKIE, old_cookie)
        page = attacker.get("/cart")
        assert signed_in_as(page) is None
        assert cart_lines(page) == {}

    @pytest.mark.parametrize(("name", "password"), [("alice", "wrong"), ("nobody", "x"), ("", "")])
    def test_wrong_credentials_flash_an_error(self, make_app, name, password):
        handle = make_app("sql-postgres")
        page = sign_in(handle.app, name, password)
        assert flashes(page) == ["Wrong username or password."]
        assert signed_in_as(page) is None
        assert page.request.path == "/signin"

    def test_username_is_case_insensitive(self, make_app):
        handle = make_app("sql-sqlite")
        assert signed_in_as(sign_in(handle.app, " Alice ", "alice-password-1")) == "alice"

    def test_sign_in_returns_to_a_local_next_page_only(self, make_app):
        handle = make_app("sql-postgres")
        page = handle.app.get("/account/sessions").follow()
        assert page.request.path == "/signin"
        assert page.html.find("input", {"name": "next"})["value"] == "/account/sessions"
        response = handle.app.post(
            "/signin",
            {
                "csrf_token": csrf_token(page),
                "username": "alice",
                "password": "alice-password-1",
                "next": "/account/sessions",
            },
        )
        assert response.location.endswith("/account/sessions")
        other = make_app("sql-postgres")
        page = other.app.get("/signin?next=//evil.example/")
        response = other.app.post(
            "/signin",
            {
                "csrf_token": csrf_token(page),
                "username": "alice",
                "password": "alice-password-1",
                "next": "//evil.example/",
            },
        )
        assert response.location == "http://localhost/"

    def test_sign_out_ends_the_session_on_the_server(self, app):
        sign_in(app.app)
        add_to_cart(app.app, "cups")
        signed_in_token = token_of(app.app)
        signed_in_cookie = app.app.cookies[COOKIE]
        page = post_form(app.app, "/", "/signout")
        assert flashes(page) == ["You have been signed out."]
        assert signed_in_as(page) is None
        assert stored(app, signed_in_token) is None
        replay = TestApp(app.router)
        replay.set_cookie(COOKIE, signed_in_cookie)
        page = replay.get("/cart")
        assert signed_in_as(page) is None
        assert cart_lines(page) == {}


POST_ROUTES = [
    "/signin",
    "/signup",
    "/checkout",
    "/cart/add",
    "/cart/update",
    "/cart/remove",
    "/account/sessions/end",
    "/account/sessions/end-others",
]


POST_ONLY_ROUTES = [route for route in POST_ROUTES if route not in ("/signin", "/signup")] + [
    "/signout"
]


class TestForgivingForms:
    def test_a_sign_out_form_left_open_after_signing_out_lands_on_home(self, make_app):
        handle = make_app("sql-postgres")
        sign_in(handle.app)
        stale_token = csrf_token(handle.app.get("/cart"))  # a second tab, left open
        post_form(handle.app, "/", "/signout")
        response = handle.app.post("/signout", {"csrf_token": stale_token}, status=303)
        assert response.location == "http://localhost/"
        page = response.follow()
        assert flashes(page) == ["You are signed out."]
        assert signed_in_as(page) is None

    def test_signing_out_when_never_signed_in_lands_on_home(self, make_app):
        handle = make_app("redis")
        response = handle.app.post("/signout", status=303)
        assert flashes(response.follow()) == ["You are signed out."]

    def test_a_forged_sign_out_of_a_signed_in_user_is_refused(self, make_app):
        handle = make_app("sql-postgres")
        sign_in(handle.app)
        page = handle.app.post("/signout", {"csrf_token": "forged"}, status=400)
        assert page.html.find("h1").text == "Please confirm"
        assert page.html.find(id="resend-form").find("button").text == "Sign out"
        assert signed_in_as(handle.app.get("/")) == "alice"

    def test_a_wrong_password_keeps_the_user_name(self, make_app):
        handle = make_app("sql-postgres")
        page = sign_in(handle.app, "alice", "not-her-password")
        assert flashes(page) == ["Wrong username or password."]
        assert page.html.find("input", {"name": "username"})["value"] == "alice"
        assert "autofocus" in page.html.find("input", {"name": "password"}).attrs
        again = handle.app.get("/signin")  # said once, like the message
        assert again.html.find("input", {"name": "username"})["value"] == ""

    def test_a_name_with_a_nul_is_a_wrong_name_not_an_error(self, make_app):
        handle = make_app("sql-postgres")
        page = sign_in(handle.app, "al\x00ice", "x")
        assert flashes(page) == ["Wrong username or password."]
        assert page.html.find("input", {"name": "username"})["value"] == ""

    def test_the_quantity_cap_is_said_out_loud(self, make_app):
        handle = make_app("memory")
        page = add_to_cart(handle.app, "teapot", 98)
        assert flashes(page) == ["Added 98 of Teapot to your cart (now 98)."]
        page = add_to_cart(handle.app, "teapot", 5)
        assert flashes(page) == [
            "Added 1 of Teapot to your cart (now 99). You can have at most 99."
        ]
        page = add_to_cart(handle.app, "teapot", 99)
        assert flashes(page) == [
            "You already have 99 of Teapot in your cart. You can have at most 99."
        ]
        assert cart_lines(page) == {"teapot": 99}

    def test_prices_have_thousands_separators(self, make_app):
        handle = make_app("memory")
        page = add_to_cart(handle.app, "teapot", 99)
        assert page.html.find(id="cart-total").text == "€2,871.00"
        assert page.html.select_one("#line-teapot .subtotal").text == "€2,871.00"


class TestCsrf:
    @pytest.mark.parametrize("path", POST_ROUTES)
    @pytest.mark.parametrize("token", [None, "forged"])
    def test_post_without_a_valid_token_gets_a_friendly_400(self, make_app, path, token):
        handle = make_app("sql-postgres")
        add_to_cart(handle.app, "teapot")
        fields = {"product": "teapot", "quantity": "3", "username": "alice"}
        if token:
            fields["csrf_token"] = token
        page = handle.app.post(path, fields, status=400)
        assert page.html.find("h1").text == "Please confirm"
        assert "so its form was not sent" in page.html.find(id="error-message").text
        assert "Traceback" not in page.text
        assert cart_lines(handle.app.get("/cart")) == {"teapot": 1}

    def test_a_token_from_another_session_is_refused(self, make_app):
        handle = make_app("redis")
        other = TestApp(handle.router)
        foreign = csrf_token(other.get("/"))
        handle.app.get("/")
        handle.app.post("/cart/add", {"csrf_token": foreign, "product": "teapot"}, status=400)


class TestErrorPages:
    def test_unknown_page_is_a_friendly_404(self, app):
        page = app.app.get("/no/such/page", status=404)
        assert page.html.find("h1").text == "Page not found"
        assert 'href="http://localhost/"' in page.text

    def test_an_error_page_keeps_the_menu_and_who_is_signed_in(self, make_app):
        handle = make_app("sql-postgres")
        sign_in(handle.app)
        add_to_cart(handle.app, "cups", 2)
        page = handle.app.get("/no/such/page", status=404)
        assert page.html.select_one("#cart-link .count").get_text(" ", strip=True) == "2 items"
        assert signed_in_as(page) == "alice"

    @pytest.mark.parametrize("path", [*POST_ONLY_ROUTES, "/signin"])
    def test_a_get_on_a_form_address_is_a_405_in_the_layout(self, make_app, path):
        handle = make_app("memory")
        if path == "/signin":
            assert handle.app.get(path).status_int == 200  # the form itself
            return
        page = handle.app.get(path, status=405)
        assert page.headers["Allow"] == "POST"
        assert page.html.find("h1").text == "Nothing to see here"
        assert page.html.find(id="cart-link") is not None

    def test_a_session_too_large_gets_a_plain_page(self, make_app):
        handle = make_app("memory", **{"session.max_size": 1024})
        page = handle.app.get("/_t/big?size=5000", status=413)
        assert page.html.find("h1").text == "That would not fit"
        assert "Remove something from your cart" in page.html.find(id="error-message").text
        assert cart_lines(add_to_cart(handle.app, "cups")) == {"cups": 1}

    def test_favicon_is_served(self, make_app):
        response = make_app("memory").app.get("/favicon.ico")
        assert response.content_type == "image/x-icon"
        assert response.body[:4] == b"\x00\x00\x01\x00"  # an ICO header
        assert "max-age" in response.headers["Cache-Control"]

    def test_signin_answers_503_when_the_database_is_down(
        self, make_app, closed_port_url, redis_prefix, caplog
    ):
        handle = make_app(
            "redis",
            **{"sqlalchemy.url": closed_port_url, "session.backends": "sql redis"},
        )
        assert handle.chain.active_name == "redis"
        home = handle.app.get("/")
        assert home.html.find(class_="degraded") is None  # nothing to lose: nothing to say
        add = add_to_cart(handle.app, "teapot", 2)
        assert cart_lines(add) == {"teapot": 2}
        home = handle.app.get("/")
        banner = home.html.find(class_="degraded").get_text(" ", strip=True)
        assert banner == "Your cart is safe, but you may be asked to sign in again soon."
        form = handle.app.get("/signin")
        page = handle.app.post(
            "/signin",
            {"csrf_token": csrf_token(form), "username": "alice", "password": "x"},
            status=503,
        )
        assert page.html.find("h1").text == "Temporarily unavailable"
        assert page.headers["Retry-After"] == "5"
        refusals = [r for r in caplog.records if r.name == "myapp.refusals"]
        assert [r.levelname for r in refusals] == ["WARNING"]
        assert refusals[0].getMessage().startswith("refused POST signin with 503: Operational")
        # The rest of the site and the visitor's session carry on.
        assert cart_lines(handle.app.get("/cart")) == {"teapot": 2}


def test_a_store_failing_mid_request_gets_the_friendly_503(make_app, monkeypatch):
    handle = make_app("memory")
    add_to_cart(handle.app, "cups")  # a real session, so the next request loads it

    def broken(*args, **kwargs):
        raise StoreError("memory", "connection", "the store went away")

    monkeypatch.setattr(handle.store, "load", broken)
    page = handle.app.get("/", status=503)
    assert page.html.find("h1").text == "Temporarily unavailable"
    assert page.headers["Retry-After"] == "5"
