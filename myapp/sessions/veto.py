"""pyramid_tm's commit veto: a server error keeps nothing, as a raised exception keeps nothing."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response


def server_error_veto(request: Request, response: Response) -> bool:
    """Abort the request's transaction (the session change and the view's own data) when
    the response is a 5xx, or when an exception view rendered it (what pyramid_tm does
    by itself only while no veto is configured)."""
    return response.status_int >= 500 or getattr(request, "exc_info", None) is not None
