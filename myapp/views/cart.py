"""The cart pages: show, add, change a quantity, remove. Every change answers with a flash."""

from __future__ import annotations

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config

from myapp import cart
from myapp.catalogue import Product, get_product


@view_config(route_name="cart", request_method="GET", renderer="myapp:templates/cart.jinja2")
def show_cart(request: Request) -> dict[str, object]:
    lines = cart.lines(request.session)
    return {"lines": lines, "total": cart.total(lines), "max_quantity": cart.MAX_QUANTITY}


def _back_to_cart(request: Request) -> HTTPSeeOther:
    return HTTPSeeOther(request.route_url("cart"))


def _product(request: Request) -> Product | None:
    product = get_product(request.POST.get("product", ""))
    if product is None:
        request.session.flash("That product is not in our catalogue.", "error")
    return product


def _quantity(request: Request, minimum: int) -> int | None:
    raw = request.POST.get("quantity", "1").strip()
    if raw.isdigit() and minimum <= int(raw) <= cart.MAX_QUANTITY:
        return int(raw)
    request.session.flash(
        f"Please choose a quantity from {minimum} to {cart.MAX_QUANTITY}.", "error"
    )
    return None


@view_config(route_name="cart_add", request_method="POST")
def add(request: Request) -> HTTPSeeOther:
    product = _product(request)
    quantity = _quantity(request, 1) if product else None
    if product and quantity:
        total = cart.add(request.session, product.id, quantity)
        request.session.flash(f"Added {quantity} of {product.name} to your cart (now {total}).")
    return _back_to_cart(request)


@view_config(route_name="cart_update", request_method="POST")
def update(request: Request) -> HTTPSeeOther:
    product = _product(request)
    quantity = _quantity(request, 0) if product else None
    if product and quantity is not None:
        cart.set_quantity(request.session, product.id, quantity)
        if quantity:
            request.session.flash(f"{product.name}: quantity set to {quantity}.")
        else:
            request.session.flash(f"Removed {product.name} from your cart.")
    return _back_to_cart(request)


@view_config(route_name="cart_remove", request_method="POST")
def remove(request: Request) -> HTTPSeeOther:
    product = _product(request)
    if product:
        if cart.remove(request.session, product.id):
            request.session.flash(f"Removed {product.name} from your cart.")
        else:
            request.session.flash(f"{product.name} was not in your cart.", "error")
    return _back_to_cart(request)
