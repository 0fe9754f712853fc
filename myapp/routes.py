"""URL routes of the site."""

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_static_view("static", "myapp:static", cache_max_age=3600)
    config.add_route("home", "/")
