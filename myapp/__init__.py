"""myapp: a small shop whose sessions survive store outages."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.router import Router


def main(global_config: dict[str, Any], **settings: Any) -> Router:
    """The WSGI application, built from an ini file's ``[app:main]`` settings.

    Loaded from an ini file (``pserve``), a setting it refuses stops the process with
    one line naming the file and the setting, not a traceback.
    """
    config_file = (global_config or {}).get("__file__")
    if not config_file:
        return make_app(settings)
    settings.setdefault("myapp.config_file", config_file)
    try:
        return make_app(settings)
    except ConfigurationError as exc:
        raise SystemExit(f"myapp: cannot start with {config_file}: {exc}") from None


def make_app(settings: dict[str, Any]) -> Router:
    """The WSGI application from settings; a bad one raises ConfigurationError."""
    settings.setdefault("retry.attempts", 3)
    with Configurator(settings=settings) as config:
        config.include("pyramid_jinja2")
        config.include("pyramid_retry")  # re-runs a request that hit a transient conflict
        config.include("myapp.metrics")  # before the sessions: it hears the start-up choice
        config.include("myapp.refusals")  # every 503 logged, at most once a minute per cause
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
