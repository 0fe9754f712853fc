"""myapp: a small shop whose sessions survive store outages."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.router import Router


def main(global_config: dict[str, Any], **settings: Any) -> Router:
    """The WSGI application, built from an ini file's ``[app:main]`` settings."""
    if global_config and global_config.get("__file__"):
        settings.setdefault("myapp.config_file", global_config["__file__"])
    with Configurator(settings=settings) as config:
        config.include("pyramid_jinja2")
        config.include("myapp.sessions")
        config.include("myapp.routes")
        config.scan("myapp.views")
    return config.make_wsgi_app()
