"""Server-side sessions for any Pyramid app: ``config.include('myapp.sessions')``.

Reads the ``session.*`` settings once, builds the store chain (sql, redis, memory by
default), picks the first store that is ready, and registers the ISessionFactory,
pyramid_tm, the SQLAlchemy wiring and ``GET /healthz``.

The folders, in the order a request meets them (each imports only the ones after it):
``request/`` (cookie in, load, the session, its writes, cookie out), ``chain/`` (which
store serves), ``stores/`` (the stores), ``database/`` (the engine, ``request.dbsession``,
pyramid_tm, the table), then ``options/`` and the modules every folder uses
(``interfaces``, ``exceptions``, ``events``, ``redact``). ``assemble`` builds the chain
from the options; ``operations/`` (purge, ending sessions, ``/healthz``) use the chain and
the stores.

Words, one per idea:

session
    The web session a view sees as ``request.session`` (a dict of JSON values); never
    a SQLAlchemy session, which is ``dbsession``.
token, storage key
    The random token the session cookie carries (signed), and its SHA-256, which
    stores index by: a store never holds a live token.
record
    What a store keeps of one session (``SessionRecord``): its storage key, its data
    as JSON text, its times, user and version. Shared stores keep an HMAC with it
    (``stores/authenticator``).
store
    Where records live (``sql``, ``redis``, ``memory``, or an app's own): a handful
    of I/O methods behind ``ISessionStore``. Its *request-bound* form is the store as one
    request uses it.
chain
    The configured stores in order of preference; the first that works *serves*. A
    store that fails is *failing* (its breaker open) until a probe finds it back.
read cache
    Redis in front of the sql store (``session.cache = redis``): copies of records,
    dropped when they change.
unavailable
    A session whose store cannot be asked now: served without it (its cookie kept),
    or refused with a 503 when the request must change it; never ended.
transaction
    The request's transaction: the ``transaction`` package's, which pyramid_tm
    begins and commits around the request and every resource joins (the view's
    ``dbsession``, the session's writes). Its manager begins it at its first use
    (``database/requesttm``).
database transaction
    A PostgreSQL transaction. The view's joins the request's transaction through
    zope.sqlalchemy.
session transaction
    The sql store's own database transaction in a state-changing request (POST, PUT,
    PATCH, DELETE): the load and the write in one psycopg pipeline
    (``stores/sqlstore/transaction``), committed when the request's transaction votes.
"""

from __future__ import annotations

import logging

from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from sqlalchemy.exc import ArgumentError

from .assemble import (
    CHAIN_KEY,
    OPTIONS_KEY,
    add_observer,
    build_store_chain,
    get_chain,
    get_observer,
    get_options,
)
from .chain import StoreChain
from .exceptions import (
    NoStoreReady,
    SessionConflict,
    SessionStoreUnavailable,
    SessionTemporarilyUnavailable,
    SessionTooLarge,
)
from .options import SessionOptions
from .redact import install_log_redaction, redact
from .request.factory import SessionFactory
from .request.session import Session, SessionOrCookieCSRFStoragePolicy

__all__ = [
    "NoStoreReady",
    "Session",
    "SessionConflict",
    "SessionFactory",
    "SessionOptions",
    "SessionStoreUnavailable",
    "SessionTemporarilyUnavailable",
    "SessionTooLarge",
    "StoreChain",
    "add_observer",
    "build_store_chain",
    "get_chain",
    "get_observer",
    "get_options",
    "includeme",
]

log = logging.getLogger(__name__)


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    options = SessionOptions.from_settings(settings)
    config.registry[OPTIONS_KEY] = options
    install_log_redaction()  # no URL with a password reaches the log, from any library
    # A 5xx answer persists no session change (nor the view's data), like an exception.
    settings.setdefault("tm.commit_veto", "myapp.sessions.database.requesttm.server_error_veto")
    try:
        config.include(".database")  # pyramid_tm, the engine, request.dbsession
    except (ArgumentError, ValueError) as exc:  # an unparsable URL (a bad port...) or option
        raise ConfigurationError(
            redact(f"sqlalchemy.url or another sqlalchemy.* setting cannot be used: {exc}")
        ) from None

    observer = get_observer(config.registry)
    chain = build_store_chain(options, config.registry, observer)
    try:
        chain.select()  # raises NoStoreReady: the app does not start without a store
    except NoStoreReady as exc:
        raise NoStoreReady(redact(str(exc))) from None
    chain.ensure_probing()  # a process that starts degraded finds its way back
    config.registry[CHAIN_KEY] = chain

    config.set_session_factory(SessionFactory(options, chain, observer=observer))
    config.set_csrf_storage_policy(SessionOrCookieCSRFStoragePolicy(options))
    config.add_request_method(lambda request: chain.degraded, "sessions_degraded", reify=True)
    config.add_request_method(
        "myapp.sessions.request.properties.session_key", "session_key", reify=True
    )
    config.add_request_method(
        "myapp.sessions.request.properties.session_unavailable",
        "session_unavailable",
        property=True,
    )
    config.include(".operations.purge")  # the purge thread, when session.purge_interval > 0
    config.include(".request.properties")  # request.tm, .dbsession...: no new class per request

    if options.healthz_path:
        config.add_route("myapp.sessions.healthz", options.healthz_path)
        config.add_view(
            "myapp.sessions.operations.health.healthz",
            route_name="myapp.sessions.healthz",
            renderer="json",
            request_method="GET",
            http_cache=0,
        )
    config.add_exception_view(
        "myapp.sessions.operations.health.store_unavailable", context=SessionStoreUnavailable
    )
    config.add_exception_view(
        "myapp.sessions.operations.health.session_conflict", context=SessionConflict
    )
    config.add_exception_view(
        "myapp.sessions.operations.health.session_too_large", context=SessionTooLarge
    )
