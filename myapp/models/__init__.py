"""The database wiring: one engine, ``request.dbsession`` joined to the request's transaction."""

from __future__ import annotations

from typing import Any

import zope.sqlalchemy
from pyramid.config import Configurator
from pyramid.request import Request
from sqlalchemy import engine_from_config
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import sessionmaker
from transaction import TransactionManager

from .meta import metadata
from .user_sessions import USER_SESSIONS_REVISION, user_sessions
from .users import users

__all__ = [
    "USER_SESSIONS_REVISION",
    "get_dbsession_factory",
    "get_engine",
    "get_tm_dbsession",
    "metadata",
    "user_sessions",
    "users",
]


def get_engine(settings: dict[str, Any], prefix: str = "sqlalchemy.") -> Engine:
    """The engine from ``sqlalchemy.*`` settings, hardened for production.

    ``pool_pre_ping`` replaces connections a database restart killed;
    ``hide_parameters`` keeps bound values (session ids) out of error messages.
    """
    url = str(settings[prefix + "url"])
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        timeout = float(settings.get("session.check_timeout", 2.0))
        # libpq rounds connect_timeout to whole seconds and treats 1 as 2.
        connect_args["connect_timeout"] = max(2, round(timeout))
        connect_args["application_name"] = settings.get("myapp.application_name", "myapp")
    options: dict[str, Any] = {
        prefix + "pool_pre_ping": True,
        prefix + "hide_parameters": True,
    }
    if url.startswith("sqlite") and ":memory:" not in url:
        # One file shared by waitress' threads: wait for the writer instead of failing.
        connect_args["timeout"] = 5
        connect_args["check_same_thread"] = False
    return engine_from_config(
        {**settings, **options}, prefix=prefix, connect_args=connect_args, future=True
    )


def get_dbsession_factory(engine: Engine) -> sessionmaker[DBSession]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_tm_dbsession(
    dbsession_factory: sessionmaker[DBSession], transaction_manager: TransactionManager
) -> DBSession:
    """A database session that commits or aborts with ``transaction_manager``."""
    dbsession = dbsession_factory()
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


def includeme(config: Configurator) -> None:
    """Engine, pyramid_tm with an explicit manager, and ``request.dbsession``."""
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    config.include("pyramid_tm")

    engine = get_engine(settings)
    dbsession_factory = get_dbsession_factory(engine)
    config.registry["dbengine"] = engine
    config.registry["dbsession_factory"] = dbsession_factory

    def dbsession(request: Request) -> DBSession:
        # Tests may hand in their own database session through the environ.
        existing = request.environ.get("app.dbsession")
        if existing is not None:
            return existing
        return get_tm_dbsession(dbsession_factory, request.tm)

    config.add_request_method(dbsession, reify=True)
