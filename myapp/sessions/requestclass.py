"""Request properties on one class, instead of a new class for every request.

Pyramid applies ``add_request_method(..., reify=True)`` properties (pyramid_tm's
``request.tm``, ``request.dbsession``...) by creating a new subclass of the request
class on every request, which costs as much as a small view. Once configuration
is done, this moves those properties onto a single subclass of the request factory.
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.interfaces import IRequestExtensions, IRequestFactory
from pyramid.request import Request

# After every other action (add_request_method, set_request_factory) has run.
ORDER = 1_000_000


def includeme(config: Configurator) -> None:
    registry = config.registry

    def install() -> None:
        extensions = registry.queryUtility(IRequestExtensions)
        if extensions is None or not extensions.descriptors:
            return
        base = registry.queryUtility(IRequestFactory, default=Request)
        if not (isinstance(base, type) and issubclass(base, Request)):
            return  # a factory function: leave Pyramid's per-request way alone
        attrs = {**extensions.descriptors, "__module__": base.__module__}
        registry.registerUtility(type(base.__name__, (base,), attrs), IRequestFactory)
        extensions.descriptors.clear()

    config.action(("myapp.sessions.requestclass",), install, order=ORDER)
