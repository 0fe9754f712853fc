"""The one assembly: options -> stores -> read cache -> chain, for the app and every script,
and what other parts of an app keep per store (:func:`per_store`).

``includeme`` and the operator scripts both call :func:`build_store_chain`, so a script
ends a session in the same places the app reads it from. What was built is kept in the
registry and read back with :func:`get_options`, :func:`get_chain`, :func:`get_observer`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.path import DottedNameResolver
from pyramid.registry import Registry

from .chain import Breaker, StoreChain, build_chain
from .events import ObserverGroup, SessionObserver
from .exceptions import BUILD_ERRORS
from .interfaces import IUserSessionsTable
from .options import SessionOptions
from .options.backends import BUILDERS
from .redact import redact

if TYPE_CHECKING:
    from .stores.base import SessionStore

T = TypeVar("T")

OPTIONS_KEY = "myapp.sessions.options"
CHAIN_KEY = "myapp.sessions.chain"
OBSERVER_KEY = "myapp.sessions.observer"


def get_options(registry: Registry) -> SessionOptions:
    return registry[OPTIONS_KEY]


def get_chain(registry: Registry) -> StoreChain:
    return registry[CHAIN_KEY]


def get_observer(registry: Registry) -> ObserverGroup:
    """The observers of session events (created empty on first use)."""
    group = registry.get(OBSERVER_KEY)
    if group is None:
        group = registry[OBSERVER_KEY] = ObserverGroup()
    return group


def add_observer(config: Configurator, observer: SessionObserver) -> None:
    """Let another package (metrics, tests) listen to session events."""
    get_observer(config.registry).add(observer)


def build_store(name: str, options: SessionOptions, registry: Registry) -> SessionStore:
    """Build the store called ``name``: a backend of the package (imported lazily: an
    unused driver is never loaded) or the app's own, ``package.module:builder``. Either
    builder is called with ``(options, registry)`` and returns an ``ISessionStore``."""
    builder = DottedNameResolver().resolve(BUILDERS.get(name, name))
    return builder(options, registry)


def build_store_chain(
    options: SessionOptions, registry: Registry, observer: SessionObserver | None = None
) -> StoreChain:
    """Every configured store, built as the app serves them (the read cache included).

    ``registry`` holds the engine (``myapp.sessions.database.register_engine``).
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


def _build_store(name: str, options: SessionOptions, registry: Registry) -> SessionStore:
    try:
        store = build_store(name, options, registry)
        if options.cache == "redis" and IUserSessionsTable.providedBy(store):
            from .stores.cachedstore import wrap

            store = wrap(store, options, Breaker)  # type: ignore[arg-type]  # Redis answers reads
    except BUILD_ERRORS as exc:
        # Messages of drivers and URL parsers may quote a URL with its password; the
        # original exception is not chained, so no traceback shows it either.
        raise ValueError(redact(str(exc))) from None
    return store


def per_store(
    registry: Registry,
    builders: Mapping[str, Callable[[SessionOptions, Registry], T]],
    *,
    what: str,
    setting: str = "session.backends",
    only: str | None = None,
) -> Callable[[str], T]:
    """What another part of the app keeps in the store serving sessions (the sign-in
    throttle's counters), assembled here like the stores: ``builders[name](options,
    registry)`` for each store of the chain, built on first use of that store (a server
    that is never used is never reached). ``only``: one builder for every store.

    A store with no builder stops start-up with a ConfigurationError naming ``setting``:
    never a quiet fallback to something else (process memory).
    """
    options, chain = get_options(registry), get_chain(registry)
    for name in (only,) if only else chain.names:
        if name not in builders:
            raise ConfigurationError(
                f"{setting}: {what} has nothing for the store {name!r} (it has "
                f"{', '.join(builders)})"
            )
    built: dict[str, T] = {}
    lock = threading.Lock()

    def get(store_name: str) -> T:
        name = only or store_name
        found = built.get(name)
        if found is None:
            with lock:
                found = built.get(name)
                if found is None:
                    found = built[name] = builders[name](options, registry)
        return found

    return get
