"""Creating an account: the rules of ``myapp-create-user``, throttled like signing in,
signed in at once with the cart kept."""

from __future__ import annotations

import logging
import math

from pyramid.csrf import new_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy.exc import IntegrityError

from myapp.accounts import USERNAME_MAX, UserExists, account_problems, create_user
from myapp.auth import safe_next, start_signed_in_session
from myapp.relativetime import duration
from myapp.settings import get_site_settings
from myapp.signinmarker import remember_sign_in
from myapp.throttle import client_address, get_throttle

log = logging.getLogger(__name__)
SIGNUP_TEMPLATE = "myapp:templates/signup.jinja2"


def _form(
    request: Request, *, username: str = "", problems: list[str] | None = None, status: int = 200
) -> Response:
    typed = username[:USERNAME_MAX]
    response = render_to_response(
        SIGNUP_TEMPLATE,
        {
            "next": safe_next(request.params.get("next"), ""),
            "username": typed if typed.isprintable() else "",
            "problems": problems or [],
        },
        request=request,
    )
    response.status = status
    return response


@view_config(route_name="signup", request_method="GET")
def signup_form(request: Request) -> Response:
    return _form(request)


def _sentence(problem: str) -> str:
    return problem[:1].upper() + problem[1:] + "."


@view_config(route_name="signup", request_method="POST")
def signup(request: Request) -> Response:
    username = request.POST.get("username", "")
    password = request.POST.get("password", "")
    settings = get_site_settings(request.registry)
    throttle = get_throttle(request.registry)
    address = client_address(request.remote_addr)

    attempt = throttle.attempt(username, address)  # counted before anything is checked
    wait = attempt.wait
    if wait > 0:
        log.warning("refused a sign-up (throttled) from %s", request.remote_addr or "unknown")
        response = _form(
            request,
            username=username,
            problems=[f"Too many attempts. Please try again in {duration(wait)}."],
            status=429,
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    problems = [
        _sentence(problem)
        for problem in account_problems(username, password, max_length=settings.password_max_length)
    ]
    user = None
    if not problems:
        dbsession = request.dbsession
        try:
            with dbsession.begin_nested():  # a name taken at the same moment: a message
                user = create_user(dbsession, username, password, hasher=settings.hasher)
        except (UserExists, IntegrityError):
            problems = ["That username is taken. Please choose another, or sign in."]
    if user is None:
        # Counted like a failed sign-in: trying names one after another is throttled.
        throttle.failed(attempt)
        return _form(request, username=username, problems=problems, status=400)
    log.info("new account %r from %s", user.username, request.remote_addr or "unknown")
    throttle.succeeded_after(request, attempt)
    start_signed_in_session(request.session, str(user.id), user.username)
    new_csrf_token(request)
    request.session.flash(f"Welcome, {user.username}! Your account is ready.")
    remember_sign_in(request)
    return HTTPSeeOther(safe_next(request.POST.get("next"), "") or request.route_url("home"))
