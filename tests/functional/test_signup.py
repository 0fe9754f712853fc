"""Creating an account: the rules of myapp-create-user, throttled, signed in with the cart."""

from __future__ import annotations

import uuid

import pytest

from myapp.accounts import account_problems
from tests.support.site import (
    add_to_cart,
    cart_lines,
    csrf_token,
    flashes,
    new_user,
    signed_in_as,
)

THROTTLED = {"signin.account_free_failures": "2", "signin.first_delay": "30"}


def sign_up(app, name: str, password: str = "a-good-password", status: int | str = 303):
    page = app.get("/signup")
    return app.post(
        "/signup",
        {"csrf_token": csrf_token(page), "username": name, "password": password},
        status=status,
    )


@pytest.mark.parametrize("backend", ("sql-postgres", "redis"))
def test_sign_up_signs_in_at_once_and_keeps_the_cart(make_app, backend):
    handle = make_app(backend)
    add_to_cart(handle.app, "cups", 2)
    name = f"Newcomer-{uuid.uuid4().hex[:8]}"
    page = sign_up(handle.app, name).follow()
    assert signed_in_as(page) == name.lower()
    assert flashes(page) == [f"Welcome, {name.lower()}! Your account is ready."]
    assert cart_lines(handle.app.get("/cart")) == {"cups": 2}
    # The account signs in elsewhere with its password.
    other = make_app(backend).app
    form = other.get("/signin").forms["signin-form"]
    form["username"], form["password"] = name, "a-good-password"
    assert signed_in_as(form.submit().follow()) == name.lower()


@pytest.mark.parametrize(
    ("name", "password", "problem"),
    [
        (
            "two words",
            "a-good-password",
            "A username holds no spaces, control or invisible characters.",
        ),
        ("x" * 65, "a-good-password", "A username is 1 to 64 characters."),
        ("someone", "", "A password is at least 8 characters."),
        (
            "two words",
            "pw",
            "A username holds no spaces, control or invisible characters. "
            "A password is at least 8 characters.",
        ),
    ],
)
def test_the_rules_of_myapp_create_user_apply(make_app, name, password, problem):
    assert account_problems(name, password)  # the one rule book both use
    handle = make_app("memory")
    page = sign_up(handle.app, name, password, status=400)
    assert page.html.find(id="signup-problems").get_text(" ", strip=True) == problem
    assert signed_in_as(page) is None
    assert page.html.find("input", {"name": "password"}).get("value") is None


def test_a_taken_name_is_said_and_the_name_kept(make_app):
    handle = make_app("sql-postgres")
    taken, _ = new_user(handle.engine, "taken")
    page = sign_up(handle.app, taken, status=400)
    assert "That username is taken" in page.html.find(id="signup-problems").text
    assert page.html.find("input", {"name": "username"})["value"] == taken
    name = f"after-{uuid.uuid4().hex[:8]}"
    assert signed_in_as(sign_up(handle.app, name).follow()) == name


def test_sign_up_is_throttled_like_sign_in(make_app):
    handle = make_app("sql-postgres", **THROTTLED)
    taken, _ = new_user(handle.engine, "wanted")
    for _ in range(3):
        sign_up(handle.app, taken, status=400)
    refused = sign_up(handle.app, taken, status=429)
    assert int(refused.headers["Retry-After"]) >= 25
    assert "Please try again in 30 seconds." in refused.html.find(id="signup-problems").text
    # Another visitor signs up under another name.
    name = f"fresh-{uuid.uuid4().hex[:8]}"
    assert signed_in_as(sign_up(make_app("sql-postgres").app, name).follow()) == name
