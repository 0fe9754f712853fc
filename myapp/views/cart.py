"""The cart pages: show, add, change a quantity, remove. Every change answers with a flash."""

from __future__ import annotations

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config

from myapp import cart
from myapp.catalogue import Product, get_product
from myapp.orders import cart_digest, new_checkout_key


@view_config(route_name="cart", request_method="GET", renderer="myapp:templates/cart.jinja2")
def show_cart(request: Request) -> dict[str, object]:
    lines = cart.lines(request.session)
    return {
        "lines": lines,
        "total": cart.total(lines),
        "max_quantity": cart.MAX_QUANTITY,
        # The checkout form's: sent twice, it still makes one order (myapp.orders).
        "checkout_key": new_checkout_key(),
        "cart_digest": cart_digest(lines),
    }


def _back_to_cart(request: Request) -> HTTPSeeOther:
    return HTTPSeeOther(request.route_url("cart"))


def _product(request: Request) -> Product | None:
    product = get_product(request.POST.get("product", ""))
    if product is None:
        request.session.flash("That product is not in our catalogue.", "error")
    return product


def _quantity(request: Request, product: Product, minimum: int) -> int | None:
    number = cart.parse_quantity(request.POST.get("quantity", "1"))
    if number is not None and minimum <= number <= cart.MAX_QUANTITY:
        return number
    if number is not None and number > cart.MAX_QUANTITY:
        message = f"You can have at most {cart.MAX_QUANTITY} of {product.name}."
    else:
        message = f"Please choose a quantity from {minimum} to {cart.MAX_QUANTITY}."
    request.session.flash(message, "error")
    return None


def _added(product: Product, addition: cart.Addition) -> str:
    if not addition.capped:
        return f"Added {addition.added} of {product.name} to your cart (now {addition.total})."
    cap = f"You can have at most {cart.MAX_QUANTITY}."
    if addition.added == 0:
        return f"You already have {addition.total} of {product.name} in your cart. {cap}"
    return f"Added {addition.added} of {product.name} to your cart (now {addition.total}). {cap}"


@view_config(route_name="cart_add", request_method="POST")
def add(request: Request) -> HTTPSeeOther:
    product = _product(request)
    quantity = _quantity(request, product, 1) if product else None
    if product and quantity:
        addition = cart.add(request.session, product.id, quantity)
        request.session.flash(_added(product, addition))
    return _back_to_cart(request)


@view_config(route_name="cart_update", request_method="POST")
def update(request: Request) -> HTTPSeeOther:
    product = _product(request)
    quantity = _quantity(request, product, 0) if product else None
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
