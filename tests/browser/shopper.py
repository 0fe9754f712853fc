"""What the browser tests share: a real phone's User-Agent, and signing in through the form."""

from __future__ import annotations

from playwright.sync_api import Page, expect

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def sign_in(page: Page, site: str, name: str, password: str) -> None:
    page.goto(f"{site}/signin")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".flash.info")).to_have_text(f"Welcome back, {name}.")
    expect(page.locator("#signed-in-as")).to_contain_text(name)
