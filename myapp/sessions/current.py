"""``request.session_key``: the storage key of the session a request arrived with."""

from __future__ import annotations

from pyramid.interfaces import ISessionFactory
from pyramid.request import Request

from .codec import storage_key


def session_key(request: Request) -> str | None:
    """The key (a SHA-256, not a credential) the request's session was loaded from.

    None for a session that is new in this request. Pages that list a user's sessions
    use it to mark "this device".
    """
    if request.session.new:
        return None
    factory = request.registry.getUtility(ISessionFactory)
    verdict = factory.signer.loads(request.cookies.get(factory.options.cookie_name))
    return None if verdict.token is None else storage_key(verdict.token)
