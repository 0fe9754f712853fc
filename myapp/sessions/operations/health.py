"""``GET /healthz`` and the plain 503 answer when the serving store fails mid-request."""

from __future__ import annotations

import logging

from pyramid.request import Request
from pyramid.response import Response

from ..assemble import get_chain
from .operatoraccess import health_for

log = logging.getLogger(__name__)


def healthz(request: Request) -> dict[str, object]:
    """Always 200 (a degraded site still serves); ``status`` is ok, degraded or failing.

    Read from memory only: never a store call, so it answers at once during an outage.
    Store details only for operators (see ``operator``).
    """
    chain = get_chain(request.registry)
    chain.ensure_probing()
    return health_for(request, chain.health())


def _plain(text: str, status: int, retry_after: int | None = None) -> Response:
    response = Response(text, status=status, content_type="text/plain")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def store_unavailable(exc: Exception, request: Request) -> Response:
    return _plain(
        "Sessions are unavailable for a moment. Please try again shortly.\n", 503, retry_after=5
    )


def session_conflict(exc: Exception, request: Request) -> Response:
    """Reached only when pyramid_retry has no attempt left for a lost race."""
    return _plain(
        "Your change collided with another one on the same session. Please try again.\n",
        409,
        retry_after=1,
    )


def session_too_large(exc: Exception, request: Request) -> Response:
    """The request would have stored more than ``session.max_size``; nothing was saved."""
    log.warning("refused to store a session: %s", exc)
    return _plain(
        "This change would make your session too large, so it was not saved. "
        "Remove something (from your cart, for instance) and try again.\n",
        413,
    )
