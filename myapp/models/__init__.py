"""The database wiring: one engine, ``request.dbsession`` joined to the request's transaction."""

from __future__ import annotations

from typing import Any

import zope.sqlalchemy
import zope.sqlalchemy.datamanager
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.request import Request
from sqlalchemy import create_engine, engine_from_config, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import sessionmaker
from transaction import TransactionManager

from .lazytm import lazy_manager
from .liveness import ping_when_stale
from .meta import metadata
from .user_sessions import USER_SESSIONS_REVISION, user_sessions
from .users import users

__all__ = [
    "USER_SESSIONS_REVISION",
    "autocommit_engine",
    "existing_dbsession",
    "get_dbsession_factory",
    "get_engine",
    "get_tm_dbsession",
    "metadata",
    "pgbouncer_mode",
    "user_sessions",
    "users",
]


#: ``db.pgbouncer``: how PostgreSQL is reached. ``transaction``: through PgBouncer in
#: transaction pooling mode, where consecutive transactions of one client may run on
#: different server connections.
PGBOUNCER_MODES = ("none", "session", "transaction")


def pgbouncer_mode(settings: dict[str, Any]) -> str:
    """The ``db.pgbouncer`` setting, checked; a bad value names the setting."""
    value = str(settings.get("db.pgbouncer") or "none").strip().lower()
    if value not in PGBOUNCER_MODES:
        raise ConfigurationError(
            f"db.pgbouncer = {value!r} is not one of {', '.join(PGBOUNCER_MODES)}"
        )
    return value


def get_engine(settings: dict[str, Any], prefix: str = "sqlalchemy.") -> Engine:
    """The engine from ``sqlalchemy.*`` settings, hardened for production.

    Connections a database restart killed are replaced before use (a ping on
    PostgreSQL only when one looks closed or stale, see ``liveness``; on every
    checkout elsewhere); ``hide_parameters`` keeps bound values (session ids) out
    of error messages. Behind a transaction-pooling PgBouncer (``db.pgbouncer =
    transaction``) psycopg prepares no statement: the next transaction may run on a
    server connection that never saw it.
    """
    url = str(settings[prefix + "url"])
    is_postgres = url.startswith("postgresql")
    transaction_pooling = pgbouncer_mode(settings) == "transaction"
    connect_args: dict[str, Any] = {}
    if is_postgres:
        timeout = float(settings.get("session.check_timeout", 2.0))
        # libpq rounds connect_timeout to whole seconds and treats 1 as 2.
        connect_args["connect_timeout"] = max(2, round(timeout))
        connect_args["application_name"] = settings.get("myapp.application_name", "myapp")
        if transaction_pooling:
            connect_args["prepare_threshold"] = None
    elif transaction_pooling:
        raise ConfigurationError("db.pgbouncer = transaction needs a PostgreSQL sqlalchemy.url")
    options: dict[str, Any] = {
        prefix + "pool_pre_ping": not is_postgres,
        prefix + "hide_parameters": True,
    }
    if url.startswith("sqlite") and ":memory:" not in url:
        # One file shared by waitress' threads: wait for the writer instead of failing.
        connect_args["timeout"] = 5
        connect_args["check_same_thread"] = False
    engine = engine_from_config(
        {**settings, **options}, prefix=prefix, connect_args=connect_args, future=True
    )
    if is_postgres:
        ping_when_stale(engine)
        event.listen(engine, "handle_error", _discard_failed_connection)
    return engine


def _discard_failed_connection(context: Any) -> None:
    """Close a connection on which the driver reported any error, instead of letting
    the pool hand it, rolled back, to the next request: whatever the failure left on
    the server session (a cancelled statement, a broken protocol state) goes with it.
    Only this connection: the rest of the pool is healthy."""
    if context.dialect.loaded_dbapi is not None and isinstance(
        context.original_exception, context.dialect.loaded_dbapi.Error
    ):
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


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


_ZOPE_EVENTS = "myapp.zope_events"
_ZOPE_HOOKS = (
    "after_begin",
    "after_attach",
    "after_flush",
    "after_bulk_update",
    "after_bulk_delete",
    "before_commit",
    "do_orm_execute",
)


def get_dbsession_factory(engine: Engine) -> sessionmaker[DBSession]:
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    # zope.sqlalchemy.register() on each new database session costs ~200 us a
    # request (SQLAlchemy builds per-instance event dispatch). The same listeners
    # are registered once here and find the session's own transaction manager.
    for hook in _ZOPE_HOOKS:
        event.listen(factory, hook, _zope_listener(hook))
    return factory


def _zope_listener(hook: str) -> Any:
    def listener(target: Any, *args: Any) -> None:
        session = getattr(target, "session", target)  # bulk and execute contexts
        events = session.info.get(_ZOPE_EVENTS)
        if events is not None:
            getattr(events, hook)(target, *args)

    return listener


def get_tm_dbsession(
    dbsession_factory: sessionmaker[DBSession], transaction_manager: TransactionManager
) -> DBSession:
    """A database session that commits or aborts with ``transaction_manager``."""
    dbsession = dbsession_factory()
    dbsession.info[_ZOPE_EVENTS] = zope.sqlalchemy.datamanager.ZopeTransactionEvents(
        transaction_manager=transaction_manager
    )
    return dbsession


def existing_dbsession(request: Request) -> DBSession | None:
    """``request.dbsession`` if the request has one already; never creates it."""
    dbsession = request.__dict__.get("dbsession")  # where reify keeps it
    return dbsession if dbsession is not None else request.environ.get("app.dbsession")


def includeme(config: Configurator) -> None:
    """Engine, pyramid_tm with a lazy explicit manager, and ``request.dbsession``."""
    settings = config.get_settings()
    # An explicit manager per request, whose transaction begins at its first use.
    settings["tm.manager_hook"] = lazy_manager
    # pyramid_tm would ask the security policy for the user on every request, only to
    # label the transaction; sign-in here lives in the session, so that would load it.
    settings.setdefault("tm.annotate_user", "false")
    config.include("pyramid_tm")

    engine = get_engine(settings)
    dbsession_factory = get_dbsession_factory(engine)
    config.registry["dbengine"] = engine
    config.registry["db.pgbouncer"] = pgbouncer_mode(settings)
    if engine.dialect.name == "postgresql":
        config.registry["dbengine.autocommit"] = autocommit_engine(engine)
    config.registry["dbsession_factory"] = dbsession_factory

    def dbsession(request: Request) -> DBSession:
        # Tests may hand in their own database session through the environ.
        existing = request.environ.get("app.dbsession")
        if existing is not None:
            return existing
        return get_tm_dbsession(dbsession_factory, request.tm)

    config.add_request_method(dbsession, reify=True)
