"""Views that exist only in tests, to drive the session through every path."""

from __future__ import annotations

import transaction
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPFound
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy import text
from zope.sqlalchemy import mark_changed


class Boom(Exception):
    pass


def untouched(request: Request) -> Response:
    return Response("no session here")


def read(request: Request) -> dict:
    return {"value": request.session.get("value"), "new": request.session.new}


def read_then_report(request: Request) -> dict:
    """What loading the session left held while the view still runs."""
    value = request.session.get("value")
    return {
        "value": value,
        "checked_out": request.registry["dbengine"].pool.checkedout(),
        "dbsession": "dbsession" in request.__dict__,
    }


def begin_then_read(request: Request) -> dict:
    """The view's own transaction has begun before the session is loaded."""
    request.dbsession.execute(text("SELECT 1"))
    value = request.session.get("value")
    return {"value": value, "checked_out": request.registry["dbengine"].pool.checkedout()}


def write(request: Request) -> dict:
    request.session["value"] = request.params.get("value", "x")
    return {"value": request.session["value"]}


def write_nested(request: Request) -> dict:
    # An in-place change of a nested value, without changed(): still saved.
    request.session.setdefault("items", [])
    request.session["items"].append(request.params.get("item", "x"))
    return {"items": request.session["items"]}


def write_then_raise(request: Request) -> Response:
    request.session["value"] = "must-not-persist"
    request.dbsession.execute(text("INSERT INTO test_marks (note) VALUES ('must-not-persist')"))
    mark_changed(request.dbsession)
    raise Boom("the view failed after writing")


def write_then_forbidden(request: Request) -> Response:
    request.session["value"] = "must-not-persist"
    raise HTTPForbidden("refused after writing")


def flash_then_redirect(request: Request) -> Response:
    request.session.flash("must-not-persist")
    raise HTTPFound("/")


def write_then_answer_500(request: Request) -> Response:
    request.session["value"] = "must-not-persist"
    request.dbsession.execute(text("INSERT INTO test_marks (note) VALUES ('must-not-persist')"))
    mark_changed(request.dbsession)
    return Response(
        "the view answered a server error", status=int(request.params.get("status", 500))
    )


def write_then_doom(request: Request) -> dict:
    request.session["value"] = "must-not-persist"
    request.tm.doom()
    return {"doomed": True}


def write_then_abort(request: Request) -> dict:
    request.session["value"] = "must-not-persist"
    request.tm.abort()
    request.tm.begin()
    return {"aborted": True}


def write_with_data(request: Request) -> dict:
    request.session["value"] = "persisted"
    request.dbsession.execute(text("INSERT INTO test_marks (note) VALUES ('persisted')"))
    mark_changed(request.dbsession)
    return {"ok": True}


def write_then_commit_fails(request: Request) -> dict:
    """The session write is queued or done, then the database refuses the COMMIT."""
    request.session["value"] = "must-not-persist"
    request.dbsession.execute(text("INSERT INTO test_deferred (n) VALUES (1), (1)"))
    mark_changed(request.dbsession)
    return {"ok": True}


class _RefusesToVote:
    """A resource (a mail queue, say) that fails when the transaction votes, after
    the session's queued write (it sorts last)."""

    transaction_manager = None

    def abort(self, txn: object) -> None:
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn: object) -> None:
        raise Boom("another resource refused to vote")

    def sortKey(self) -> str:
        return "~~refuses-to-vote"


def write_then_other_resource_fails(request: Request) -> dict:
    """No database work of its own: the session's write is queued until the vote."""
    request.session["value"] = "must-not-persist"
    request.tm.get().join(_RefusesToVote())
    return {"ok": True}


def touch_in_callback(request: Request) -> Response:
    """First touches the session after pyramid_tm has committed."""

    def callback(request: Request, response: Response) -> None:
        request.session["value"] = "from-callback"

    request.add_response_callback(callback)
    return Response("ok")


def invalidate(request: Request) -> dict:
    request.session.invalidate()
    return {"invalidated": True}


def invalidate_and_write(request: Request) -> dict:
    request.session.invalidate()
    request.session["value"] = "after-invalidate"
    return {"ok": True}


def rotate(request: Request) -> dict:
    request.session.rotate()
    return {"rotated": True}


def login(request: Request) -> dict:
    request.session.set_user(request.params["user"])
    request.session["user"] = request.params["user"]
    return {"user": request.params["user"]}


def bad_value(request: Request) -> Response:
    try:
        request.session["bad"] = float("nan")
    except ValueError as exc:
        return Response(f"refused: {exc}")
    return Response("accepted")  # pragma: no cover - the assertion catches this


def big(request: Request) -> dict:
    request.session["blob"] = "x" * int(request.params["size"])
    return {"ok": True}


def csrf_form(request: Request) -> dict:
    from pyramid.csrf import get_csrf_token

    return {"token": get_csrf_token(request)}


def csrf_post(request: Request) -> dict:
    return {"posted": True}


def isession(request: Request) -> dict:
    from pyramid.interfaces import ISession
    from zope.interface.verify import verifyObject

    return {"verified": verifyObject(ISession, request.session)}


def includeme(config: Configurator) -> None:
    routes = {
        "untouched": (untouched, None),
        "read": (read, "json"),
        "read_then_report": (read_then_report, "json"),
        "begin_then_read": (begin_then_read, "json"),
        "write": (write, "json"),
        "write_nested": (write_nested, "json"),
        "write_then_raise": (write_then_raise, None),
        "write_then_answer_500": (write_then_answer_500, None),
        "write_then_doom": (write_then_doom, "json"),
        "write_then_forbidden": (write_then_forbidden, None),
        "flash_then_redirect": (flash_then_redirect, None),
        "write_then_abort": (write_then_abort, "json"),
        "write_with_data": (write_with_data, "json"),
        "write_then_commit_fails": (write_then_commit_fails, "json"),
        "write_then_other_resource_fails": (write_then_other_resource_fails, "json"),
        "touch_in_callback": (touch_in_callback, None),
        "invalidate": (invalidate, "json"),
        "invalidate_and_write": (invalidate_and_write, "json"),
        "rotate": (rotate, "json"),
        "login": (login, "json"),
        "bad_value": (bad_value, None),
        "big": (big, "json"),
        "csrf_form": (csrf_form, "json"),
        "isession": (isession, "json"),
    }
    for name, (view, renderer) in routes.items():
        config.add_route(f"t.{name}", f"/_t/{name}")
        config.add_view(view, route_name=f"t.{name}", renderer=renderer)
    config.add_route("t.csrf_post", "/_t/csrf_post")
    config.add_view(
        csrf_post,
        route_name="t.csrf_post",
        renderer="json",
        request_method="POST",
        require_csrf=True,
    )


__all__ = ["Boom", "includeme", "transaction"]
