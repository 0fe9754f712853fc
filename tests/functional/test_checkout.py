"""Checkout through WebTest: the order and the emptied cart commit together or not at all,
and one checkout form makes one order however often it is sent."""

from __future__ import annotations

import pytest

from tests.support.orders import (
    orders_of,
    refuse_doomed_orders_at_commit,
    refuse_session_write_after_checkout,
)
from tests.support.site import add_to_cart, cart_lines, flashes, new_user, sign_in, signed_in_as

CHECKOUT_STORES = ("sql-postgres", "redis", "memory")


def signed_in_with_cart(handle, prefix: str = "buyer") -> str:
    name, password = new_user(handle.engine, prefix)
    page = handle.app.get("/signin")
    form = page.forms["signin-form"]
    form["username"], form["password"] = name, password
    assert signed_in_as(form.submit().follow()) == name
    add_to_cart(handle.app, "green-tea", 2)
    add_to_cart(handle.app, "teapot")
    return name


def checkout_form(handle):
    return handle.app.get("/cart").forms["checkout-form"]


@pytest.mark.parametrize("backend", CHECKOUT_STORES)
def test_checkout_writes_the_order_at_catalogue_prices_and_empties_the_cart(make_app, backend):
    handle = make_app(backend)
    name = signed_in_with_cart(handle)
    page = checkout_form(handle).submit().follow()
    [(order_id, total)] = orders_of(handle.engine, name)
    assert total == 2 * 450 + 2900
    assert flashes(page) == [f"Thank you! Your order number {order_id} is placed."]
    assert page.html.find(id="order-total").text == "€38.00"
    assert page.html.select_one("#order-line-green-tea .quantity").text == "2"
    assert cart_lines(handle.app.get("/cart")) == {}
    listed = handle.app.get("/orders")
    assert listed.html.find(id=f"order-{order_id}") is not None
    assert "3 items" in listed.html.find(id=f"order-{order_id}").text
    # The next requests work: another cart, another order.
    add_to_cart(handle.app, "cups")
    checkout_form(handle).submit().follow()
    assert [t for _, t in orders_of(handle.engine, name)] == [3800, 1800]


@pytest.mark.parametrize("backend", CHECKOUT_STORES)
def test_the_same_checkout_form_sent_twice_makes_one_order(make_app, backend):
    handle = make_app(backend)
    name = signed_in_with_cart(handle)
    form = checkout_form(handle)
    first = form.submit().follow()
    again = form.submit().follow()  # the back button, a second tab, a retry
    [(order_id, _)] = orders_of(handle.engine, name)
    assert flashes(again) == ["This order was already placed; here it is."]
    assert again.request.path == first.request.path == f"/orders/{order_id}"


def test_an_order_refused_at_commit_leaves_the_cart_whole_and_no_order(
    make_app, postgres_url, caplog
):
    refuse_doomed_orders_at_commit(postgres_url)
    handle = make_app("sql-postgres")
    name = signed_in_with_cart(handle, "doomed")
    refused = checkout_form(handle).submit(status=500)
    assert refused.html.find("h1").text == "Your order was not placed"
    assert "your cart is just as it was" in refused.html.find(id="error-message").text
    assert orders_of(handle.engine, name) == []
    cart = handle.app.get("/cart")
    assert cart_lines(cart) == {"green-tea": 2, "teapot": 1}
    assert signed_in_as(cart) == name
    # Another shopper is served meanwhile, and this one can still change the cart.
    other = make_app("sql-postgres")
    assert orders_of(other.engine, signed_in_with_cart(other)) == []
    assert cart_lines(add_to_cart(handle.app, "cups")) == {"green-tea": 2, "teapot": 1, "cups": 1}


def test_a_refused_session_write_places_no_order(make_app, postgres_url):
    refuse_session_write_after_checkout(postgres_url)
    handle = make_app("sql-postgres")
    name = signed_in_with_cart(handle, "nosave")
    refused = checkout_form(handle).submit(status=503)
    assert refused.html.find("h1").text == "Your order was not placed"
    assert orders_of(handle.engine, name) == []
    assert cart_lines(handle.app.get("/cart")) == {"green-tea": 2, "teapot": 1}
    assert cart_lines(add_to_cart(handle.app, "cups")) == {"green-tea": 2, "teapot": 1, "cups": 1}


def test_checkout_asks_an_anonymous_visitor_to_sign_in_keeping_the_cart(make_app):
    handle = make_app("sql-postgres")
    cart = add_to_cart(handle.app, "cups")
    assert cart.html.find(id="checkout-form") is None
    assert cart.html.find(id="checkout-signup") is not None
    sign_in(handle.app, "alice")
    assert cart_lines(handle.app.get("/cart")) == {"cups": 1}


def test_a_form_for_a_cart_that_changed_since_places_nothing(make_app):
    handle = make_app("sql-postgres")
    name = signed_in_with_cart(handle)
    form = checkout_form(handle)
    add_to_cart(handle.app, "cups")  # another tab
    page = form.submit().follow()
    assert orders_of(handle.engine, name) == []
    assert "Your cart changed after this page was opened" in flashes(page)[0]
    assert cart_lines(page) == {"green-tea": 2, "teapot": 1, "cups": 1}
