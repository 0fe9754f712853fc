"""The benchmarked apps: the same four views on top of each session implementation.

``build(name, env)`` returns a WSGI app; ``bench.serve`` runs it in waitress. Every
app also answers ``GET /_bench/stats`` with what it sent to its stores so far.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.connection
import sqlalchemy as sa
import zope.sqlalchemy
from pyramid.config import Configurator
from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory
from webob.cookies import SignedSerializer
from zope.interface import implementer

from tests.support.counting import on_psycopg_statement, verb_of

SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz-not-for-production"
TIMEOUT = 86_400

#: Implementations in the order they are run and printed.
IMPLEMENTATIONS: tuple[str, ...] = (
    "floor",
    "floor-tm",
    "signedcookie",
    "psr",
    "naive-db",
    "ours-sql-pg",
    "ours-sql-pgbouncer",
    "ours-sql-sqlite",
    "ours-redis",
    "ours-memory",
    "ours-cache",
)

#: Run only when named with ``--only``: measurements that explain a result.
DIAGNOSTICS: tuple[str, ...] = ("diag-ours-memory-no-tm-tween",)
ALL_IMPLEMENTATIONS = IMPLEMENTATIONS + DIAGNOSTICS

LABELS = {
    "floor": "no sessions",
    "floor-tm": "no sessions, pyramid_tm",
    "signedcookie": "SignedCookieSessionFactory",
    "psr": "pyramid_session_redis",
    "naive-db": "naive DB session",
    "ours-sql-pg": "ours sql (PostgreSQL)",
    "ours-sql-pgbouncer": "ours sql through PgBouncer (transaction)",
    "ours-sql-sqlite": "ours sql (SQLite)",
    "ours-redis": "ours redis",
    "ours-memory": "ours memory",
    "ours-cache": "ours sql + redis cache",
    "diag-ours-memory-no-tm-tween": "ours memory, pyramid_tm's tween removed",
}

VIEWS: tuple[str, ...] = ("untouched", "read", "write", "new")
#: How the load generator calls the write view: a state change comes as a POST.
WRITE_METHOD = "POST"


@dataclass(frozen=True)
class BenchEnv:
    """Where the stores of one bench run live."""

    pg_url: str
    sqlite_url: str
    redis_url: str
    pgbouncer_url: str


# -- the four views, identical for every implementation ------------------------
def untouched(request: Request) -> Response:
    return Response("untouched")


def read(request: Request) -> Response:
    return Response(str(request.session.get("n")))


def write(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    return Response(str(request.session["n"]))


def new(request: Request) -> Response:
    # wrk sends no cookie here: every request starts (and stores) a new session.
    request.session["n"] = 1
    return Response("new")


# -- what reached the stores, counted inside the server process ----------------
class Counters:
    """SQL statements by verb and Redis round trips, seen from this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sql: dict[str, int] = {}
        self.redis_round_trips = 0

    def on_sql(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.count_statement(statement)

    def count_statement(self, text: str) -> None:
        verb = verb_of(text)
        with self.lock:
            self.sql[verb] = self.sql.get(verb, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"sql": dict(self.sql), "redis_round_trips": self.redis_round_trips}


COUNTERS = Counters()


def _count_postgres_statements() -> None:
    # At the driver: SQLAlchemy's statements and the ones our SQL store runs on the
    # driver's cursor itself both pass here.
    on_psycopg_statement(lambda cursor, statement: COUNTERS.count_statement(statement))


def _count_redis_round_trips() -> None:
    # One send_packed_command is one request on the wire (a pipeline or script too).
    original = redis.connection.AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        with COUNTERS.lock:
            COUNTERS.redis_round_trips += 1
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = send_packed_command


def stats(request: Request) -> Response:
    if request.params.get("dispose"):
        # Closing the pools ends the backends, which makes PostgreSQL flush their
        # transaction counters into pg_stat_database.
        for key in ("dbengine", "dbengine.autocommit"):
            engine = request.registry.get(key)
            if engine is not None:
                engine.dispose()
    body = json.dumps(COUNTERS.snapshot())
    return Response(body, content_type="application/json", charset="utf-8")


# -- a hand-written database session, as most apps do it ------------------------
NAIVE_TABLE = "naive_sessions"
NAIVE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {NAIVE_TABLE} "
    "(id TEXT PRIMARY KEY, data JSONB NOT NULL, expires_at TIMESTAMPTZ NOT NULL)"
)
_NAIVE_SELECT = sa.text(f"SELECT data FROM {NAIVE_TABLE} WHERE id = :id AND expires_at > now()")
_NAIVE_UPSERT = sa.text(
    f"INSERT INTO {NAIVE_TABLE} (id, data, expires_at) VALUES (:id, CAST(:data AS JSONB), :exp) "
    "ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at"
)


@implementer(ISession)
class NaiveSession(dict):
    """SELECT on first access, UPSERT before every commit, cookie on new sessions."""

    def __init__(self, request: Request, serializer: SignedSerializer) -> None:
        self.request = request
        token = request.cookies.get("naive")
        sid = None
        if token:
            try:
                sid = serializer.loads(token)
            except ValueError:
                sid = None
        row = None
        if sid:
            row = request.dbsession.execute(_NAIVE_SELECT, {"id": sid}).first()
        self.new = row is None
        self.sid = sid if row is not None else _new_id()
        self.created = datetime.now(UTC).timestamp()
        super().__init__(row[0] if row is not None else {})
        request.tm.get().addBeforeCommitHook(self._save)
        if self.new:
            cookie = serializer.dumps(self.sid).decode("ascii")
            request.add_response_callback(
                lambda req, resp: resp.set_cookie("naive", cookie, max_age=TIMEOUT, httponly=True)
            )

    def _save(self) -> None:
        dbsession = self.request.dbsession
        expires = datetime.now(UTC) + timedelta(seconds=TIMEOUT)
        dbsession.execute(_NAIVE_UPSERT, {"id": self.sid, "data": json.dumps(self), "exp": expires})
        zope.sqlalchemy.mark_changed(dbsession)

    def changed(self) -> None:
        pass

    def invalidate(self) -> None:
        self.clear()

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        self.setdefault("_f_" + queue, []).append(msg)

    def pop_flash(self, queue: str = "") -> list[Any]:
        return self.pop("_f_" + queue, [])

    def peek_flash(self, queue: str = "") -> list[Any]:
        return self.get("_f_" + queue, [])


def _new_id() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _naive_factory() -> Callable[[Request], NaiveSession]:
    serializer = SignedSerializer(SECRET, "naive", serializer=_TextSerializer())
    return lambda request: NaiveSession(request, serializer)


class _TextSerializer:
    def dumps(self, value: str) -> bytes:
        return value.encode("ascii")

    def loads(self, value: bytes) -> str:
        return value.decode("ascii")


# -- building each app ------------------------------------------------------------
def _ours(env: BenchEnv, **settings: str) -> dict[str, str]:
    return {
        "sqlalchemy.url": env.pg_url,
        "session.secret": SECRET,
        "session.redis_url": env.redis_url,
        "session.redis_prefix": "bench:session:",
        "session.timeout": str(TIMEOUT),
        **settings,
    }


def settings_for(name: str, env: BenchEnv) -> dict[str, str]:
    """The ini settings of implementation ``name`` (ours: settings only, no code)."""
    if name == "ours-sql-pg":
        return _ours(env, **{"session.backends": "sql"})
    if name == "ours-sql-pgbouncer":
        return _ours(
            env,
            **{
                "session.backends": "sql",
                "sqlalchemy.url": env.pgbouncer_url,
                "db.pgbouncer": "transaction",
            },
        )
    if name == "ours-sql-sqlite":
        return _ours(env, **{"session.backends": "sql", "sqlalchemy.url": env.sqlite_url})
    if name == "ours-redis":
        return _ours(env, **{"session.backends": "redis"})
    if name == "ours-memory":
        return _ours(env, **{"session.backends": "memory"})
    if name == "ours-cache":
        return _ours(env, **{"session.backends": "sql", "session.cache": "redis"})
    if name == "diag-ours-memory-no-tm-tween":
        # What the untouched view costs without pyramid_tm's tween (not a usable app:
        # nothing would commit a transaction). Only the excview tween is left.
        return _ours(
            env,
            **{
                "session.backends": "memory",
                "pyramid.tweens": "pyramid.tweens.excview_tween_factory",
            },
        )
    if name in ("naive-db", "floor-tm"):
        return {"sqlalchemy.url": env.pg_url}
    return {}


def build(name: str, env: BenchEnv) -> Callable[..., Any]:
    """The WSGI app of implementation ``name``."""
    settings = settings_for(name, env)
    with Configurator(settings=settings) as config:
        if name.startswith(("ours-", "diag-ours-")):
            config.include("myapp.sessions")
        elif name == "naive-db":
            config.include("myapp.sessions.database")  # pyramid_tm and request.dbsession
            _stock_pyramid_tm(config)
            config.set_session_factory(_naive_factory())
        elif name == "signedcookie":
            config.set_session_factory(SignedCookieSessionFactory(SECRET, timeout=TIMEOUT))
        elif name == "psr":
            config.set_session_factory(_psr_factory(env.redis_url))
        elif name == "floor-tm":
            # What a cookiecutter SQLAlchemy app runs anyway: pyramid_tm, request.dbsession.
            config.include("myapp.sessions.database")
            _stock_pyramid_tm(config)
            config.set_session_factory(lambda request: {})
        elif name == "floor":
            # A plain dict: the views run the same code with no session behind it.
            config.set_session_factory(lambda request: {})
        else:
            raise ValueError(f"unknown implementation {name!r}")
        for view in (untouched, read, write, new):
            config.add_route(view.__name__, f"/{view.__name__}")
            config.add_view(view, route_name=view.__name__)
        config.add_route("bench.stats", "/_bench/stats")
        config.add_view(stats, route_name="bench.stats")
    app = config.make_wsgi_app()
    engine = app.registry.get("dbengine")
    if engine is not None and engine.dialect.name == "postgresql":
        _count_postgres_statements()
    elif engine is not None:  # SQLite's cursor cannot be wrapped; SQLAlchemy sees it all
        sa.event.listen(engine, "before_cursor_execute", COUNTERS.on_sql)
    _count_redis_round_trips()
    return app


def _stock_pyramid_tm(config: Configurator) -> None:
    """pyramid_tm as a cookiecutter app configures it, not with our lazy manager.

    pyramid_tm reads the manager hook at each request and ``annotate_user`` when
    it builds its tween, after this runs.
    """
    config.registry.settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    config.registry.settings["tm.annotate_user"] = "true"


def _psr_factory(redis_url: str) -> Callable[[Request], Any]:
    from pyramid_session_redis import RedisSessionFactory

    # The documented defaults (TTL refreshed on every read), JSON instead of pickle
    # so every implementation encodes the same way.
    return RedisSessionFactory(
        SECRET,
        timeout=TIMEOUT,
        cookie_name="psr",
        redis_url=redis_url,
        serialize=lambda data: json.dumps(data).encode("utf-8"),
        deserialize=json.loads,
    )
