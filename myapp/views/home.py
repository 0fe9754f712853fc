"""The home page: the catalogue. It never writes the session, so browsing stores nothing."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.view import view_config

from myapp.cart import MAX_QUANTITY
from myapp.catalogue import PRODUCTS


@view_config(route_name="home", renderer="myapp:templates/home.jinja2")
def home(request: Request) -> dict[str, object]:
    return {"products": list(PRODUCTS.values()), "max_quantity": MAX_QUANTITY}
