"""A shopper in a real browser: sign in, cart, a browser restart, a second device ended."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.shopper import IPHONE, sign_in


def test_shopping_across_a_restart_and_ending_another_device(site, account, new_context):
    name, password = account
    first = new_context()
    page = first.new_page()
    sign_in(page, site, name, password)

    page.goto(site)
    product = page.locator("#product-green-tea")
    product.get_by_label("Quantity").fill("2")
    product.get_by_role("button", name="Add to cart").click()
    expect(page.locator(".flash.info")).to_have_text("Added 2 of Green tea to your cart (now 2).")
    expect(page.locator("#line-green-tea .quantity")).to_have_value("2")
    page.reload()
    expect(page.locator(".flash")).to_have_count(0)  # shown once

    # Close the browser; a new one with the saved cookies finds the cart and the user.
    saved = first.storage_state()
    first.close()
    restarted = new_context(storage_state=saved)
    page = restarted.new_page()
    page.goto(f"{site}/cart")
    expect(page.locator("#line-green-tea .quantity")).to_have_value("2")
    expect(page.locator("#cart-total")).to_have_text("€9.00")
    expect(page.locator("#signed-in-as")).to_contain_text(name)

    # A second device signs in too.
    second = new_context(user_agent=IPHONE)
    other = second.new_page()
    sign_in(other, site, name, password)

    # End the second device's session from "Your sessions" on the first.
    page.goto(f"{site}/account/sessions")
    rows = page.locator("tr.session")
    expect(rows).to_have_count(2)
    expect(page.locator("tr.session.current")).to_contain_text("This device")
    page.locator("tr.session", has_text="Safari on iPhone").get_by_role(
        "button", name="End this session"
    ).click()
    expect(page.locator(".flash.info")).to_have_text(
        "That session has been ended: its browser is signed out."
    )
    expect(rows).to_have_count(1)

    other.reload()
    expect(other.locator(".flash.info")).to_have_text("You were signed out from another device.")
    expect(other.locator("#signin-link")).to_be_visible()
    expect(other.locator("#signed-in-as")).to_have_count(0)

    page.locator("#signout").click()
    expect(page.locator(".flash.info")).to_have_text("You have been signed out.")
    expect(page.locator("#signin-link")).to_be_visible()
    page.goto(f"{site}/cart")
    expect(page.locator("#cart-empty")).to_be_visible()


def test_a_form_without_its_token_gets_the_page_that_sends_it_again(site, new_context):
    page = new_context().new_page()
    page.goto(site)
    page.evaluate(
        "document.querySelector('#product-teapot input[name=csrf_token]').value = 'forged'"
    )
    page.locator("#product-teapot").get_by_role("button", name="Add to cart").click()
    expect(page.locator("h1")).to_have_text("Please confirm")
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#line-teapot .quantity")).to_have_value("1")
