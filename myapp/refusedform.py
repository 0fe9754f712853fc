"""A form refused for its security token, offered again in plain words.

A token changes when this browser signs in (a planted session's token must not carry
over) and when it signs out; a page opened before that, in another tab, still holds the
old one. Refusing its form is right, since who is signed in has changed, but the shopper
should not lose what they meant to do: the page says what happened, describes the
action, and resends it with a fresh token in one click. What they typed is kept, except
a password, which is never written back into a page.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyramid.csrf import get_csrf_token
from pyramid.request import Request

from myapp.cart import MAX_QUANTITY, parse_quantity
from myapp.catalogue import get_product

MAX_FIELDS = 20
MAX_VALUE_LENGTH = 2048
SECRET_FIELDS = frozenset({"password", "csrf_token"})


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    value: str


def _printable(text: str) -> bool:
    return text.isprintable() and len(text) <= MAX_VALUE_LENGTH


def kept_fields(request: Request) -> list[Field]:
    """The refused form's fields worth sending again (no token, no password)."""
    fields = [
        Field(name, value)
        for name, value in request.POST.items()
        if isinstance(value, str)
        and name not in SECRET_FIELDS
        and _printable(name)
        and _printable(value)
    ]
    return fields[:MAX_FIELDS]


def _quantity(request: Request) -> str:
    number = parse_quantity(request.POST.get("quantity", "1"))
    return str(number) if number is not None and number <= MAX_QUANTITY else "1"


def describe(request: Request) -> tuple[str, str]:
    """What the form would do, and its button's label."""
    route = request.matched_route.name if request.matched_route else ""
    product = get_product(request.POST.get("product", ""))
    name = product.name if product else "this product"
    if route == "cart_add":
        quantity = _quantity(request)
        return f"Add {quantity} of {name} to your cart.", "Add to cart"
    if route == "cart_update":
        quantity = _quantity(request)
        return f"Set the quantity of {name} in your cart to {quantity}.", "Update the cart"
    if route == "cart_remove":
        return f"Remove {name} from your cart.", "Remove it"
    if route == "checkout":
        return "Place your order for what is in your cart.", "Place the order"
    if route == "signin":
        return "Sign in.", "Sign in"
    if route == "signup":
        return "Create your account.", "Create the account"
    if route == "signout":
        return "Sign out.", "Sign out"
    if route in {"account_sessions_end", "account_sessions_end_others"}:
        return "End the session you chose.", "End it"
    return "Send the form again.", "Send it again"


def what_happened(request: Request) -> str:
    user = request.user
    if user is not None:
        return (
            f"You are now signed in as {user.name}: this page was opened before that "
            "sign-in (perhaps in another tab or window), so its form was not sent."
        )
    return (
        "You signed out, or your session ended, after this page was opened (perhaps in "
        "another tab or window), so its form was not sent."
    )


def resend_form(request: Request) -> dict[str, object]:
    """The values ``refused_form.jinja2`` needs."""
    action, button = describe(request)
    route = request.matched_route
    return {
        "title": "Please confirm",
        "message": what_happened(request),
        "action": action,
        "button": button,
        # The same address, on this site only (the route's, never one from the request).
        "post_to": request.route_url(route.name) if route else None,
        "fields": kept_fields(request),
        "asks_password": "password" in request.POST,
        "csrf_token": get_csrf_token(request),
    }
