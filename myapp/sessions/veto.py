"""What a request's method and answer say about its transaction: which methods are
expected to change state, and pyramid_tm's commit veto (a server error keeps nothing,
as a raised exception keeps nothing)."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response

#: The methods that only read (RFC 9110, section 9.2.1), as Pyramid's CSRF check counts
#: them (``safe_methods``): a request with one of them is never expected to change state.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def expects_writes(method: str) -> bool:
    """Whether a request with this HTTP method is expected to change state."""
    return method.upper() not in SAFE_METHODS


def server_error_veto(request: Request, response: Response) -> bool:
    """Abort the request's transaction (the session change and the view's own data) when
    the response is a 5xx, or when an exception view rendered it (what pyramid_tm does
    by itself only while no veto is configured)."""
    return response.status_int >= 500 or getattr(request, "exc_info", None) is not None
