"""myapp: a small shop whose sessions survive store outages."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.router import Router


def main(global_config: dict[str, Any], **settings: Any) -> Router:
    """The WSGI application, built from an ini file's ``[app:main]`` settings."""
    if global_config and global_config.get("__file__"):
        settings.setdefault("myapp.config_file", global_config["__file__"])
    settings.setdefault("retry.attempts", 3)
    with Configurator(settings=settings) as config:
        config.include("pyramid_jinja2")
        config.include("pyramid_retry")  # re-runs a request that hit a transient conflict
        config.include("myapp.metrics")  # before the sessions: it hears the start-up choice
        config.include("myapp.sessions")
        config.include("myapp.settings")
        config.include("myapp.security")  # headers, Cache-Control, the Host check
        config.set_default_csrf_options(require_csrf=True)
        config.include("myapp.auth")
        config.include("myapp.throttle")  # sign-in attempts per account and address
        config.include("myapp.anonymous")  # new anonymous sessions per address
        config.include("myapp.cart")
        config.include("myapp.routes")
        config.scan("myapp.views")
    return config.make_wsgi_app()
