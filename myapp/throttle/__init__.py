"""Sign-in throttling per account and client address, per account, and per address.

Three counts limit sign-in attempts, each with free attempts and then delays that
double (``signin.first_delay`` up to ``signin.max_delay``):

* one account from one client address (``signin.account_free_failures``): what a
  guesser meets first; the owner signing in from another address is not affected;
* one account from anywhere (``signin.account_wide_free_failures``, far higher): a
  ceiling against guessing from many addresses, which then blocks the owner too;
* one client address over all accounts (``signin.address_free_failures``).

An attempt is counted before its password is checked, in one atomic step per count
that refuses it if the count is blocked, and the attempt that goes past the free ones
blocks the count at once: attempts sent at the same moment are refused (429 with
``Retry-After``) before any hashing, not checked in a burst. A successful sign-in
forgets its account-and-address count and gives its attempt back to the other two.
Counts are forgotten ``signin.forget_after`` seconds after the last attempt.

Counts live in the store serving sessions, so every process sees them: the
``signin_throttle`` table (on an engine of its own, see ``sqlcounters``) when ``sql``
serves, Redis when ``redis`` does, process memory only when memory serves. When the
shared store cannot count, the sign-in is refused (503), never counted in one process.
Keys are HMACs of the normalised name and the address under a key derived from the
session secret: the table and Redis hold no name or address.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from myapp.accounts import normalise_username
from myapp.sessions import get_chain, get_options
from myapp.sessions.assemble import per_store
from myapp.sessions.options import SessionOptions
from myapp.settings import SiteSettings, get_site_settings

from .base import AttemptCounters, Limit
from .memorycounters import MemoryCounters

log = logging.getLogger(__name__)

THROTTLE_KEY = "myapp.throttle"
STORE_ERRORS = (SQLAlchemyError, redis.RedisError, OSError)
#: Seconds a client is asked to wait when the counters cannot be reached.
UNAVAILABLE_RETRY_AFTER = 5


class ThrottleUnavailable(Exception):
    """The shared counters cannot count: the sign-in is refused, not let through."""


def client_address(remote_addr: str | None) -> str:
    """The address a limit applies to: an IPv4 address, or an IPv6 /64 (one host's range)."""
    try:
        ip = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return "unknown"
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def throttle_key_secret(secrets: tuple[bytes, ...]) -> bytes:
    """The key the counters' keys are made under (bound to this purpose; the newest secret)."""
    return hashlib.sha256(b"myapp.signin-throttle\x00" + secrets[0]).digest()


def name_fingerprint(secret: bytes, username: str) -> str:
    """A short keyed fingerprint of a typed name, for logs that must not show it."""
    account = normalise_username(username)[:256]
    return hmac.new(secret, f"log:{account}".encode("utf-8", "replace"), "sha256").hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One sign-in attempt as counted: refused (``wait`` > 0) or going ahead."""

    wait: float
    taken: tuple[tuple[str, int, Limit], ...] = ()  # (key, count, limit) counted

    @property
    def begins_block(self) -> float:
        """The block this attempt began by being counted, should it fail (0: none)."""
        return max((limit.delay(count) for _, count, limit in self.taken), default=0.0)


class SigninThrottle:
    """The policy; the counters come from ``counters()``, asked at every call."""

    def __init__(
        self,
        settings: SiteSettings,
        counters: Callable[[], AttemptCounters],
        *,
        secret: bytes = b"",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.secret = secret
        self.clock = clock

        def limit(free: int) -> Limit:
            return Limit(
                free, settings.signin_first_delay, settings.signin_max_delay,
                settings.signin_forget_after,
            )  # fmt: skip

        self.pair_limit = limit(settings.signin_account_free_failures)
        self.account_limit = limit(settings.signin_account_wide_free_failures)
        self.address_limit = limit(settings.signin_address_free_failures)

    def counter_key(self, kind: str, value: str) -> str:
        """The counters' key for ``value`` of ``kind``: an HMAC, so names and addresses
        are not readable (or recoverable) from the store."""
        message = f"{kind}:{value}".encode("utf-8", "replace")
        return hmac.new(self.secret, message, "sha256").hexdigest()

    def _limits(self, username: str, address: str) -> list[tuple[str, Limit]]:
        account = normalise_username(username)[:256]
        return [
            (self.counter_key("account-address", f"{account}\x00{address}"), self.pair_limit),
            (self.counter_key("account", account), self.account_limit),
            (self.counter_key("address", address), self.address_limit),
        ]

    def count_with(self, fn: Callable[[AttemptCounters], object]) -> object:
        """Run ``fn`` on the counters; ThrottleUnavailable (said in the log) when the
        store cannot count."""
        counters = self.counters()
        try:
            return fn(counters)
        except STORE_ERRORS as exc:
            log.error(
                "sign-in throttling cannot use the %r store (%s): refusing sign-ins until it "
                "answers. Fix: check the store; for sql, run `alembic upgrade head` (table "
                "signin_throttle)",
                counters.name,
                exc,
            )
            raise ThrottleUnavailable(str(exc)) from None

    def attempt(self, username: str, address: str) -> Attempt:
        """Count an attempt before its password is checked; refused when ``wait`` > 0.

        Raises :class:`ThrottleUnavailable` when the counters cannot be reached.
        """
        limits = self._limits(username, address)
        now = self.clock()

        def count(counters: AttemptCounters) -> Attempt:
            taken: list[tuple[str, int, Limit]] = []
            for key, limit in limits:
                got = counters.take(key, now, limit)
                if got is None:  # blocked: give back what this attempt counted
                    for earlier, _, _ in taken:
                        counters.give_back(earlier)
                    wait = counters.blocked_for([key], now) or limit.first_delay
                    return Attempt(wait=wait)
                taken.append((key, got, limit))
            return Attempt(wait=0.0, taken=tuple(taken))

        return self.count_with(count)  # type: ignore[return-value]

    def failed(self, attempt: Attempt) -> float:
        """The attempt failed (it is already counted); how long the next must wait."""
        return attempt.begins_block

    def succeeded(self, attempt: Attempt) -> None:
        """Forget the account-and-address count; give the attempt back to the others.

        Call it once the sign-in has committed (SQLite: the request may hold the
        database's one write lock until then). Should the store fail here, the counts
        stay as they are (they are forgotten in time) and the sign-in stands.
        """
        if not attempt.taken:
            return
        (pair, _, _), *others = attempt.taken

        def forget(counters: AttemptCounters) -> None:
            counters.clear(pair)
            for key, _, _ in others:
                counters.give_back(key)

        # Said by count_with; a signed-in visitor is not refused for it.
        with contextlib.suppress(ThrottleUnavailable):
            self.count_with(forget)

    def succeeded_after(self, request: Request, attempt: Attempt) -> None:
        """:meth:`succeeded` once the request's transaction has committed."""
        request.add_response_callback(lambda request, response: self.succeeded(attempt))


def _sql_counters(options: SessionOptions, registry: Registry) -> AttemptCounters:
    from .sqlcounters import SqlCounters, throttle_engine

    engine = throttle_engine(dict(registry.settings))
    # Disposed with the site's engine (at shutdown, and by tests).
    event.listen(registry["dbengine"], "engine_disposed", lambda _: engine.dispose())
    return SqlCounters(engine)


def _redis_counters(options: SessionOptions, registry: Registry) -> AttemptCounters:
    from myapp.sessions.stores.redisstore import make_client

    from .rediscounters import RedisCounters

    client = make_client(options.redis_url, options.store_timeout)
    return RedisCounters(client, options.redis_prefix + "throttle:")


#: Where attempts can be counted: the name of a session store -> its counters' builder.
COUNTERS = {
    "sql": _sql_counters,
    "redis": _redis_counters,
    "memory": lambda options, registry: MemoryCounters(),
}


def get_throttle(registry: Registry) -> SigninThrottle:
    return registry[THROTTLE_KEY]


def unavailable(exc: ThrottleUnavailable, request: Request) -> Response:
    """The counters cannot count: refuse the sign-in rather than let it through unlimited."""
    response = Response(
        "Service Unavailable: sign-in is paused for a moment. Please try again shortly.\n",
        status=503,
        content_type="text/plain",
    )
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    return response


def includeme(config: Configurator) -> None:
    """The throttle, its counters assembled with the stores: in the store serving
    sessions, or where ``signin.counters`` says. A store it has no counters for stops
    start-up (naming the setting), never counts in one process instead."""
    registry = config.registry
    site = get_site_settings(registry)
    counters_of = per_store(
        registry,
        COUNTERS,
        what="sign-in throttling",
        setting="signin.counters" if site.signin_counters else "session.backends",
        only=site.signin_counters,
    )
    chain = get_chain(registry)
    registry[THROTTLE_KEY] = SigninThrottle(
        site,
        lambda: counters_of(chain.active_name),
        secret=throttle_key_secret(get_options(registry).secret_bytes),
    )
    config.add_exception_view(unavailable, context=ThrottleUnavailable)
