"""Ending sessions in every store that may hold them, not only the one serving now.

A session can outlive a switch of stores: one created on Redis while PostgreSQL was
down is read through (and moved) only when it is next used, and the read cache keeps
copies of database rows. Ending a session must reach them all, or a device that was
signed out is served again after a failover, a recovery or from the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyramid.request import Request

from ..assemble import get_chain
from ..exceptions import SessionStoreUnavailable, StoreError
from ..interfaces import IUserSessions
from ..stores.base import SessionRecord, SessionStore

log = logging.getLogger(__name__)


@dataclass
class Reach:
    """What ending reached: sessions ended, and the stores that could not be asked."""

    ended: int = 0
    missed: list[str] = field(default_factory=list)


def _each(
    request: Request,
    what: str,
    call: Callable[[SessionStore], int],
    *,
    serving_too: bool = True,
    level: int = logging.WARNING,
) -> Reach:
    """``call`` on every built store; the serving one on the request's transaction.

    A failure of the serving store is the request's failure (a 503). Another store that
    fails is reported and logged; one known to be down (its last check failed, or its
    breaker is open) is not asked at all, so it costs no timeout.
    """
    chain = get_chain(request.registry)
    reach = Reach()
    for index, state in enumerate(chain.states):
        store = state.store
        if store is None:
            continue  # never built: it holds nothing
        serving = index == chain.active_index
        if serving and not serving_too:
            continue
        if serving:
            store = store.bind(request)
        elif state.ready is False or chain.breaker_open(index):
            reach.missed.append(state.name)
            continue
        try:
            reach.ended += call(store)
        except StoreError as exc:
            if serving:
                raise SessionStoreUnavailable(store.name, exc.kind, str(exc)) from exc
            reach.missed.append(state.name)
    if reach.missed:
        log.log(
            level,
            "%s: session store(s) %s could not be reached; what they hold ends when it "
            "expires, or run `myapp-sessions end-user` once they answer",
            what,
            ", ".join(repr(name) for name in reach.missed),
        )
    return reach


def end_session_everywhere(request: Request, key: str, *, elsewhere_only: bool = False) -> Reach:
    """Delete the session stored under ``key`` from every store (and the read cache).

    ``elsewhere_only``: leave the serving store to ``session.invalidate()``, which ends
    the request's own session there when the request commits.
    """

    def delete(store: SessionStore) -> int:
        store.delete(key)
        return 0

    return _each(request, "ending a session", delete, serving_too=not elsewhere_only)


def sign_out(request: Request) -> None:
    """End the request's session here and in every other store that may hold a copy."""
    key = request.session_key
    if key is not None:
        end_session_everywhere(request, key, elsewhere_only=True)
    request.session.invalidate()


def end_user_everywhere(request: Request, user_id: str, *, except_key: str | None = None) -> Reach:
    """End every session of ``user_id`` but ``except_key`` in every store; count them."""
    return _each(
        request,
        "ending a user's sessions",
        lambda store: (
            store.delete_user(user_id, except_key=except_key)
            if IUserSessions.providedBy(store)
            else 0
        ),
    )


def list_user_everywhere(request: Request, user_id: str) -> list[SessionRecord]:
    """The live sessions of ``user_id`` in every store, each once (the serving store's copy)."""
    now = time.time()
    records: dict[str, SessionRecord] = {}

    def collect(store: SessionStore) -> int:
        if not IUserSessions.providedBy(store):
            return 0
        for record in store.list_user(user_id, now):
            records.setdefault(record.key, record)
        return 0

    # A page view: a store that is away is worth a note, not a warning each time.
    _each(request, "listing a user's sessions", collect, level=logging.INFO)
    return sorted(records.values(), key=lambda record: record.created)
