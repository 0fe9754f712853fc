"""Checkout and the shopper's orders.

Placing an order writes its rows and empties the cart in the request's one transaction:
if either cannot be stored, neither is, and the shopper keeps the cart they had.
"""

from __future__ import annotations

import logging

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.view import exception_view_config, view_config
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from myapp import cart
from myapp.auth import sign_in_redirect
from myapp.orders import (
    cart_digest,
    order_for_key,
    place_order,
    user_orders,
    well_formed_key,
)
from myapp.refusals import note_refusal
from myapp.sessions import SessionStoreUnavailable

log = logging.getLogger(__name__)
ERROR_TEMPLATE = "myapp:templates/error.jinja2"


def _user_id(request: Request) -> int | None:
    user = request.user
    if user is None or not user.id.isdigit():
        return None
    return int(user.id)


def _to_order(request: Request, order_id: int) -> HTTPSeeOther:
    return HTTPSeeOther(request.route_url("order", order_id=order_id))


def _back_to_cart(request: Request, message: str) -> HTTPSeeOther:
    request.session.flash(message, "error")
    return HTTPSeeOther(request.route_url("cart"))


@view_config(route_name="checkout", request_method="POST")
def checkout(request: Request) -> HTTPSeeOther:
    user_id = _user_id(request)
    if user_id is None:
        request.session.flash("Please sign in to place your order. Your cart stays as it is.")
        return HTTPSeeOther(request.route_url("signin", _query={"next": "/cart"}))
    key = request.POST.get("checkout_key", "")
    if not well_formed_key(key):
        return _back_to_cart(request, "Please place your order from your cart.")
    dbsession = request.dbsession
    placed = order_for_key(dbsession, user_id, key)
    if placed is not None:  # the same form sent again: back button, a second tab, a retry
        request.session.flash("This order was already placed; here it is.")
        return _to_order(request, placed)
    lines = cart.lines(request.session)
    if not lines:
        return _back_to_cart(request, "Your cart is empty: there is nothing to order.")
    if request.POST.get("cart_digest") != cart_digest(lines):
        return _back_to_cart(
            request,
            "Your cart changed after this page was opened (perhaps in another tab). "
            "Please check it and place your order again.",
        )
    order_id = place_order(dbsession, user_id, key, lines)
    if order_id is None:  # the same form, sent at the same moment, placed it first
        placed = order_for_key(dbsession, user_id, key)
        request.session.flash("This order was already placed; here it is.")
        return _to_order(request, placed) if placed else HTTPSeeOther(request.route_url("orders"))
    cart.empty(request.session)
    request.session.flash(f"Thank you! Your order number {order_id} is placed.")
    return _to_order(request, order_id)


# Any failure while the order or the emptied cart is stored, up to and including
# COMMIT, rolls both back: the page says so in plain words. A transient one (a lost
# write race, a failover) is first left to pyramid_retry (retryable_error=False).
@exception_view_config(
    DBAPIError, route_name="checkout", renderer=ERROR_TEMPLATE, retryable_error=False
)
@exception_view_config(
    SessionStoreUnavailable, route_name="checkout", renderer=ERROR_TEMPLATE, retryable_error=False
)
def checkout_failed(request: Request) -> dict[str, object]:
    exc = request.exception
    unavailable = isinstance(exc, OperationalError | InterfaceError | SessionStoreUnavailable)
    if unavailable:
        request.response.status = 503
        request.response.headers["Retry-After"] = "5"
        note_refusal(request, "checkout", exc)
    else:
        request.response.status = 500
        log.error("an order could not be stored: %s", exc)
    return {
        "bare": True,
        "title": "Your order was not placed",
        "message": "Something went wrong while saving your order, so nothing was ordered "
        "and your cart is just as it was. Please try again in a moment.",
        "action": {"href": request.route_url("cart"), "label": "Back to your cart"},
    }


@view_config(route_name="orders", request_method="GET", renderer="myapp:templates/orders.jinja2")
def orders_page(request: Request) -> object:
    user_id = _user_id(request)
    if user_id is None:
        return sign_in_redirect(request)
    return {"orders": user_orders(request.dbsession, user_id)}


@view_config(route_name="order", request_method="GET", renderer="myapp:templates/order.jinja2")
def order_page(request: Request) -> object:
    user_id = _user_id(request)
    if user_id is None:
        return sign_in_redirect(request)
    found = user_orders(request.dbsession, user_id, int(request.matchdict["order_id"]))
    if not found:
        raise HTTPNotFound()
    return {"order": found[0]}
