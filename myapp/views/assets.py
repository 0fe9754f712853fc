"""Files browsers ask for at fixed addresses: ``/favicon.ico``."""

from __future__ import annotations

from importlib.resources import files

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

FAVICON = files("myapp") / "static" / "favicon.ico"
ONE_DAY = 86_400


@view_config(route_name="favicon", request_method="GET")
def favicon(request: Request) -> Response:
    response = Response(body=FAVICON.read_bytes(), content_type="image/x-icon")
    response.cache_expires(ONE_DAY)
    return response
