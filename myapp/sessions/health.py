"""``GET /healthz`` and the plain 503 answer when the serving store fails mid-request."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response


def healthz(request: Request) -> dict[str, object]:
    """Always 200: a degraded site still serves. ``status`` says whether it is degraded."""
    from . import get_chain

    return get_chain(request.registry).health()


def store_unavailable(exc: Exception, request: Request) -> Response:
    response = Response(
        "Sessions are unavailable for a moment. Please try again shortly.\n",
        status=503,
        content_type="text/plain",
    )
    response.headers["Retry-After"] = "5"
    return response
