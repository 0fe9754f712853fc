"""Request properties live on one request class: none is made per request."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.interfaces import IRequestFactory
from pyramid.response import Response
from webtest import TestApp


def build_app(seen: list) -> TestApp:
    calls = []

    def answer(request) -> int:
        calls.append(1)
        return len(calls)

    def view(request) -> Response:
        seen.append(type(request))
        return Response(f"{request.answer} {request.answer}")

    with Configurator() as config:
        config.add_request_method(answer, "answer", reify=True)
        config.include("myapp.sessions.request.properties")
        config.add_route("view", "/")
        config.add_view(view, route_name="view")
    return TestApp(config.make_wsgi_app())


def test_reified_properties_work_once_per_request():
    app = build_app([])
    assert app.get("/").text == "1 1"
    assert app.get("/").text == "2 2"


def test_every_request_is_of_the_one_registered_class():
    seen: list = []
    app = build_app(seen)
    app.get("/")
    app.get("/")
    registered = app.app.registry.queryUtility(IRequestFactory)
    assert seen == [registered, registered]
