"""Signing in (argon2-checked, rotating the session id) and signing out (ending the session)."""

from __future__ import annotations

from pyramid.csrf import check_csrf_origin, check_csrf_token, new_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config

from myapp.accounts import USERNAME_MAX, authenticate
from myapp.auth import USERNAME_KEY, safe_next
from myapp.signinmarker import forget_sign_in, remember_sign_in

# A flash queue that carries the name typed before a failed sign-in back into the form.
TYPED_NAME_QUEUE = "signin-username"


@view_config(route_name="signin", request_method="GET", renderer="myapp:templates/signin.jinja2")
def signin_form(request: Request) -> dict[str, object]:
    typed = request.session.pop_flash(TYPED_NAME_QUEUE)
    return {"next": safe_next(request.GET.get("next"), ""), "username": typed[-1] if typed else ""}


@view_config(route_name="signin", request_method="POST")
def signin(request: Request) -> HTTPSeeOther:
    next_path = safe_next(request.POST.get("next"), "")
    user = authenticate(
        request.dbsession, request.POST.get("username", ""), request.POST.get("password", "")
    )
    session = request.session
    if user is None:
        session.flash("Wrong username or password.", "error")
        typed = request.POST.get("username", "")[:USERNAME_MAX]
        if typed.isprintable():  # no NUL or lone surrogate: the session refuses those
            session.flash(typed, TYPED_NAME_QUEUE)
        query = {"next": next_path} if next_path else {}
        return HTTPSeeOther(request.route_url("signin", _query=query))
    # A new session id for the signed-in user (fixation), with the cart kept.
    session.set_user(str(user.id))
    session[USERNAME_KEY] = user.username
    new_csrf_token(request)
    session.flash(f"Signed in as {user.username}.")
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
    session.invalidate()  # ends the session on the server, not only in this browser
    forget_sign_in(request)
    session.flash("You have been signed out.")
    return HTTPSeeOther(request.route_url("home"))
