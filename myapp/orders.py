"""Orders: a signed-in shopper's cart turned into rows, at the catalogue's prices of the moment.

The rows are written through ``request.dbsession``, so they commit or roll back with the
rest of the request, the session write that empties the cart included.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DBSession
from zope.sqlalchemy import mark_changed

from myapp.cart import CartLine
from myapp.catalogue import format_price
from myapp.models import order_lines, orders

CHECKOUT_KEY_BYTES = 16
CHECKOUT_KEY_LENGTH = 22  # token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: str
    product_name: str
    unit_price_cents: int
    quantity: int

    @property
    def unit_price(self) -> str:
        return format_price(self.unit_price_cents)

    @property
    def subtotal(self) -> str:
        return format_price(self.unit_price_cents * self.quantity)


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    total_cents: int
    created_at: datetime
    lines: tuple[OrderLine, ...]

    @property
    def total(self) -> str:
        return format_price(self.total_cents)

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)


def new_checkout_key() -> str:
    """The key a checkout form carries; every form rendered gets its own."""
    return secrets.token_urlsafe(CHECKOUT_KEY_BYTES)


def well_formed_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and len(key) == CHECKOUT_KEY_LENGTH
        and key.isascii()
        and all(c.isalnum() or c in "-_" for c in key)
    )


def cart_digest(lines: list[CartLine]) -> str:
    """What the shopper saw on the checkout form (products, quantities, prices), so an
    order is only placed for the cart they saw."""
    text = ";".join(
        f"{line.product.id}:{line.quantity}:{line.product.price_cents}"
        for line in sorted(lines, key=lambda line: line.product.id)
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _insert_order(dialect: str) -> sa.Insert:
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return insert(orders).on_conflict_do_nothing(index_elements=["user_id", "checkout_key"])


def place_order(
    dbsession: DBSession, user_id: int, checkout_key: str, lines: list[CartLine]
) -> int | None:
    """Write the order; its id, or None when this checkout key made an order already.

    Prices are the catalogue's at this moment. On PostgreSQL a concurrent submission of
    the same key waits here until the first commits (then None) or rolls back (then this
    one writes the order).
    """
    total = sum(line.product.price_cents * line.quantity for line in lines)
    order_id = dbsession.execute(
        _insert_order(dbsession.get_bind().dialect.name)
        .values(user_id=user_id, checkout_key=checkout_key, total_cents=total)
        .returning(orders.c.id)
    ).scalar()
    if order_id is None:
        return None
    dbsession.execute(
        sa.insert(order_lines),
        [
            {
                "order_id": order_id,
                "product_id": line.product.id,
                "product_name": line.product.name,
                "unit_price_cents": line.product.price_cents,
                "quantity": line.quantity,
            }
            for line in lines
        ],
    )
    mark_changed(dbsession)  # Core writes: zope.sqlalchemy would not commit them otherwise
    return order_id


def order_for_key(dbsession: DBSession, user_id: int, checkout_key: str) -> int | None:
    return dbsession.execute(
        sa.select(orders.c.id).where(
            orders.c.user_id == user_id, orders.c.checkout_key == checkout_key
        )
    ).scalar()


def user_orders(dbsession: DBSession, user_id: int, order_id: int | None = None) -> list[Order]:
    """The user's orders, newest first (only ``order_id`` when given)."""
    query = sa.select(orders).where(orders.c.user_id == user_id)
    if order_id is not None:
        query = query.where(orders.c.id == order_id)
    rows = dbsession.execute(query.order_by(orders.c.id.desc())).all()
    if not rows:
        return []
    found: dict[int, list[OrderLine]] = {row.id: [] for row in rows}
    for line in dbsession.execute(
        sa.select(order_lines)
        .where(order_lines.c.order_id.in_(found))
        .order_by(order_lines.c.product_name)
    ):
        found[line.order_id].append(
            OrderLine(line.product_id, line.product_name, line.unit_price_cents, line.quantity)
        )
    return [Order(row.id, row.total_cents, row.created_at, tuple(found[row.id])) for row in rows]
