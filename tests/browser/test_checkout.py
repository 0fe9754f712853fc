"""Checkout, sign-up and a second tab, in a real browser."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.browser.shopper import sign_in
from tests.support.orders import orders_of, refuse_doomed_orders_at_commit
from tests.support.site import new_user

from .conftest import ARTIFACTS

SCREENS = ARTIFACTS / "screens"


def add(page: Page, site: str, product: str, quantity: int = 1) -> None:
    page.goto(site)
    card = page.locator(f"#product-{product}")
    card.get_by_label("Quantity").fill(str(quantity))
    card.get_by_role("button", name="Add to cart").click()
    expect(page.locator(".flash.info")).to_contain_text("to your cart")


def shopper(postgres_url: str, prefix: str) -> tuple[str, str]:
    engine = sa.create_engine(postgres_url)
    try:
        return new_user(engine, prefix)
    finally:
        engine.dispose()


def test_checkout_end_to_end(site, account, new_context, postgres_url):
    name, password = account
    page = new_context().new_page()
    sign_in(page, site, name, password)
    add(page, site, "green-tea", 2)
    add(page, site, "cups")
    expect(page.locator("#cart-total")).to_have_text("€27.00")
    expect(page.locator("#signout-note")).to_have_text("Signing out empties your cart.")
    page.get_by_role("button", name="Place your order").click()

    [(order_id, total)] = orders_of(postgres_url, name)
    assert total == 2700
    expect(page).to_have_url(f"{site}/orders/{order_id}")
    expect(page.locator(".flash.info")).to_have_text(
        f"Thank you! Your order number {order_id} is placed."
    )
    expect(page.locator("#order-total")).to_have_text("€27.00")
    expect(page.locator("#order-line-green-tea .quantity")).to_have_text("2")
    expect(page.locator("#cart-link .count")).to_contain_text("0")
    page.locator("#orders-link").click()
    expect(page.locator(f"#order-{order_id}")).to_contain_text("3 items")
    expect(page.locator(f"#order-{order_id}")).to_contain_text("€27.00")
    page.goto(f"{site}/cart")
    expect(page.locator("#cart-empty")).to_be_visible()


def test_an_order_that_fails_at_commit_leaves_the_cart_whole(site, new_context, postgres_url):
    refuse_doomed_orders_at_commit(postgres_url)
    name, password = shopper(postgres_url, "doomed")
    page = new_context().new_page()
    sign_in(page, site, name, password)
    add(page, site, "teapot")
    add(page, site, "black-tea", 3)
    page.get_by_role("button", name="Place your order").click()

    expect(page.locator("h1")).to_have_text("Your order was not placed")
    expect(page.locator("#error-message")).to_contain_text("your cart is just as it was")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "order-not-placed.png"), full_page=True)
    assert orders_of(postgres_url, name) == []
    page.locator("#error-action").click()
    expect(page.locator("#line-teapot .quantity")).to_have_value("1")
    expect(page.locator("#line-black-tea .quantity")).to_have_value("3")
    expect(page.locator("#signed-in-as")).to_contain_text(name)
    add(page, site, "cups")  # the next request of the same shopper works
    expect(page.locator("#line-cups .quantity")).to_have_value("1")


def test_the_same_checkout_form_from_two_tabs_makes_one_order(
    site, account, new_context, postgres_url
):
    name, password = account
    context = new_context()
    first = context.new_page()
    sign_in(first, site, name, password)
    add(first, site, "teapot", 2)
    first.goto(f"{site}/cart")
    second = context.new_page()
    second.goto(f"{site}/cart")
    # The second tab holds the very same form (a duplicated tab, a page from the cache).
    key = first.locator("input[name=checkout_key]").input_value()
    second.evaluate(f"document.querySelector('input[name=checkout_key]').value = '{key}'")

    # Both sent at once.
    for tab in (first, second):
        tab.evaluate("document.getElementById('checkout-form').submit()")
    for tab in (first, second):
        expect(tab).to_have_url(re.compile(r"/orders/\d+$"))
    [(order_id, total)] = orders_of(postgres_url, name)
    assert total == 5800
    for tab in (first, second):
        expect(tab).to_have_url(f"{site}/orders/{order_id}")

    # Sent again later (the back button): still the one order.
    first.go_back()
    second.reload()
    expect(second.locator("#order-title")).to_have_text(f"Order {order_id}")
    assert len(orders_of(postgres_url, name)) == 1


def test_sign_up_keeps_the_cart_and_signs_in(site, new_context, postgres_url):
    page = new_context().new_page()
    add(page, site, "green-tea")
    page.goto(f"{site}/cart")
    page.locator("#checkout-signup").click()
    name = f"newcomer-{uuid.uuid4().hex[:8]}"
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill("a-good-password")
    page.get_by_role("button", name="Create the account").click()

    expect(page).to_have_url(f"{site}/cart")
    expect(page.locator(".flash.info")).to_have_text(f"Welcome, {name}! Your account is ready.")
    expect(page.locator("#signed-in-as")).to_contain_text(name)
    expect(page.locator("#line-green-tea .quantity")).to_have_value("1")
    page.get_by_role("button", name="Place your order").click()
    expect(page.locator("#order-total")).to_have_text("€4.50")
    assert [total for _, total in orders_of(postgres_url, name)] == [450]


def test_a_form_from_before_a_sign_in_in_another_tab(site, account, new_context):
    name, password = account
    context = new_context()
    old = context.new_page()
    old.goto(site)
    old.locator("#product-cups").get_by_label("Quantity").fill("2")  # typed, not yet sent
    other = context.new_page()
    sign_in(other, site, name, password)

    old.locator("#product-cups").get_by_role("button", name="Add to cart").click()
    expect(old.locator("h1")).to_have_text("Please confirm")
    expect(old.locator("#error-message")).to_have_text(
        f"You are now signed in as {name}: this page was opened before that sign-in "
        "(perhaps in another tab or window), so its form was not sent."
    )
    expect(old.locator("#refused-action")).to_have_text(
        "Nothing has changed yet. Add 2 of Pair of cups to your cart."
    )
    SCREENS.mkdir(parents=True, exist_ok=True)
    old.screenshot(path=str(SCREENS / "form-from-another-tab.png"), full_page=True)
    old.get_by_role("button", name="Add to cart").click()
    expect(old.locator(".flash.info")).to_have_text("Added 2 of Pair of cups to your cart (now 2).")
    expect(old.locator("#signed-in-as")).to_contain_text(name)

    # After a sign-out in the other tab, this tab's forms still work.
    other.reload()
    other.locator("#signout").click()
    expect(other.locator(".flash.info")).to_have_text("You have been signed out.")
    old.locator("#line-cups").get_by_role("button", name="Remove").click()
    expect(old.locator("h1")).to_have_text("Your cart")  # sent, not refused
    expect(old.locator(".flash.error")).to_have_text("Pair of cups was not in your cart.")
