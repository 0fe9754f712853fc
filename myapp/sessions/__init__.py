"""Server-side sessions for any Pyramid app: ``config.include('myapp.sessions')``.

Reads the ``session.*`` settings once, builds the store chain (sql, redis, memory by
default), picks the first store that is ready, and registers the ISessionFactory,
pyramid_tm, the SQLAlchemy wiring and ``GET /healthz``.
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
from .csrf import SessionOrCookieCSRFStoragePolicy
from .exceptions import (
    NoStoreReady,
    SessionConflict,
    SessionStoreUnavailable,
    SessionTemporarilyUnavailable,
    SessionTooLarge,
)
from .factory import SessionFactory
from .options import SessionOptions
from .redact import install_log_redaction, redact
from .session import Session

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
    settings.setdefault("tm.commit_veto", "myapp.sessions.veto.server_error_veto")
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
    config.add_request_method("myapp.sessions.current.session_key", "session_key", reify=True)
    config.add_request_method(
        "myapp.sessions.current.session_unavailable", "session_unavailable", property=True
    )
    config.include(".purge")  # the purge thread, when session.purge_interval > 0
    config.include(".requestclass")  # request.tm, .dbsession...: no new class per request

    if options.healthz_path:
        config.add_route("myapp.sessions.healthz", options.healthz_path)
        config.add_view(
            "myapp.sessions.health.healthz",
            route_name="myapp.sessions.healthz",
            renderer="json",
            request_method="GET",
            http_cache=0,
        )
    config.add_exception_view(
        "myapp.sessions.health.store_unavailable", context=SessionStoreUnavailable
    )
    config.add_exception_view("myapp.sessions.health.session_conflict", context=SessionConflict)
    config.add_exception_view("myapp.sessions.health.session_too_large", context=SessionTooLarge)
