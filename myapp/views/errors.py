"""Friendly error pages in the site's layout: 404, 405, a refused form (400), and 503 when
the database or the session store is unreachable."""

from __future__ import annotations

import logging

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
from pyramid.request import Request
from pyramid.view import exception_view_config, notfound_view_config, view_config
from sqlalchemy.exc import InterfaceError, OperationalError

from myapp.refusals import note_refusal
from myapp.refusedform import resend_form
from myapp.sessions import SessionConflict, SessionStoreUnavailable, SessionTooLarge

log = logging.getLogger(__name__)
ERROR_TEMPLATE = "myapp:templates/error.jinja2"
RETRY_AFTER_SECONDS = "5"


def _page(
    request: Request, status: int, title: str, message: str, *, bare: bool = False
) -> dict[str, object]:
    """The error page's values; ``bare`` leaves out everything that reads the session."""
    request.response.status = status
    return {"bare": bare, "title": title, "message": message}


@notfound_view_config(renderer=ERROR_TEMPLATE)
def not_found(request: Request) -> dict[str, object]:
    return _page(request, 404, "Page not found", "There is no page at this address.")


# The routes that only take a form: any other method gets a 405, not a 404. Pyramid
# tries the view with the most predicates first, so this one only answers what the
# POST views leave.
@view_config(route_name="signout", renderer=ERROR_TEMPLATE, require_csrf=False)
@view_config(route_name="cart_add", renderer=ERROR_TEMPLATE, require_csrf=False)
@view_config(route_name="cart_update", renderer=ERROR_TEMPLATE, require_csrf=False)
@view_config(route_name="cart_remove", renderer=ERROR_TEMPLATE, require_csrf=False)
@view_config(route_name="checkout", renderer=ERROR_TEMPLATE, require_csrf=False)
@view_config(route_name="account_sessions_end", renderer=ERROR_TEMPLATE, require_csrf=False)
@view_config(route_name="account_sessions_end_others", renderer=ERROR_TEMPLATE, require_csrf=False)
def method_not_allowed(request: Request) -> dict[str, object]:
    request.response.headers["Allow"] = "POST"
    return _page(
        request,
        405,
        "Nothing to see here",
        "This address is what a button on the site sends its form to; it has no page of "
        "its own. Use the button instead.",
    )


@exception_view_config(BadCSRFOrigin, renderer=ERROR_TEMPLATE)
def bad_origin(request: Request) -> dict[str, object]:
    return _page(
        request,
        400,
        "Form not accepted",
        "This form was sent from another website, so it was not accepted. Nothing has "
        "changed. If you meant to do this, do it from this shop's own pages.",
    )


@exception_view_config(BadCSRFToken, renderer="myapp:templates/refused_form.jinja2")
def bad_csrf(request: Request) -> dict[str, object]:
    """A form from a page opened before this browser signed in or out (another tab, the
    back button) or long ago: say which, and offer to send it again in one click."""
    request.response.status = 400
    return resend_form(request)


# retryable_error=False: a transient database error (a serialization failure) is
# left to pyramid_retry, and reaches this page only on the last attempt.
@exception_view_config(OperationalError, renderer=ERROR_TEMPLATE, retryable_error=False)
@exception_view_config(InterfaceError, renderer=ERROR_TEMPLATE, retryable_error=False)
@exception_view_config(SessionStoreUnavailable, renderer=ERROR_TEMPLATE)
def unavailable(request: Request) -> dict[str, object]:
    request.response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    route = request.matched_route
    where = f"{request.method} {route.name if route else 'an unknown address'}"
    note_refusal(request, where, request.exception)
    # No session here: its store may be the thing that failed.
    return _page(
        request,
        503,
        "Temporarily unavailable",
        "This part of the site cannot reach its storage right now. Please try again in a moment.",
        bare=True,
    )


@exception_view_config(SessionConflict, renderer=ERROR_TEMPLATE, retryable_error=False)
def conflict(request: Request) -> dict[str, object]:
    """Reached only when pyramid_retry has no attempt left for a lost race."""
    request.response.headers["Retry-After"] = "1"
    return _page(
        request,
        409,
        "Please try again",
        "Your change met another one made at the same moment (in another tab, perhaps), "
        "so it was not saved. Please go back and try again.",
        bare=True,
    )


@exception_view_config(SessionTooLarge, renderer=ERROR_TEMPLATE)
def too_large(request: Request) -> dict[str, object]:
    log.warning("refused to store a session: %s", request.exception)
    return _page(
        request,
        413,
        "That would not fit",
        "This change would make what we keep for you too large, so it was not saved. "
        "Remove something from your cart and try again.",
        bare=True,
    )
