"""Friendly error pages: 404, a refused form (400), and 503 when the database is unreachable."""

from __future__ import annotations

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
from pyramid.request import Request
from pyramid.view import exception_view_config, notfound_view_config
from sqlalchemy.exc import InterfaceError, OperationalError

from myapp.sessions import SessionStoreUnavailable

ERROR_TEMPLATE = "myapp:templates/error.jinja2"
RETRY_AFTER_SECONDS = "5"


def _page(request: Request, status: int, title: str, message: str) -> dict[str, object]:
    request.response.status = status
    # Error pages never touch the session: its store may be the thing that failed.
    return {"bare": True, "title": title, "message": message}


@notfound_view_config(renderer=ERROR_TEMPLATE)
def not_found(request: Request) -> dict[str, object]:
    return _page(request, 404, "Page not found", "There is no page at this address.")


@exception_view_config(BadCSRFToken, renderer=ERROR_TEMPLATE)
@exception_view_config(BadCSRFOrigin, renderer=ERROR_TEMPLATE)
def bad_csrf(request: Request) -> dict[str, object]:
    return _page(
        request,
        400,
        "This form has expired",
        "The form was sent without a valid security token, perhaps because it was open "
        "for a long time or your session ended. Go back, reload the page and try again.",
    )


# retryable_error=False: a transient database error (a serialization failure) is
# left to pyramid_retry, and reaches this page only on the last attempt.
@exception_view_config(OperationalError, renderer=ERROR_TEMPLATE, retryable_error=False)
@exception_view_config(InterfaceError, renderer=ERROR_TEMPLATE, retryable_error=False)
@exception_view_config(SessionStoreUnavailable, renderer=ERROR_TEMPLATE)
def unavailable(request: Request) -> dict[str, object]:
    request.response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return _page(
        request,
        503,
        "Temporarily unavailable",
        "This part of the site cannot reach its storage right now. Please try again in a moment.",
    )
