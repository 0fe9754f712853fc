"""The home page: the catalogue, and a visit counter kept in the session."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.view import view_config

from myapp.catalogue import PRODUCTS


@view_config(route_name="home", renderer="myapp:templates/home.jinja2")
def home(request: Request) -> dict[str, object]:
    session = request.session
    if session.new:
        # Browsing stores nothing: a session begins with the first change (cart, sign-in).
        return {"visits": 1, "products": list(PRODUCTS.values())}
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"], "products": list(PRODUCTS.values())}
