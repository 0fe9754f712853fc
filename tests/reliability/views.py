"""Views for reliability tests: a cart per session, slow writes, and forced races."""

from __future__ import annotations

import json
import time

from pyramid.config import Configurator
from pyramid.request import Request
from sqlalchemy import text
from zope.sqlalchemy import mark_changed

from myapp.sessions import get_chain
from myapp.sessions.operations import ending
from myapp.sessions.request.factory import storage_key
from tests.support.cookies import token_of


def cart_add(request: Request) -> dict:
    # Read-modify-write of one list: the shape a lost update would tear.
    items = list(request.session.get("cart", []))
    items.append(request.params.get("item", "x"))
    request.session["cart"] = items
    return {"count": len(items)}


def cart(request: Request) -> dict:
    return {"cart": request.session.get("cart", []), "new": request.session.new}


def shopper(request: Request) -> dict:
    """The cart, and who is signed in (``/_t/login`` sets ``user``)."""
    session = request.session
    return {"cart": session.get("cart", []), "new": session.new, "user": session.get("user")}


def slow_write(request: Request) -> dict:
    # Read now, write after a pause: a sign-out may land in between.
    request.session.get("value")
    time.sleep(float(request.params.get("sleep", "1")))
    request.session["value"] = request.params.get("value", "late")
    return {"ok": True}


def slow_read(request: Request) -> dict:
    value = request.session.get("value")
    time.sleep(float(request.params.get("sleep", "1")))
    return {"value": value}


def race_once(request: Request) -> dict:
    """Write the session; on the first attempt (the first ``lose`` attempts) another
    writer gets in first."""
    request.session["value"] = request.params.get("value", "raced")
    attempt = request.environ.get("retry.attempt", 0)
    request.environ.setdefault("test.attempts", []).append(attempt)
    if attempt < int(request.params.get("lose", 1)):
        store = get_chain(request.registry).active
        token = token_of(request.cookies["session"])
        record = store.load(storage_key(token), time.time())
        other = {**json.loads(record.data), "value": "other"}  # keeps a CSRF token
        store.save(record.with_changes(data=json.dumps(other)), record.version)
    if request.params.get("with_data"):
        # Database work of the view's own: the session write joins its transaction.
        request.dbsession.execute(text("INSERT INTO test_marks (note) VALUES ('raced')"))
        mark_changed(request.dbsession)
    return {"attempt": attempt}


def lose_session_connection(request: Request) -> dict:
    """Read (and with ``rotate``, rotate) the session, then end the backend of this
    request's session transaction, as a database restart or an idle-connection
    killer would."""
    value = request.session.get("value")
    if request.params.get("rotate"):
        request.session.rotate()
    bound = request.environ["myapp.sessions.sql_store"]
    pid = bound._session_txn._pooled.driver_connection.info.backend_pid
    with request.registry["dbengine"].connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    return {"value": value}


def sign_out(request: Request) -> dict:
    """The site's sign-out: the session ends in every store and the read cache."""
    ending.sign_out(request)
    return {"signed_out": True}


def end_others(request: Request) -> dict:
    """ "Your sessions" → end every other session of this user."""
    user_id = request.session.user_id
    reach = ending.end_user_everywhere(request, user_id, except_key=request.session_key)
    return {"ended": reach.ended, "missed": reach.missed}


def includeme(config: Configurator) -> None:
    for name, view in {
        "cart_add": cart_add,
        "cart": cart,
        "shopper": shopper,
        "slow_write": slow_write,
        "slow_read": slow_read,
        "race_once": race_once,
        "lose_session_connection": lose_session_connection,
        "sign_out": sign_out,
        "end_others": end_others,
    }.items():
        config.add_route(f"r.{name}", f"/_r/{name}")
        config.add_view(view, route_name=f"r.{name}", renderer="json")
