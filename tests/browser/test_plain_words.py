"""The pages a visitor meets when something is refused or down, as a browser shows them:
each with a plain title, one banner at a time, and screenshots to read
(test-artifacts/browser/screens/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.servers import free_port

from .conftest import ARTIFACTS, serve_site

SCREENS = ARTIFACTS / "screens"


def shoot(page: Page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def database_down_site(redis_prefix: str) -> Iterator[str]:
    """PostgreSQL unreachable: sessions fall back to Redis, sign-in answers 503."""
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/myapp"
    with serve_site(
        down, **{"session.backends": "sql redis", "session.redis_prefix": redis_prefix}
    ) as url:
        yield url


def test_the_outage_banner_only_for_visitors_with_something_to_lose(
    database_down_site, new_context
):
    site = database_down_site
    page = new_context().new_page()
    page.goto(site)
    expect(page.locator(".degraded")).to_have_count(0)  # an empty cart has nothing to lose
    card = page.locator("#product-teapot")
    card.get_by_role("button", name="Add to cart").click()
    expect(page.locator(".flash.info")).to_have_text("Added 1 of Teapot to your cart (now 1).")
    expect(page.locator(".degraded")).to_have_count(0)  # one banner at a time
    page.goto(site)
    expect(page.locator(".degraded")).to_have_text(
        "Your cart is safe, but you may be asked to sign in again soon."
    )
    expect(page.locator(".flash, .degraded")).to_have_count(1)
    shoot(page, "outage-banner")

    page.goto(f"{site}/signin")
    page.get_by_label("Username").fill("someone")
    page.get_by_label("Password").fill("a-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_have_text("Temporarily unavailable")
    expect(page).to_have_title("Temporarily unavailable · Kettle & Leaf")
    shoot(page, "outage-503")
    page.goto(f"{site}/cart")  # the visitor's next request is served, cart and all
    expect(page.locator("#line-teapot .quantity")).to_have_value("1")


@pytest.mark.parametrize(
    ("path", "title", "shot"),
    [
        ("/no/such/page", "Page not found", "error-404"),
        ("/cart/add", "Nothing to see here", "error-405"),
        ("/orders", "Sign in", "orders-needs-sign-in"),
    ],
)
def test_error_pages_have_plain_titles(site, new_context, path, title, shot):
    page = new_context().new_page()
    page.goto(f"{site}{path}")
    expect(page.locator("h1")).to_have_text(title)
    expect(page).to_have_title(f"{title} · Kettle & Leaf")
    expect(page.locator(".flash, .degraded")).to_have_count(1 if shot.startswith("orders") else 0)
    shoot(page, shot)
