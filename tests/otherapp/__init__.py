"""A Pyramid app that is not myapp's site: it includes ``myapp.sessions`` and nothing else
of myapp, and proves the package stands on its own."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.router import Router


def main(global_config: dict[str, Any], **settings: Any) -> Router:
    with Configurator(settings=settings) as config:
        config.include("myapp.sessions")  # pyramid_tm, request.dbsession, the stores, /healthz
        config.include("tests.support.views")  # views that drive the session
    return config.make_wsgi_app()
