"""Every page as a shopper's browser sees it: on a phone, without console errors, light,
device names, a stale sign-out, and the screenshot the README shows."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from myapp.accounts import create_user, find_user
from tests.browser.shopper import IPHONE, sign_in
from tests.support.databases import REPO
from tests.support.site import CHEAP_HASHER

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
LINUX_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
PAGE_BUDGET = 100_000  # bytes: the document and everything it loads
SCREENSHOT = REPO / "docs" / "shop.png"
SCREENSHOT_PHONE = REPO / "docs" / "shop-phone.png"

# Pages a signed-in shopper with a cart sees, with their status.
SIGNED_IN_PAGES = [
    ("/", 200),
    ("/cart", 200),
    ("/account/sessions", 200),
    ("/signin", 200),
    ("/no/such/page", 404),
    ("/cart/add", 405),
]
ANONYMOUS_PAGES = [("/", 200), ("/cart", 200), ("/signin", 200), ("/no/such/page", 404)]


class Console:
    """The console errors and uncaught exceptions of one page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda message: self._console(message))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def take(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors


def visit(page: Page, console: Console, url: str, status: int) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, url
    errors = console.take()
    if status >= 400:
        # Chromium reports the document's own error status; nothing else may appear.
        expected = f"Failed to load resource: the server responded with a status of {status}"
        errors = [error for error in errors if not error.startswith(expected)]
    assert errors == [], f"{url}: {errors}"


def page_bytes(page: Page) -> int:
    return page.evaluate(
        """() => performance.getEntriesByType('navigation')
              .concat(performance.getEntriesByType('resource'))
              .reduce((sum, entry) => sum + entry.decodedBodySize, 0)"""
    )


def check_fits_a_phone(page: Page, path: str) -> None:
    scroll, width = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= width, f"{path} scrolls sideways: {scroll} px of content in {width} px"
    # The menu stays on one line, inside the screen.
    boxes = [link.bounding_box() for link in page.locator(".menu a, .account a").all()]
    boxes += [box for box in [page.locator(".brand").bounding_box()] if box]
    for box in boxes:
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, path
    menu = [page.locator(".menu a").first.bounding_box(), page.locator(".brand").bounding_box()]
    assert abs(menu[0]["y"] + menu[0]["height"] / 2 - (menu[1]["y"] + menu[1]["height"] / 2)) < 8


def add(page: Page, site: str, product: str, quantity: int) -> None:
    page.goto(site)
    card = page.locator(f"#product-{product}")
    card.get_by_label("Quantity").fill(str(quantity))
    card.get_by_role("button", name="Add to cart").click()
    expect(page.locator("h1")).to_have_text("Your cart")


def test_every_page_fits_a_phone_is_light_and_logs_no_errors(site, account, new_context):
    page = new_context(viewport=PHONE, user_agent=IPHONE).new_page()
    console = Console(page)
    for path, status in ANONYMOUS_PAGES:
        visit(page, console, site + path, status)
        check_fits_a_phone(page, path)
        assert page_bytes(page) < PAGE_BUDGET, path

    sign_in(page, site, *account)
    add(page, site, "teapot", 99)
    add(page, site, "green-tea", 2)
    for path, status in SIGNED_IN_PAGES:
        visit(page, console, site + path, status)
        check_fits_a_phone(page, path)
        assert page_bytes(page) < PAGE_BUDGET, path
        expect(page.locator("#signed-in-as")).to_contain_text(account[0])

    # The tables are stacked rows: no header row, each cell labelled.
    for path in ("/cart", "/account/sessions"):
        page.goto(site + path)
        expect(page.locator("table.stack thead")).to_be_hidden()
        cell = page.locator("table.stack tbody td[data-label]").first
        assert cell.evaluate("td => getComputedStyle(td).display") != "table-cell"
        label = cell.evaluate("td => getComputedStyle(td, '::before').content")
        assert label.strip('"') == cell.get_attribute("data-label")
    page.goto(site + "/cart")
    expect(page.locator("#cart-total")).to_have_text("€2,880.00")


def test_on_a_wide_screen_the_tables_are_tables(site, account, new_context):
    page = new_context(viewport=DESKTOP).new_page()
    console = Console(page)
    sign_in(page, site, *account)
    add(page, site, "cups", 1)
    for path in ("/cart", "/account/sessions"):
        visit(page, console, site + path, 200)
        expect(page.locator("table.stack thead")).to_be_visible()
        cell = page.locator("table.stack tbody td[data-label]").first
        assert cell.evaluate("td => getComputedStyle(td).display") == "table-cell"


def test_your_sessions_names_devices_with_relative_times(site, account, new_context):
    laptop = new_context(viewport=DESKTOP, user_agent=LINUX_CHROME).new_page()
    phone = new_context(viewport=PHONE, user_agent=IPHONE).new_page()
    sign_in(laptop, site, *account)
    sign_in(phone, site, *account)
    phone.goto(site + "/account/sessions")
    rows = phone.locator("tr.session")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".agent")).to_have_text("Safari on iPhone")
    expect(rows.nth(0).locator(".this-device")).to_have_text("This device")
    expect(rows.nth(1).locator(".agent")).to_have_text("Chrome on Linux")
    expect(rows.nth(1).locator(".this-device")).to_have_count(0)
    last_active = rows.nth(1).locator("time.last-active")
    expect(last_active).to_have_text("just now")
    expect(last_active).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))


def test_a_sign_out_form_left_open_still_signs_out(site, account, new_context):
    context = new_context()
    first, second = context.new_page(), context.new_page()
    sign_in(first, site, *account)
    second.goto(site + "/cart")  # another tab, left open
    first.locator("#signout").click()
    expect(first.locator(".flash.info")).to_have_text("You have been signed out.")

    second.locator("#signout").click()
    expect(second).to_have_url(site + "/")
    expect(second.locator(".flash.info")).to_have_text("You are signed out.")
    expect(second.locator("#signin-link")).to_be_visible()


def test_a_wrong_password_keeps_the_name_and_focuses_the_password(site, account, new_context):
    page = new_context().new_page()
    page.goto(site + "/signin")
    page.get_by_label("Username").fill(account[0])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".flash.error")).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Username")).to_have_value(account[0])
    expect(page.get_by_label("Password")).to_be_focused()


def test_keyboard_focus_is_visible(site, new_context):
    page = new_context().new_page()
    page.goto(site)
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")  # the brand
    focused = page.evaluate_handle("document.activeElement")
    outline = focused.evaluate("el => getComputedStyle(el).outlineStyle + ' ' + el.className")
    assert outline == "solid brand"


def test_screenshots_for_the_readme(site, postgres_url, new_context):
    """docs/shop.png (and a phone's view) as the README shows them, as the demo account."""
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            if find_user(conn, "demo") is None:
                create_user(conn, "demo", "demo-password", hasher=CHEAP_HASHER)
    finally:
        engine.dispose()
    page = new_context(viewport=DESKTOP, user_agent=LINUX_CHROME).new_page()
    sign_in(page, site, "demo", "demo-password")
    add(page, site, "green-tea", 2)
    add(page, site, "cups", 1)
    page.goto(site)
    page.screenshot(path=str(SCREENSHOT))
    phone = new_context(viewport=PHONE, user_agent=IPHONE).new_page()
    phone.goto(site)
    phone.screenshot(path=str(SCREENSHOT_PHONE))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT_PHONE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
