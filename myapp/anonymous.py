"""How many new anonymous sessions one client address may start: the table cannot be
filled from one machine.

A session is stored for a visitor who has not signed in only when it holds something
(a cart; one-off messages travel in a cookie). Each such new session counts against
its client address (an IPv4 address or an IPv6 /64) in the sign-in throttle's shared
counters: ``myapp.anonymous_sessions_per_address`` per ``myapp.anonymous_sessions_window``
seconds. Past that, the request that would store one more is answered 429 with
``Retry-After`` and stores nothing (the cart stays empty); visitors who already have
a session, and signed-in ones, are not affected. Clients on this host (loopback: the
operator, a local health check or benchmark) are not counted; behind the proxy,
waitress's ``trusted_proxy`` gives each client its own address. When the counters
cannot count (its store is down, while the sessions fail over elsewhere), the session is
admitted and the error logged: the bound protects a table from growing, and the shop
must keep serving through an outage.
"""

from __future__ import annotations

import ipaddress
import logging
import math

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from myapp.sessions.interfaces import INewSessionAdmission
from myapp.settings import get_site_settings
from myapp.throttle import ThrottleUnavailable, client_address, get_throttle
from myapp.throttle.base import AttemptCounters, Limit

log = logging.getLogger(__name__)


class TooManyNewSessions(Exception):
    """This address started its allowance of anonymous sessions in the window."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many new anonymous sessions from one address")
        self.retry_after = retry_after


class NewSessionAllowance:
    """The :class:`INewSessionAdmission` utility: counts, and refuses past the bound."""

    def __init__(self, per_address: int, window: float) -> None:
        self.limit = Limit(per_address, window, window, window)
        self._warned = False

    def __call__(self, request: Request) -> None:
        if _loopback(request.remote_addr):
            return
        throttle = get_throttle(request.registry)
        address = client_address(request.remote_addr)
        key = throttle.counter_key("new-session", address)
        now = throttle.clock()

        def take(counters: AttemptCounters) -> tuple[int | None, float]:
            count = counters.take(key, now, self.limit)
            if count is not None and count <= self.limit.free:
                return count, 0.0
            return count, counters.blocked_for([key], now) or self.limit.first_delay

        try:
            _, wait = throttle.count_with(take)  # type: ignore[misc]
        except ThrottleUnavailable:
            return  # said by count_with; the shop goes on through a store outage (see above)
        if wait > 0:
            log.log(
                logging.INFO if self._warned else logging.WARNING,
                "refused a new anonymous session from %s: it started %d in %d s "
                "(myapp.anonymous_sessions_per_address)",
                address,
                self.limit.free,
                int(self.limit.forget_after),
            )
            self._warned = True
            raise TooManyNewSessions(wait)


def _loopback(remote_addr: str | None) -> bool:
    try:
        return ipaddress.ip_address((remote_addr or "").strip()).is_loopback
    except ValueError:
        return False


def too_many(exc: TooManyNewSessions, request: Request) -> Response:
    response = Response(
        "Too Many Requests: too many new visitors from your address. Please try again later.\n",
        status=429,
        content_type="text/plain",
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


def includeme(config: Configurator) -> None:
    site = get_site_settings(config.registry)
    config.registry.registerUtility(
        NewSessionAllowance(site.anonymous_sessions_per_address, site.anonymous_sessions_window),
        INewSessionAdmission,
    )
    config.add_exception_view(too_many, context=TooManyNewSessions)
