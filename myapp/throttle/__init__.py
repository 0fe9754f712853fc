"""Sign-in throttling per account and per client address, with delays that double.

Each account and each client address may fail a few times for free
(``signin.account_free_failures``, ``signin.address_free_failures``); every further
failure blocks it for ``signin.first_delay`` seconds, doubled each time up to
``signin.max_delay``. While blocked, a sign-in is answered 429 with ``Retry-After``
before any password is hashed. Counts are forgotten ``signin.forget_after`` seconds
after the last failure; a successful sign-in clears its account's count (not its
address's: one good account must not unlock guessing at others).

Counters live in the store serving sessions, so every process sees them: the
``signin_throttle`` table when ``sql`` serves, Redis when ``redis`` does, process
memory only when memory serves, or for a moment when the shared store fails.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable

import redis
from pyramid.config import Configurator
from pyramid.registry import Registry
from sqlalchemy.exc import SQLAlchemyError

from myapp.accounts import normalise_username
from myapp.sessions import get_chain, get_options
from myapp.settings import SiteSettings, get_site_settings

from .base import FailureCounters
from .memorycounters import MemoryCounters

log = logging.getLogger(__name__)

THROTTLE_KEY = "myapp.throttle"
STORE_ERRORS = (SQLAlchemyError, redis.RedisError, OSError)


def client_address(remote_addr: str | None) -> str:
    """The address a limit applies to: an IPv4 address, or an IPv6 /64 (one host's range)."""
    try:
        ip = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return "unknown"
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "replace")).hexdigest()


class SigninThrottle:
    """The policy; the counters come from ``counters()``, asked at every call."""

    def __init__(
        self,
        settings: SiteSettings,
        counters: Callable[[], FailureCounters],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.clock = clock
        self.fallback = MemoryCounters()
        self._warned: set[str] = set()

    def _limits(self, username: str, address: str) -> list[tuple[str, int]]:
        account = normalise_username(username)[:256]
        return [
            (_key("account", account), self.settings.signin_account_free_failures),
            (_key("address", address), self.settings.signin_address_free_failures),
        ]

    def _call(self, fn: Callable[[FailureCounters], object]) -> object:
        counters = self.counters()
        try:
            result = fn(counters)
        except STORE_ERRORS as exc:
            if counters.name not in self._warned:
                self._warned.add(counters.name)
                log.warning(
                    "sign-in throttling cannot use the %r store (%s); counting in this "
                    "process only until it answers. Fix: check the store; for sql, run "
                    "`alembic upgrade head` (table signin_throttle)",
                    counters.name,
                    exc,
                )
            return fn(self.fallback)
        self._warned.discard(counters.name)
        return result

    def retry_after(self, username: str, address: str) -> float:
        """Seconds this account or address must wait before trying (0: go ahead)."""
        keys = [key for key, _ in self._limits(username, address)]
        now = self.clock()
        return float(self._call(lambda counters: counters.blocked_for(keys, now)))  # type: ignore[arg-type]

    def failed(self, username: str, address: str) -> float:
        """Count a failed sign-in; return how long the next attempt must wait."""
        settings, now = self.settings, self.clock()
        wait = 0.0
        for key, free in self._limits(username, address):

            def count(counters: FailureCounters, key: str = key, free: int = free) -> float:
                failures = counters.add_failure(key, now, settings.signin_forget_after)
                if failures <= free:
                    return 0.0
                delay = min(
                    settings.signin_max_delay,
                    settings.signin_first_delay * 2.0 ** min(failures - free - 1, 64),
                )
                counters.block(key, now + delay, now)
                return delay

            wait = max(wait, float(self._call(count)))  # type: ignore[arg-type]
        return wait

    def succeeded(self, username: str, address: str) -> None:
        account_key = self._limits(username, address)[0][0]
        self._call(lambda counters: counters.clear(account_key))


class _ServingCounters:
    """The counters of the store serving sessions now; each built on first use."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._built: dict[str, FailureCounters] = {}
        self._lock = threading.Lock()

    def __call__(self) -> FailureCounters:
        name = get_chain(self.registry).active_name
        counters = self._built.get(name)
        if counters is None:
            with self._lock:
                counters = self._built.get(name) or self._build(name)
                self._built[name] = counters
        return counters

    def _build(self, name: str) -> FailureCounters:
        if name == "sql":
            from .sqlcounters import SqlCounters

            return SqlCounters(self.registry["dbengine"])
        if name == "redis":
            from myapp.sessions.stores.redisstore import make_client

            from .rediscounters import RedisCounters

            options = get_options(self.registry)
            client = make_client(options.redis_url, options.store_timeout)
            return RedisCounters(client, options.redis_prefix + "throttle:")
        return MemoryCounters()


def get_throttle(registry: Registry) -> SigninThrottle:
    return registry[THROTTLE_KEY]


def includeme(config: Configurator) -> None:
    registry = config.registry
    registry[THROTTLE_KEY] = SigninThrottle(get_site_settings(registry), _ServingCounters(registry))
