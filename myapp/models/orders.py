"""The ``orders`` and ``order_lines`` tables: what a shopper bought, at the prices of the day.

``checkout_key`` comes from the checkout form: a second submission of the same form (two
tabs, the back button, a retry) finds the order the first one made instead of a new one.
"""

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
)

from .meta import metadata

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("checkout_key", String(64), nullable=False, comment="from the checkout form"),
    Column("total_cents", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("user_id", "checkout_key"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column(
        "order_id",
        Integer,
        ForeignKey("orders.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("product_id", String(64), primary_key=True),
    Column("product_name", String(128), nullable=False),
    Column("unit_price_cents", Integer, nullable=False, comment="the catalogue's price then"),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)
