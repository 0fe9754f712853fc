"""The shop's products: a small fixed catalogue kept in code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    price_cents: int
    description: str

    @property
    def price(self) -> str:
        return format_price(self.price_cents)

    @property
    def image(self) -> str:
        """Its picture, an asset spec for ``request.static_url``."""
        return f"myapp:static/products/{self.id}.svg"


PRODUCTS: dict[str, Product] = {
    product.id: product
    for product in (
        Product("green-tea", "Green tea", 450, "Sencha, 100 g loose leaves."),
        Product("black-tea", "Black tea", 390, "Assam breakfast blend, 100 g."),
        Product("teapot", "Teapot", 2900, "Cast iron, 0.8 litres."),
        Product("cups", "Pair of cups", 1800, "Stoneware, hand glazed."),
    )
}


def format_price(cents: int) -> str:
    """Euros with a thousands separator: ``€2,871.00``."""
    return f"€{cents // 100:,}.{cents % 100:02d}"


def get_product(product_id: str) -> Product | None:
    return PRODUCTS.get(product_id)
