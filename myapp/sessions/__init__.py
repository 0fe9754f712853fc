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

from .chain import StoreChain, build_chain
from .csrf import SessionOrCookieCSRFStoragePolicy
from .events import ObserverGroup, SessionObserver
from .exceptions import (
    NoStoreReady,
    SessionConflict,
    SessionStoreUnavailable,
    SessionTemporarilyUnavailable,
    SessionTooLarge,
    StoreError,
)
from .factory import SessionFactory
from .options import SessionOptions
from .redact import install_log_redaction, redact
from .session import Session
from .stores import build_store
from .stores.base import SessionStore

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
    "build_store_chain",
    "get_chain",
    "get_options",
    "includeme",
]

log = logging.getLogger(__name__)

OPTIONS_KEY = "myapp.sessions.options"
CHAIN_KEY = "myapp.sessions.chain"
OBSERVER_KEY = "myapp.sessions.observer"


def get_options(registry) -> SessionOptions:
    return registry[OPTIONS_KEY]


def get_chain(registry) -> StoreChain:
    return registry[CHAIN_KEY]


def get_observer(registry) -> ObserverGroup:
    return registry[OBSERVER_KEY]


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    options = SessionOptions.from_settings(settings)
    config.registry[OPTIONS_KEY] = options
    install_log_redaction()  # no URL with a password reaches the log, from any library
    # A 5xx answer persists no session change (nor the view's data), like an exception.
    settings.setdefault("tm.commit_veto", "myapp.sessions.veto.server_error_veto")
    try:
        config.include("myapp.models")  # pyramid_tm, the engine, request.dbsession
    except (ArgumentError, ValueError) as exc:  # an unparsable URL (a bad port...) or option
        raise ConfigurationError(
            redact(f"sqlalchemy.url or another sqlalchemy.* setting cannot be used: {exc}")
        ) from None

    observer = config.registry.get(OBSERVER_KEY)
    if observer is None:
        observer = config.registry[OBSERVER_KEY] = ObserverGroup()
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


def build_store_chain(
    options: SessionOptions, registry, observer: SessionObserver | None = None
) -> StoreChain:
    """Every configured store, built as the app serves them (the read cache included).

    The one place stores are assembled: the app at start-up and every operator script
    call it, so a script ends a session in the same places the app reads it from.
    """
    return build_chain(
        options.backends,
        lambda name: _build_store(name, options, registry),
        observer if observer is not None else ObserverGroup(),
        recheck_interval=options.recheck_interval,
        breaker_threshold=options.breaker_threshold,
        breaker_cooldown=options.breaker_cooldown,
        runtime_failover=options.runtime_failover,
    )


def _build_store(name: str, options: SessionOptions, registry) -> SessionStore:
    try:
        store = build_store(name, options, registry)
        if name == "sql" and options.cache == "redis":
            from .stores.cachedstore import wrap

            store = wrap(store, options)  # Redis answers reads; SQL stays the truth
    except (StoreError, ValueError, ImportError, OSError) as exc:
        # Messages of drivers and URL parsers may quote a URL with its password; the
        # original exception is not chained, so no traceback shows it either.
        raise ValueError(redact(str(exc))) from None
    return store


def add_observer(config: Configurator, observer: SessionObserver) -> None:
    """Let another package (metrics, tests) listen to session events."""
    group = config.registry.get(OBSERVER_KEY)
    if group is None:
        group = config.registry[OBSERVER_KEY] = ObserverGroup()
    group.add(observer)
