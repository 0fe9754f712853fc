"""The home page: a visit counter kept in the session, so anyone can see sessions work."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.view import view_config


@view_config(route_name="home", renderer="myapp:templates/home.jinja2")
def home(request: Request) -> dict[str, object]:
    session = request.session
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"]}
