""" "Your sessions": a signed-in user's active sessions, and ending any of them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from myapp.auth import SignedInUser, sign_in_redirect
from myapp.devices import device_name
from myapp.relativetime import exact_time, iso_time, time_ago
from myapp.sessions.operations.ending import (
    end_session_everywhere,
    end_user_everywhere,
    list_user_everywhere,
    sign_out,
)
from myapp.sessions.stores.base import SessionRecord
from myapp.signinmarker import forget_sign_in


@dataclass(frozen=True, slots=True)
class When:
    """A time as the page shows it: "5 minutes ago", the exact time on hover."""

    ago: str
    exact: str
    iso: str

    @classmethod
    def of(cls, epoch: float, now: float) -> When:
        return cls(time_ago(epoch, now), exact_time(epoch), iso_time(epoch))


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session as the page shows it; ``key`` is the storage key (a hash, no credential)."""

    key: str
    created: When
    last_active: When
    device: str
    user_agent: str
    current: bool


def _sessions_of(request: Request, user: SignedInUser) -> list[SessionRecord]:
    return list_user_everywhere(request, user.id)


def _back(request: Request) -> HTTPSeeOther:
    return HTTPSeeOther(request.route_url("account_sessions"))


@view_config(
    route_name="account_sessions",
    request_method="GET",
    renderer="myapp:templates/sessions.jinja2",
)
def list_sessions(request: Request) -> dict[str, object] | Response:
    user = request.user
    if user is None:
        return sign_in_redirect(request)
    current = request.session_key
    now = time.time()
    rows = [
        SessionRow(
            key=record.key,
            created=When.of(record.created, now),
            last_active=When.of(record.last_active, now),
            device=device_name(record.user_agent),
            user_agent=record.user_agent or "",
            current=record.key == current,
        )
        for record in _sessions_of(request, user)
    ]
    rows.sort(key=lambda row: not row.current)  # this device first, then oldest first
    return {"rows": rows, "others": sum(not row.current for row in rows)}


@view_config(route_name="account_sessions_end", request_method="POST")
def end_session(request: Request) -> Response:
    user = request.user
    if user is None:
        return sign_in_redirect(request)
    key = request.POST.get("key", "")
    # Only a key listed for this user may be ended: a form can be forged.
    if key not in {record.key for record in _sessions_of(request, user)}:
        request.session.flash("That session has already ended.", "error")
        return _back(request)
    if key == request.session_key:
        sign_out(request)
        forget_sign_in(request)
        request.session.flash("You have been signed out.")
        return HTTPSeeOther(request.route_url("home"))
    end_session_everywhere(request, key)
    request.session.flash("That session has been ended: its browser is signed out.")
    return _back(request)


@view_config(route_name="account_sessions_end_others", request_method="POST")
def end_other_sessions(request: Request) -> Response:
    user = request.user
    if user is None:
        return sign_in_redirect(request)
    ended = end_user_everywhere(request, user.id, except_key=request.session_key).ended
    request.session.flash(
        f"Signed out everywhere else ({ended} other session{'s' if ended != 1 else ''} ended)."
    )
    return _back(request)
