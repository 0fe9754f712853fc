"""The database wiring: one engine, ``request.dbsession`` joined to the request's transaction.

``config.include("myapp.sessions")`` includes it; an app's own tables use the same
engine and ``request.dbsession`` (the SQL session store writes in that transaction).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from sqlalchemy import create_engine, engine_from_config, event
from sqlalchemy.engine import Engine

from ..options import DatabaseOptions, pgbouncer_mode
from .pool import note_failure, ping_when_stale, watch_for_failover
from .requesttm import (
    existing_dbsession,
    get_dbsession_factory,
    get_tm_dbsession,
    lazy_manager,
    request_dbsession,
)

__all__ = [
    "autocommit_engine",
    "existing_dbsession",
    "get_dbsession_factory",
    "get_engine",
    "get_tm_dbsession",
    "pgbouncer_mode",
    "register_engine",
]

#: Registry keys of what ``register_engine`` builds.
ENGINE_KEY = "dbengine"
AUTOCOMMIT_ENGINE_KEY = "dbengine.autocommit"
log = logging.getLogger(__name__)

PGBOUNCER_KEY = "db.pgbouncer"
DBSESSION_FACTORY_KEY = "dbsession_factory"


def get_engine(settings: dict[str, Any], prefix: str = "sqlalchemy.") -> Engine:
    """The engine from ``sqlalchemy.*`` settings, hardened for production.

    Connections a database restart killed are replaced before use (a ping on
    PostgreSQL only when one looks closed or stale, see ``pool``; on every
    checkout elsewhere); ``hide_parameters`` keeps bound values (session ids) out
    of error messages. Behind a transaction-pooling PgBouncer (``db.pgbouncer =
    transaction``) psycopg prepares no statement: the next transaction may run on a
    server connection that never saw it.
    """
    url = str(settings[prefix + "url"])
    options = DatabaseOptions.from_settings(settings, prefix)
    is_postgres = url.startswith("postgresql")
    transaction_pooling = options.transaction_pooling
    connect_args: dict[str, Any] = {}
    if is_postgres:
        # libpq rounds connect_timeout to whole seconds and treats 1 as 2.
        connect_args["connect_timeout"] = max(2, round(options.connect_timeout))
        connect_args["application_name"] = options.application_name
        if transaction_pooling:
            connect_args["prepare_threshold"] = None
    elif transaction_pooling:
        raise ConfigurationError("db.pgbouncer = transaction needs a PostgreSQL sqlalchemy.url")
    hardening: dict[str, Any] = {
        prefix + "pool_pre_ping": not is_postgres,
        prefix + "hide_parameters": True,
    }
    if url.startswith("sqlite") and ":memory:" not in url:
        # One file shared by waitress' threads: wait for the writer instead of failing.
        connect_args["timeout"] = 5
        connect_args["check_same_thread"] = False
    engine = engine_from_config(
        {**settings, **hardening}, prefix=prefix, connect_args=connect_args, future=True
    )
    if is_postgres:
        ping_when_stale(engine)
        watch_for_failover(engine)
        event.listen(engine, "handle_error", _discard_failed_connection)
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        create_private_file(engine.url.database)
    return engine


def create_private_file(path: str) -> None:
    """Create the SQLite file at ``path``, readable by its owner only, if it is missing.

    SQLite would create it with the process umask (0644 by default: every local user
    could read the sessions and password hashes); its journal and WAL files take the
    database file's permissions.
    """
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:  # a missing folder: SQLite reports it at the first connection
        log.debug("could not create %s ahead of SQLite: %s", path, exc)


def _discard_failed_connection(context: Any) -> None:
    """Close a connection on which the driver reported any error, instead of letting
    the pool hand it, rolled back, to the next request: whatever the failure left on
    the server session (a cancelled statement, a broken protocol state) goes with it.
    Only this connection, unless the server refused a write as read-only: then every
    connection opened to it so far is retired (``pool``)."""
    if context.dialect.loaded_dbapi is not None and isinstance(
        context.original_exception, context.dialect.loaded_dbapi.Error
    ):
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False
        connection = context.connection
        if connection is not None and not (connection.closed or connection.invalidated):
            note_failure(connection.info, context.original_exception)


def autocommit_engine(engine: Engine) -> Engine:
    """A sibling of ``engine`` whose own pool keeps its connections in autocommit.

    Same database, connect arguments and pool events (the liveness check); for single
    statements that need no transaction around them. ``engine.execution_options(
    isolation_level="AUTOCOMMIT")`` would share the pool and switch every connection
    into autocommit and back at each checkout. The pool has the same size as
    ``engine``'s: count both against PostgreSQL's ``max_connections``.
    """
    return create_engine(
        engine.url, pool=engine.pool.recreate(), isolation_level="AUTOCOMMIT", hide_parameters=True
    )


def register_engine(registry: Registry, settings: dict[str, Any]) -> Engine:
    """Build the engine (and its autocommit sibling on PostgreSQL) into ``registry``.

    The app (``includeme``) and the operator scripts both call this, so a script reaches
    the database exactly as the app does.
    """
    engine = get_engine(settings)
    registry[ENGINE_KEY] = engine
    registry[PGBOUNCER_KEY] = pgbouncer_mode(settings)
    if engine.dialect.name == "postgresql":
        registry[AUTOCOMMIT_ENGINE_KEY] = autocommit_engine(engine)
    return engine


def includeme(config: Configurator) -> None:
    """Engine, pyramid_tm with a lazy explicit manager, and ``request.dbsession``."""
    settings = config.get_settings()
    # An explicit manager per request, whose transaction begins at its first use.
    settings["tm.manager_hook"] = lazy_manager
    # pyramid_tm would ask the security policy for the user on every request, only to
    # label the transaction; sign-in here lives in the session, so that would load it.
    settings.setdefault("tm.annotate_user", "false")
    config.include("pyramid_tm")

    engine = register_engine(config.registry, settings)
    dbsession_factory = get_dbsession_factory(engine)
    config.registry[DBSESSION_FACTORY_KEY] = dbsession_factory

    config.add_request_method(
        functools.partial(request_dbsession, dbsession_factory), "dbsession", reify=True
    )
