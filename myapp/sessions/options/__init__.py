"""Every setting the package reads (``session.*``, ``db.pgbouncer``...): read from the ini
once, validated, defaulted here only, and handed on as typed values.

``reader`` turns raw ini strings into typed values (each error names its key);
``secrets`` checks the cookie secrets and the operator token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyramid.exceptions import ConfigurationError

from .reader import SettingsReader
from .secrets import DEVELOPMENT_SECRET, looks_random, operator_token, session_secrets

__all__ = [
    "DEVELOPMENT_SECRET",
    "PGBOUNCER_MODES",
    "DatabaseOptions",
    "SessionOptions",
    "looks_random",
    "pgbouncer_mode",
]

#: ``db.pgbouncer``: how PostgreSQL is reached. ``transaction``: through PgBouncer in
#: transaction pooling mode, where consecutive transactions of one client may run on
#: different server connections.
PGBOUNCER_MODES = ("none", "session", "transaction")

SAMESITE_VALUES = ("Lax", "Strict", "None")


@dataclass(frozen=True)
class SessionOptions:
    """Every ``session.*`` setting, parsed. Defaults are the documented ones."""

    backends: tuple[str, ...] = ("sql", "redis", "memory")
    secrets: tuple[str, ...] = ()
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "myapp:session:"
    # Writes of the Redis store wait (WAIT) for this many replicas to have them; 0: none.
    redis_min_replicas: int = 0
    redis_replica_timeout: float = 0.5
    cookie_name: str = "session"
    cookie_secure: bool = False
    cookie_samesite: str = "Lax"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_max_age: int | None = None  # None: lasts as long as the absolute lifetime
    timeout: int = 86_400
    max_lifetime: int = 30 * 86_400
    reissue_time: int = 300
    max_size: int = 16_384
    memory_max_entries: int = 10_000
    check_timeout: float = 2.0
    store_timeout: float = 1.0
    recheck_interval: float = 30.0
    runtime_failover: bool = False
    breaker_threshold: int = 5
    breaker_cooldown: float = 1.0
    purge_interval: float = 0.0
    purge_batch_size: int = 1_000
    cache: str | None = None
    healthz_path: str | None = "/healthz"
    # Grants /healthz details and /metrics to ``Authorization: Bearer <token>`` (besides
    # loopback clients); None: loopback clients only.
    operator_token: str | None = None
    config_file: str | None = None  # the ini file, named in operator messages

    @property
    def secret_bytes(self) -> tuple[bytes, ...]:
        return tuple(s.encode("utf-8") for s in self.secrets)

    @property
    def cookie_attributes(self) -> dict[str, Any]:
        """What every cookie of the app is set with besides its name, value and age."""
        return {
            "path": self.cookie_path,
            "domain": self.cookie_domain,
            "secure": self.cookie_secure,
            "httponly": True,
            "samesite": self.cookie_samesite,
        }

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, object],
        environ: Mapping[str, str] | None = None,
        *,
        signs_cookies: bool = True,
    ) -> SessionOptions:
        """Parse ``settings``; a bad value raises ConfigurationError naming its key.

        ``signs_cookies=False`` (tools that only read or delete stored sessions) leaves
        the cookie secrets unread: such a tool runs without them in its environment.
        """
        reader = SettingsReader(settings)
        environ = os.environ if environ is None else environ
        options = cls(
            backends=reader.backends("session.backends", cls.backends),
            secrets=session_secrets(reader, environ) if signs_cookies else (),
            redis_url=reader.text("session.redis_url", cls.redis_url),
            redis_prefix=reader.text("session.redis_prefix", cls.redis_prefix),
            redis_min_replicas=reader.integer(
                "session.redis_min_replicas", cls.redis_min_replicas, minimum=0
            ),
            redis_replica_timeout=reader.number(
                "session.redis_replica_timeout", cls.redis_replica_timeout, minimum=0.01
            ),
            cookie_name=reader.cookie_name("session.cookie_name", cls.cookie_name),
            cookie_secure=reader.boolean("session.cookie_secure", cls.cookie_secure),
            cookie_samesite=reader.choice(
                "session.cookie_samesite", cls.cookie_samesite, SAMESITE_VALUES
            ),
            cookie_path=reader.text("session.cookie_path", cls.cookie_path),
            cookie_domain=reader.text("session.cookie_domain", None) or None,
            cookie_max_age=reader.max_age("session.cookie_max_age"),
            timeout=reader.integer("session.timeout", cls.timeout, minimum=1),
            max_lifetime=reader.integer("session.max_lifetime", cls.max_lifetime, minimum=1),
            reissue_time=reader.integer("session.reissue_time", cls.reissue_time, minimum=0),
            max_size=reader.integer("session.max_size", cls.max_size, minimum=256),
            memory_max_entries=reader.integer(
                "session.memory_max_entries", cls.memory_max_entries, minimum=1
            ),
            check_timeout=reader.number("session.check_timeout", cls.check_timeout, minimum=0.05),
            store_timeout=reader.number("session.store_timeout", cls.store_timeout, minimum=0.05),
            recheck_interval=reader.number(
                "session.recheck_interval", cls.recheck_interval, minimum=0.0
            ),
            runtime_failover=reader.boolean("session.runtime_failover", cls.runtime_failover),
            breaker_threshold=reader.integer(
                "session.breaker_threshold", cls.breaker_threshold, minimum=1
            ),
            breaker_cooldown=reader.number(
                "session.breaker_cooldown", cls.breaker_cooldown, minimum=0.0
            ),
            purge_interval=reader.number("session.purge_interval", cls.purge_interval, minimum=0.0),
            purge_batch_size=reader.integer(
                "session.purge_batch_size", cls.purge_batch_size, minimum=1
            ),
            cache=reader.optional_choice("session.cache", ("redis",)),
            healthz_path=reader.text("session.healthz_path", cls.healthz_path) or None,
            operator_token=operator_token(reader, environ),
            config_file=reader.text("myapp.config_file", None),
        )
        _check_consistency(options)
        return options


@dataclass(frozen=True)
class DatabaseOptions:
    """What the database wiring reads besides SQLAlchemy's own ``sqlalchemy.*`` keys.

    Lenient about everything else, so Alembic and the scripts can read an ini that
    holds no session secret.
    """

    url: str | None = None
    pgbouncer: str = "none"
    #: Shown in ``pg_stat_activity``.
    application_name: str = "myapp"
    #: ``session.check_timeout``: a connection attempt is bounded like a readiness check.
    connect_timeout: float = SessionOptions.check_timeout

    @property
    def transaction_pooling(self) -> bool:
        return self.pgbouncer == "transaction"

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, object], prefix: str = "sqlalchemy."
    ) -> DatabaseOptions:
        reader = SettingsReader(settings)
        pgbouncer = (reader.text("db.pgbouncer", cls.pgbouncer) or cls.pgbouncer).lower()
        if pgbouncer not in PGBOUNCER_MODES:
            raise ConfigurationError(
                f"db.pgbouncer = {pgbouncer!r} is not one of {', '.join(PGBOUNCER_MODES)}"
            )
        return cls(
            url=reader.text(prefix + "url", None),
            pgbouncer=pgbouncer,
            application_name=reader.text("myapp.application_name", cls.application_name)
            or cls.application_name,
            connect_timeout=reader.number(
                "session.check_timeout", cls.connect_timeout, minimum=0.05
            ),
        )


def pgbouncer_mode(settings: Mapping[str, object]) -> str:
    """The ``db.pgbouncer`` setting, checked; a bad value names the setting."""
    return DatabaseOptions.from_settings(settings).pgbouncer


def _check_consistency(options: SessionOptions) -> None:
    if options.reissue_time >= options.timeout:
        raise ConfigurationError(
            f"session.reissue_time ({options.reissue_time}) must be shorter than "
            f"session.timeout ({options.timeout})"
        )
    if options.timeout > options.max_lifetime:
        raise ConfigurationError(
            f"session.timeout ({options.timeout}) must not exceed "
            f"session.max_lifetime ({options.max_lifetime})"
        )
    if options.redis_min_replicas and options.redis_replica_timeout >= options.store_timeout:
        raise ConfigurationError(
            f"session.redis_replica_timeout ({options.redis_replica_timeout:g}) must be "
            f"shorter than session.store_timeout ({options.store_timeout:g}): a write waits "
            "for its replicas within the store's deadline"
        )
    if options.cookie_samesite == "None" and not options.cookie_secure:
        raise ConfigurationError(
            "session.cookie_samesite = None needs session.cookie_secure = true "
            "(browsers drop SameSite=None cookies that are not Secure)"
        )
