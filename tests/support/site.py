"""Helpers for driving the site through WebTest: accounts, CSRF tokens, flash messages."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from webtest import TestApp, TestResponse

from myapp.accounts import create_user, find_user

# Verifying reads the cost from the stored hash: cheap hashes keep sign-ins fast.
CHEAP_HASHER = PasswordHasher.from_parameters(CHEAPEST)

USERS = {"alice": "alice-password-1", "bob": "bob-password-2"}


def ensure_users(url: str) -> None:
    """Create the test accounts in the database at ``url`` (once)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name, password in USERS.items():
            if find_user(conn, name) is None:
                create_user(conn, name, password, hasher=CHEAP_HASHER)
    engine.dispose()


def csrf_token(response: TestResponse) -> str:
    field = response.html.find("input", {"name": "csrf_token"})
    assert field is not None, "the page has no form with a CSRF token"
    return field["value"]


def flashes(response: TestResponse) -> list[str]:
    return [p.get_text(" ", strip=True) for p in response.html.select(".flash")]


def signed_in_as(response: TestResponse) -> str | None:
    marker = response.html.find(id="signed-in-as")
    return None if marker is None else marker.find("strong").get_text(strip=True)


def post_form(app: TestApp, page: str, action: str, **fields: object) -> TestResponse:
    """GET ``page`` for a CSRF token, POST ``fields`` to ``action``, follow the redirect."""
    token = csrf_token(app.get(page))
    response = app.post(action, {"csrf_token": token, **fields})
    return response.follow() if response.status_int in (302, 303) else response


def sign_in(app: TestApp, name: str = "alice", password: str | None = None) -> TestResponse:
    return post_form(
        app,
        "/signin",
        "/signin",
        username=name,
        password=USERS[name] if password is None else password,
    )


def add_to_cart(app: TestApp, product: str, quantity: int = 1) -> TestResponse:
    return post_form(app, "/", "/cart/add", product=product, quantity=quantity)


def cart_lines(response: TestResponse) -> dict[str, int]:
    """{product id: quantity} as the cart page shows it."""
    lines = {}
    for row in response.html.select("table.cart tbody tr"):
        lines[row["id"].removeprefix("line-")] = int(
            row.find("input", {"name": "quantity"})["value"]
        )
    return lines


def new_user(engine: sa.Engine, prefix: str = "user") -> tuple[str, str]:
    """A fresh account (name, password), so a test sees no other test's sessions."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    password = f"password-of-{name}"
    with engine.begin() as conn:
        create_user(conn, name, password, hasher=CHEAP_HASHER)
    return name, password
