"""Signing in (argon2-checked, throttled, rotating the session id) and signing out."""

from __future__ import annotations

import logging
import math

from pyramid.csrf import check_csrf_origin, check_csrf_token, new_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from myapp.accounts import USERNAME_MAX, authenticate, find_user, password_too_long
from myapp.auth import safe_next, start_signed_in_session
from myapp.metrics import count_failed_signin
from myapp.relativetime import duration
from myapp.sessions.operations.ending import sign_out
from myapp.sessions.request.session import SESSION_TOKEN_KEY
from myapp.settings import get_site_settings
from myapp.signinmarker import forget_sign_in, remember_sign_in
from myapp.throttle import client_address, get_throttle, name_fingerprint

log = logging.getLogger(__name__)
SIGNIN_TEMPLATE = "myapp:templates/signin.jinja2"
# A flash queue that carries the name typed before a failed sign-in back into the form.
TYPED_NAME_QUEUE = "signin-username"


def _typed_name(username: str) -> str:
    """The name as typed, fit to show again (no NUL or lone surrogate: the session
    refuses those), or empty."""
    typed = username[:USERNAME_MAX]
    return typed if typed.isprintable() else ""


@view_config(route_name="signin", request_method="GET", renderer=SIGNIN_TEMPLATE)
def signin_form(request: Request) -> dict[str, object]:
    typed = request.session.pop_flash(TYPED_NAME_QUEUE)
    return {"next": safe_next(request.GET.get("next"), ""), "username": typed[-1] if typed else ""}


def _retry_message(seconds: float) -> str:
    return f"Too many failed sign-ins. Please try again in {duration(seconds)}."


def _refused(request: Request, username: str, reason: str) -> None:
    """Log (never the password) and count a refused sign-in.

    A name that is no account is logged as a keyed fingerprint, never as typed: people
    type their password into the name field.
    """
    typed = username[:256]
    known = typed.strip() and typed.isprintable() and find_user(request.dbsession, typed)
    log.warning(
        "failed sign-in (%s) for %s from %s",
        reason,
        f"user {username[:64]!r}"  # repr() escapes newlines: the log cannot be forged
        if known
        else f"an unknown name (fingerprint {name_fingerprint(_log_key(request), username)})",
        request.remote_addr or "an unknown address",
    )
    count_failed_signin(request.registry, reason)


def _log_key(request: Request) -> bytes:
    return get_throttle(request.registry).secret


def _too_many(request: Request, seconds: float, next_path: str, username: str) -> Response:
    response = render_to_response(
        SIGNIN_TEMPLATE,
        {
            "next": next_path,
            "username": _typed_name(username),
            "retry_message": _retry_message(seconds),
        },
        request=request,
    )
    response.status = 429
    response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


@view_config(route_name="signin", request_method="POST")
def signin(request: Request) -> Response:
    next_path = safe_next(request.POST.get("next"), "")
    username = request.POST.get("username", "")
    password = request.POST.get("password", "")
    settings = get_site_settings(request.registry)
    throttle = get_throttle(request.registry)
    address = client_address(request.remote_addr)

    attempt = throttle.attempt(username, address)  # counted before any hashing
    if attempt.wait > 0:
        _refused(request, username, "throttled")
        return _too_many(request, attempt.wait, next_path, username)
    if password_too_long(password, settings.password_max_length):
        user, reason = None, "password_too_long"
    else:
        user = authenticate(
            request.dbsession,
            username,
            password,
            hasher=settings.hasher,
            max_length=settings.password_max_length,
        )
        reason = "wrong_password"
    session = request.session
    if user is None:
        _refused(request, username, reason)
        wait = throttle.failed(attempt)
        # One message: a second red banner would only repeat the first.
        wrong = "Wrong username or password."
        session.flash(f"{wrong} {_retry_message(wait)}" if wait > 0 else wrong, "error")
        typed = _typed_name(username)
        if typed:
            session.flash(typed, TYPED_NAME_QUEUE)
        query = {"next": next_path} if next_path else {}
        return HTTPSeeOther(request.route_url("signin", _query=query))
    throttle.succeeded_after(request, attempt)
    start_signed_in_session(session, str(user.id), user.username)
    new_csrf_token(request)
    session.flash(f"Welcome back, {user.username}.")  # the header says who is signed in
    remember_sign_in(request)
    return HTTPSeeOther(next_path or request.route_url("home"))


# The token is checked here, not by Pyramid: a sign-out form left open after signing
# out carries the token of the ended session, and there is nothing left to protect.
@view_config(route_name="signout", request_method="POST", require_csrf=False)
def signout(request: Request) -> HTTPSeeOther:
    session = request.session
    if request.user is None:
        session.flash("You are signed out.")
        return HTTPSeeOther(request.route_url("home"))
    check_csrf_origin(request)  # what Pyramid's own check does, in its order
    check_csrf_token(request)
    token = request.session.get(SESSION_TOKEN_KEY)
    sign_out(request)  # ends the session on the server (every store), not only in this browser
    forget_sign_in(request)
    request.session.flash("You have been signed out.")
    if token:
        # Forms still open in other tabs keep working: the anonymous session that
        # follows protects nothing the old token's holder did not have already.
        request.session[SESSION_TOKEN_KEY] = token
    return HTTPSeeOther(request.route_url("home"))
