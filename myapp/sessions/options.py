"""Every setting the package reads (``session.*``, ``db.pgbouncer``...): read from the ini
once, validated, defaulted here only, and handed on as typed values."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from pyramid.exceptions import ConfigurationError
from pyramid.settings import asbool, aslist

from .stores import BACKEND_NAMES

#: ``db.pgbouncer``: how PostgreSQL is reached. ``transaction``: through PgBouncer in
#: transaction pooling mode, where consecutive transactions of one client may run on
#: different server connections.
PGBOUNCER_MODES = ("none", "session", "transaction")

SAMESITE_VALUES = ("Lax", "Strict", "None")
MIN_SECRET_LENGTH = 32
# A secret must look random: its characters, counted in it, carry at least this many bits
# (``secrets.token_hex(16)`` scores about 120, ``token_urlsafe(48)`` about 370, 32 x "a" 0).
MIN_SECRET_BITS = 96
MIN_SECRET_DISTINCT = 10
# Committed in development.ini for ``make run``: public, so refused unless the ini says
# ``session.allow_development_secret = true`` (development.ini alone does).
DEVELOPMENT_SECRET = "development-secret-do-not-use-in-production-0123456789"  # noqa: S105
TRUE_WORDS = ("true", "yes", "on", "1", "t", "y")
FALSE_WORDS = ("false", "no", "off", "0", "f", "n")


@dataclass(frozen=True)
class SessionOptions:
    """Every ``session.*`` setting, parsed. Defaults are the documented ones."""

    backends: tuple[str, ...] = ("sql", "redis", "memory")
    secrets: tuple[str, ...] = ()
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "myapp:session:"
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

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, object], environ: Mapping[str, str] | None = None
    ) -> SessionOptions:
        """Parse ``settings``; a bad value raises ConfigurationError naming its key."""
        reader = _Reader(settings)
        environ = os.environ if environ is None else environ
        options = cls(
            backends=reader.backends("session.backends", cls.backends),
            secrets=_secrets(reader, environ),
            redis_url=reader.text("session.redis_url", cls.redis_url),
            redis_prefix=reader.text("session.redis_prefix", cls.redis_prefix),
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
            operator_token=_operator_token(reader, environ),
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
        reader = _Reader(settings)
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


def _secrets(reader: _Reader, environ: Mapping[str, str]) -> tuple[str, ...]:
    env_name = reader.text("session.secret_env", None)
    if env_name:
        raw = environ.get(env_name, "")
        if not raw.strip():
            raise ConfigurationError(
                f"session.secret_env: the environment variable {env_name} is not set; "
                "export it with one or more secrets (newest first) before starting"
            )
        source = f"the environment variable {env_name} (session.secret_env)"
    else:
        raw = reader.text("session.secret", "")
        source = "session.secret"
    secrets = tuple(aslist(raw, flatten=True))
    if not secrets:
        raise ConfigurationError(
            "session.secret is required: set it (one or more secrets, newest first) "
            "or point session.secret_env at an environment variable that holds it"
        )
    allow_development = reader.boolean("session.allow_development_secret", False)
    for secret in secrets:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"{source}: every secret must be at least {MIN_SECRET_LENGTH} characters long; "
                f"{GENERATE_HINT}"
            )
        if secret == DEVELOPMENT_SECRET and not allow_development:
            raise ConfigurationError(
                f"{source}: this is the development secret committed in development.ini; "
                f"anyone can forge cookies with it. {GENERATE_HINT}"
            )
        if secret != DEVELOPMENT_SECRET and not looks_random(secret):
            raise ConfigurationError(
                f"{source}: a secret has too little entropy (repeated or too few distinct "
                f"characters); {GENERATE_HINT}"
            )
    return secrets


GENERATE_HINT = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


def looks_random(secret: str) -> bool:
    """Whether ``secret``'s own character counts carry at least MIN_SECRET_BITS bits."""
    counts = Counter(secret)
    if len(counts) < MIN_SECRET_DISTINCT:
        return False
    length = len(secret)
    bits = -sum(n * math.log2(n / length) for n in counts.values())
    return bits >= MIN_SECRET_BITS


def _operator_token(reader: _Reader, environ: Mapping[str, str]) -> str | None:
    env_name = reader.text("session.operator_token_env", None)
    if env_name:
        token = environ.get(env_name, "").strip() or None
        source = f"the environment variable {env_name} (session.operator_token_env)"
    else:
        token = reader.text("session.operator_token", None)
        source = "session.operator_token"
    if token is not None and (len(token) < MIN_SECRET_LENGTH or not looks_random(token)):
        raise ConfigurationError(
            f"{source}: the operator token must be at least {MIN_SECRET_LENGTH} random "
            f"characters; {GENERATE_HINT}"
        )
    return token


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
    if options.cookie_samesite == "None" and not options.cookie_secure:
        raise ConfigurationError(
            "session.cookie_samesite = None needs session.cookie_secure = true "
            "(browsers drop SameSite=None cookies that are not Secure)"
        )


class _Reader:
    """Typed access to raw ini strings; every error names the key it came from."""

    def __init__(self, settings: Mapping[str, object]) -> None:
        self.settings = settings

    def _raw(self, key: str) -> str | None:
        value = self.settings.get(key)
        if value is None:
            return None
        value = str(value).strip()
        return value if value != "" else None

    def text(self, key: str, default: str | None) -> str | None:
        raw = self._raw(key)
        return default if raw is None else raw

    def boolean(self, key: str, default: bool) -> bool:
        raw = self._raw(key)
        if raw is None:
            return default
        if raw.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ConfigurationError(f"{key}: expected true or false, got {raw!r}")
        return asbool(raw)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{key}: expected a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigurationError(f"{key}: must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float) -> float:
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f"{key}: expected a number of seconds, got {raw!r}") from None
        if not value >= minimum or value == float("inf"):
            raise ConfigurationError(f"{key}: must be a finite number >= {minimum}, got {raw!r}")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = self._raw(key)
        if raw is None:
            return default
        for candidate in allowed:
            if raw.lower() == candidate.lower():
                return candidate
        raise ConfigurationError(f"{key}: expected one of {', '.join(allowed)}, got {raw!r}")

    def optional_choice(self, key: str, allowed: tuple[str, ...]) -> str | None:
        raw = self._raw(key)
        if raw is None or raw.lower() in ("none", "off", "false"):
            return None
        return self.choice(key, allowed[0], allowed)

    def backends(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self._raw(key)
        if raw is None:
            return default
        names = tuple(name.lower() for name in aslist(raw.replace(",", " ")))
        if not names:
            raise ConfigurationError(f"{key}: list at least one of {', '.join(BACKEND_NAMES)}")
        for name in names:
            if name not in BACKEND_NAMES:
                raise ConfigurationError(
                    f"{key}: unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}"
                )
        if len(set(names)) != len(names):
            raise ConfigurationError(f"{key}: a backend is listed twice in {raw!r}")
        return names

    def cookie_name(self, key: str, default: str) -> str:
        value = self.text(key, default) or default
        if not value.isascii() or any(c in value for c in ' ;,="\\()<>@:/[]?{}\t'):
            raise ConfigurationError(f"{key}: {value!r} is not a valid cookie name")
        return value

    def max_age(self, key: str) -> int | None:
        raw = self._raw(key)
        if raw is None or raw.lower() == "lifetime":
            return None
        if raw.lower() == "browser":
            return 0  # a cookie that ends with the browser session
        return self.integer(key, 0, minimum=1)
