"""Who is signed in: the user tied to the web session, read without touching the database."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request

from myapp import signinmarker

USERNAME_KEY = "username"


@dataclass(frozen=True, slots=True)
class SignedInUser:
    id: str
    name: str


def signed_in_user(request: Request) -> SignedInUser | None:
    """The session's user; sessions carry the name so pages never need the database."""
    session = request.session
    signinmarker.check(request, signed_in=session.user_id is not None)
    if session.user_id is None:
        return None
    return SignedInUser(session.user_id, session.get(USERNAME_KEY, ""))


def sign_in_redirect(request: Request) -> HTTPSeeOther:
    """Send an anonymous visitor to the sign-in form, back here afterwards."""
    request.session.flash("Please sign in first.", "error")
    return HTTPSeeOther(request.route_url("signin", _query={"next": request.path_qs}))


def safe_next(target: str | None, default: str) -> str:
    """``target`` when it is a path on this site; an open redirect otherwise, so ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def includeme(config: Configurator) -> None:
    config.add_request_method(signed_in_user, "user", reify=True)
