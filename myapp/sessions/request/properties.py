"""Request properties: the session a request arrived with (its storage key, whether it is
temporarily unavailable), and every reified property on one request class.

Pyramid applies ``add_request_method(..., reify=True)`` properties (pyramid_tm's
``request.tm``, ``request.dbsession``...) by creating a new subclass of the request
class on every request, which costs as much as a small view. Once configuration
is done, :func:`includeme` moves those properties onto a single subclass of the request
factory. Measured with ``python -m bench.instructions --only ours-sql-pg --requests 500``
(instructions per request of the serving process): a read 1,098,977 with it against
1,280,455 with Pyramid's own way (14% fewer), a write 1,510,811 against 1,693,902 (11%
fewer).
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.interfaces import IRequestExtensions, IRequestFactory, ISessionFactory
from pyramid.request import Request

from .factory import storage_key
from .storeio import UNAVAILABLE_KEY

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

    config.action(("myapp.sessions.request.properties",), install, order=ORDER)


def session_key(request: Request) -> str | None:
    """The key (a SHA-256, not a credential) the request's session was loaded from.

    None for a session that is new in this request. Pages that list a user's sessions
    use it to mark "this device".
    """
    if request.session.new:
        return None
    factory = request.registry.getUtility(ISessionFactory)
    verdict = factory.cookie.read(request)
    return None if verdict.token is None else storage_key(verdict.token)


def session_unavailable(request: Request) -> bool:
    """True when the request is served without its session for now (a store is down).

    The cookie is kept and the session comes back with its store; pages say so in
    plain words. Loads the session first, as any page does, except on an error page
    (which never touches the session: its store may be what failed).
    """
    if "session" not in request.__dict__ and request.exception is None:
        request.session  # noqa: B018 - loading decides it
    return bool(request.environ.get(UNAVAILABLE_KEY))
