"""Signing in (argon2-checked, rotating the session id) and signing out (ending the session)."""

from __future__ import annotations

from pyramid.csrf import new_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config

from myapp.accounts import authenticate
from myapp.auth import USERNAME_KEY, safe_next
from myapp.sessions.ending import sign_out


@view_config(route_name="signin", request_method="GET", renderer="myapp:templates/signin.jinja2")
def signin_form(request: Request) -> dict[str, object]:
    return {"next": safe_next(request.GET.get("next"), "")}


@view_config(route_name="signin", request_method="POST")
def signin(request: Request) -> HTTPSeeOther:
    next_path = safe_next(request.POST.get("next"), "")
    user = authenticate(
        request.dbsession, request.POST.get("username", ""), request.POST.get("password", "")
    )
    session = request.session
    if user is None:
        session.flash("Wrong username or password.", "error")
        query = {"next": next_path} if next_path else {}
        return HTTPSeeOther(request.route_url("signin", _query=query))
    # A new session id for the signed-in user (fixation), with the cart kept.
    session.set_user(str(user.id))
    session[USERNAME_KEY] = user.username
    new_csrf_token(request)
    session.flash(f"Signed in as {user.username}.")
    return HTTPSeeOther(next_path or request.route_url("home"))


@view_config(route_name="signout", request_method="POST")
def signout(request: Request) -> HTTPSeeOther:
    sign_out(request)  # ends the session on the server (every store), not only in this browser
    request.session.flash("You have been signed out.")
    return HTTPSeeOther(request.route_url("home"))
