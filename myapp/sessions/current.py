"""Request properties about the session a request arrived with: its storage key, and
whether it is temporarily unavailable."""

from __future__ import annotations

from pyramid.interfaces import ISessionFactory
from pyramid.request import Request

from .codec import storage_key
from .factory import UNAVAILABLE_KEY


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
