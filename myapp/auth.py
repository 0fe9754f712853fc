"""Who is signed in: the user tied to the web session, read without touching the database."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request

from myapp import signinmarker
from myapp.cart import CART_KEY, quantities
from myapp.sessions import Session

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


NEXT_MAX_LENGTH = 2048


def safe_next(target: str | None, default: str) -> str:
    """``target`` when it is an absolute path on this site in printable ASCII; else ``default``.

    Anything else is an open redirect (``//evil``, ``/\\evil``), a header injection
    (CR, LF) or a Location header WSGI cannot carry (non-ASCII, e.g. U+3000).
    """
    if not target or len(target) > NEXT_MAX_LENGTH:
        return default
    if not all("!" <= c <= "~" for c in target):  # printable ASCII without blanks
        return default
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def start_signed_in_session(session: Session, user_id: str, username: str) -> None:
    """Tie ``session`` to the user under a new id, keeping only the cart.

    Whatever else the anonymous session held stays behind: someone who planted that
    session's cookie in this browser must not have put anything into the signed-in one.
    """
    cart = quantities(session)
    session.clear()
    if cart:
        session[CART_KEY] = cart
    session.set_user(user_id)  # rotates the id (fixation)
    session[USERNAME_KEY] = username


def includeme(config: Configurator) -> None:
    config.add_request_method(signed_in_user, "user", reify=True)
