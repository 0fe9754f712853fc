"""The cart, kept in the web session as ``{product id: quantity}``."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from pyramid.config import Configurator

from .catalogue import Product, format_price, get_product

CART_KEY = "cart"
MAX_QUANTITY = 99
# A quantity as typed: 1 to 3 ASCII digits. str.isdigit() also takes "²" and "٣", and
# int() of thousands of digits raises (CPython's 4,300-digit limit).
QUANTITY_PATTERN = re.compile(r"[0-9]{1,3}")


def parse_quantity(raw: str) -> int | None:
    """The number ``raw`` spells (blanks around it allowed), or None."""
    text = raw.strip(" \t")
    return int(text) if QUANTITY_PATTERN.fullmatch(text) else None


@dataclass(frozen=True, slots=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def subtotal(self) -> str:
        return format_price(self.product.price_cents * self.quantity)


def quantities(session: MutableMapping[str, Any]) -> dict[str, int]:
    """A copy of the cart; products no longer in the catalogue are left out."""
    cart = session.get(CART_KEY) or {}
    return {pid: qty for pid, qty in cart.items() if get_product(pid) is not None}


def _store(session: MutableMapping[str, Any], cart: dict[str, int]) -> None:
    if cart:
        session[CART_KEY] = cart
    else:
        session.pop(CART_KEY, None)


@dataclass(frozen=True, slots=True)
class Addition:
    """What adding to the cart did: how many were asked for and added, and the new quantity."""

    asked: int
    added: int
    total: int

    @property
    def capped(self) -> bool:
        """Fewer were added than asked for, because of MAX_QUANTITY."""
        return self.added < self.asked


def add(session: MutableMapping[str, Any], product_id: str, quantity: int) -> Addition:
    """Add ``quantity``, capped at MAX_QUANTITY in total."""
    cart = quantities(session)
    before = cart.get(product_id, 0)
    cart[product_id] = min(MAX_QUANTITY, before + quantity)
    _store(session, cart)
    return Addition(asked=quantity, added=cart[product_id] - before, total=cart[product_id])


def set_quantity(session: MutableMapping[str, Any], product_id: str, quantity: int) -> None:
    """Set one product's quantity; 0 removes it."""
    cart = quantities(session)
    if quantity <= 0:
        cart.pop(product_id, None)
    else:
        cart[product_id] = min(MAX_QUANTITY, quantity)
    _store(session, cart)


def remove(session: MutableMapping[str, Any], product_id: str) -> bool:
    """Take a product out of the cart; False when it was not there."""
    cart = quantities(session)
    found = cart.pop(product_id, None) is not None
    _store(session, cart)
    return found


def empty(session: MutableMapping[str, Any]) -> None:
    """Take everything out of the cart (an order was placed)."""
    session.pop(CART_KEY, None)


def lines(session: MutableMapping[str, Any]) -> list[CartLine]:
    products = ((get_product(pid), qty) for pid, qty in quantities(session).items())
    return [CartLine(product, qty) for product, qty in products if product is not None]


def item_count(session: MutableMapping[str, Any]) -> int:
    return sum(quantities(session).values())


def total(cart_lines: list[CartLine]) -> str:
    return format_price(sum(line.product.price_cents * line.quantity for line in cart_lines))


def includeme(config: Configurator) -> None:
    """``request.cart_count``: how many items the visitor's cart holds (for the header)."""
    config.add_request_method(
        lambda request: item_count(request.session), "cart_count", property=True
    )
