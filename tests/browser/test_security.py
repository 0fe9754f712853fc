"""In a real browser: the Content-Security-Policy breaks nothing, and sign-in throttling
tells the visitor when to try again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .conftest import ARTIFACTS, serve_site

SCREENS = ARTIFACTS / "screens"

THROTTLING = {"signin.account_free_failures": "3", "signin.first_delay": "30"}


@pytest.fixture(scope="module")
def throttled_site(postgres_url: str) -> Iterator[str]:
    with serve_site(postgres_url, **THROTTLING) as url:
        yield url


def watch_console(page: Page) -> list[str]:
    """Console errors and uncaught page errors (a CSP violation is a console error)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def try_sign_in(page: Page, site: str, name: str, password: str) -> Any:
    page.goto(f"{site}/signin")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def test_signs_in_then_is_throttled_and_told_when_to_retry(throttled_site, account, new_context):
    site = throttled_site
    name, password = account
    page = new_context().new_page()
    problems = watch_console(page)

    try_sign_in(page, site, name, password)
    expect(page.locator("#signed-in-as")).to_contain_text(name)
    page.goto(f"{site}/cart")
    page.goto(f"{site}/account/sessions")
    page.locator("#signout").click()
    expect(page.locator("#signin-link")).to_be_visible()

    for _ in range(3):  # free failures
        try_sign_in(page, site, name, "not-the-password")
        expect(page.locator(".flash.error").first).to_have_text("Wrong username or password.")
    try_sign_in(page, site, name, "not-the-password")
    banner = page.locator(".flash.error")
    expect(banner).to_have_count(1)  # one banner, not two stacked
    expect(banner).to_have_text(
        "Wrong username or password. Too many failed sign-ins. Please try again in 30 seconds."
    )
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "signin-throttle-begins.png"), full_page=True)

    try_sign_in(page, site, name, password)  # the right password, but too soon
    notice = page.locator("#signin-throttled")
    expect(notice).to_have_text(
        re.compile(r"^Too many failed sign-ins\. Please try again in (29|30) seconds\.$")
    )
    expect(page.locator(".flash.error")).to_have_count(1)
    page.screenshot(path=str(SCREENS / "signin-throttled.png"), full_page=True)
    expect(page.locator("#signed-in-as")).to_have_count(0)
    # Chromium reports a page answered with an error status; that 429 is the point here.
    assert [p for p in problems if "status of 429" not in p] == []


def test_the_policy_is_in_force_and_breaks_no_page(site, account, new_context):
    name, password = account
    page = new_context().new_page()
    problems = watch_console(page)
    response = page.goto(site)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    product = page.locator("#product-green-tea")
    product.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#line-green-tea .quantity")).to_have_value("1")
    try_sign_in(page, site, name, password)
    expect(page.locator("#signed-in-as")).to_contain_text(name)
    page.goto(f"{site}/cart")
    expect(page.locator("#line-green-tea .quantity")).to_have_value("1")  # the cart came along
    # The stylesheet loaded under the policy: the header is laid out by site.css.
    assert page.evaluate("getComputedStyle(document.body).margin") != "8px"
    assert problems == []
    # An inline script is refused, and the refusal is what reaches the console.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
        " document.body.appendChild(s); }"
    )
    assert page.evaluate("window.x") is None
    assert any("Content Security Policy" in text for text in problems)
