"""Prometheus metrics for the session layer, served at ``GET /metrics``.

Each app gets its own CollectorRegistry (never the process-global one), so tests can
build many apps and a process serving two apps reports each once. Include this
before ``myapp.sessions``: the store chosen at start-up is reported as it happens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy.exc import SQLAlchemyError

from myapp.sessions import add_observer
from myapp.sessions.database import ENGINE_KEY
from myapp.sessions.events import SessionObserver
from myapp.sessions.exceptions import error_summary
from myapp.sessions.operations.operatoraccess import operator_access, refused
from myapp.sessions.operations.tablehealth import read_table_health

log = logging.getLogger(__name__)

REGISTRY_KEY = "myapp.metrics.registry"
OBSERVER_KEY = "myapp.metrics.observer"
SIGNIN_FAILURES_KEY = "myapp.metrics.signin_failures"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PrometheusObserver(SessionObserver):
    """Turns session events into counters, gauges and histograms."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.loaded = counter("myapp_sessions_loaded", "Sessions loaded from a store", ("store",))
        self.created = counter("myapp_sessions_created", "New sessions stored", ("store",))
        self.saved = counter("myapp_sessions_saved", "Changed sessions saved", ("store",))
        self.touched = counter(
            "myapp_sessions_touched", "Unchanged sessions whose expiry moved", ("store",)
        )
        self.invalidated = counter(
            "myapp_sessions_invalidated", "Sessions ended by invalidate()", ("store",)
        )
        self.conflicts = counter(
            "myapp_session_conflicts", "Saves refused by a concurrent change", ("store", "gone")
        )
        self.bad_cookies = counter(
            "myapp_session_bad_cookies", "Session cookies ignored, by reason", ("reason",)
        )
        self.unavailable = counter(
            "myapp_sessions_unavailable",
            "Requests served without their session: it may be in a store that is down",
            ("store",),
        )
        self.store_errors = counter(
            "myapp_session_store_errors", "Store failures during requests", ("store", "kind")
        )
        self.fallbacks = counter(
            "myapp_session_fallbacks", "Switches to a later store", ("from_store", "to_store")
        )
        self.recoveries = counter(
            "myapp_session_recoveries",
            "Switches back to an earlier store",
            ("from_store", "to_store"),
        )
        self.purged_sessions = counter(
            "myapp_sessions_purged", "Expired sessions deleted by purges", ("store",)
        )
        self.active = Gauge(
            "myapp_session_store_active",
            "1 for the store serving sessions, 0 for the other configured stores",
            ("store",),
            registry=registry,
        )
        self.latency = Histogram(
            "myapp_session_store_latency_seconds",
            "Time spent in store calls, by operation",
            ("store", "operation"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._stores: set[str] = set()

    def known_stores(self, names: tuple[str, ...]) -> None:
        """Give every configured store a gauge, so an idle one reads 0, not absent."""
        for name in names:
            if name not in self._stores:
                self._stores.add(name)
                self.active.labels(name).set(0)

    def session_loaded(self, store: str) -> None:
        self.loaded.labels(store).inc()

    def session_created(self, store: str) -> None:
        self.created.labels(store).inc()

    def session_saved(self, store: str) -> None:
        self.saved.labels(store).inc()

    def session_touched(self, store: str) -> None:
        self.touched.labels(store).inc()

    def session_invalidated(self, store: str) -> None:
        self.invalidated.labels(store).inc()

    def session_conflict(self, store: str, gone: bool) -> None:
        self.conflicts.labels(store, str(gone).lower()).inc()

    def bad_cookie(self, reason: str) -> None:
        self.bad_cookies.labels(reason).inc()

    def session_unavailable(self, store: str) -> None:
        self.unavailable.labels(store).inc()

    def store_error(self, store: str, kind: str) -> None:
        self.store_errors.labels(store, kind).inc()

    def store_latency(self, store: str, operation: str, seconds: float) -> None:
        self.latency.labels(store, operation).observe(seconds)

    def active_store(self, store: str, preferred: bool) -> None:
        self.known_stores((store,))
        for name in self._stores:
            self.active.labels(name).set(1 if name == store else 0)

    def fallback(self, from_store: str | None, to_store: str, reason: str) -> None:
        self.fallbacks.labels(from_store or "none", to_store).inc()

    def recovered(self, from_store: str, to_store: str) -> None:
        self.recoveries.labels(from_store, to_store).inc()

    def purged(self, store: str, count: int) -> None:
        self.purged_sessions.labels(store).inc(count)


class TableHealthCollector(Collector):
    """``user_sessions``'s health, read from PostgreSQL's statistics at each scrape.

    A database that cannot answer (down, or slower than 2 s) leaves these gauges out
    of that scrape, logged; the rest of /metrics is served as usual.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self.registry.get(ENGINE_KEY)
        if engine is None:
            return
        try:
            health = read_table_health(engine)
        except SQLAlchemyError as exc:
            log.warning("user_sessions statistics left out of /metrics: %s", error_summary(exc))
            return
        if health is None:
            return

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc)
            if value is not None:
                family.add_metric([], value)
            return family

        yield gauge(
            "myapp_user_sessions_hot_update_ratio",
            "Share of user_sessions updates that were heap-only (no index touched)",
            health.hot_share,
        )
        yield gauge("myapp_user_sessions_updates", "Updates of user_sessions", health.updates)
        yield gauge("myapp_user_sessions_live_rows", "Live rows (estimate)", health.live_rows)
        yield gauge("myapp_user_sessions_dead_rows", "Dead rows awaiting vacuum", health.dead_rows)
        size = GaugeMetricFamily(
            "myapp_user_sessions_bytes", "On-disk size of user_sessions", labels=["part"]
        )
        size.add_metric(["table"], health.table_bytes)
        size.add_metric(["indexes"], health.index_bytes)
        size.add_metric(["toast"], health.toast_bytes)
        yield size
        yield gauge(
            "myapp_user_sessions_last_vacuum_timestamp_seconds",
            "Unix time of the last VACUUM or autovacuum of user_sessions",
            health.last_vacuum,
        )
        yield gauge(
            "myapp_user_sessions_needs_attention",
            "1 when myapp-sessions stats has advice for user_sessions, else 0",
            1.0 if health.problems() else 0.0,
        )


def count_failed_signin(registry: Registry, reason: str) -> None:
    """One refused sign-in: ``wrong_password``, ``password_too_long`` or ``throttled``."""
    counter = registry.get(SIGNIN_FAILURES_KEY)
    if counter is not None:
        counter.labels(reason).inc()


def get_metrics_registry(registry: Registry) -> CollectorRegistry:
    return registry[REGISTRY_KEY]


def metrics_view(request: Request) -> Response:
    if not operator_access(request):
        return refused(request)
    body = generate_latest(get_metrics_registry(request.registry))
    response = Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.cache_control.no_store = True
    return response


def includeme(config: Configurator) -> None:
    """Register the observer and ``GET /metrics``."""
    collectors = CollectorRegistry(auto_describe=True)
    observer = PrometheusObserver(collectors)
    config.registry[REGISTRY_KEY] = collectors
    config.registry[OBSERVER_KEY] = observer
    config.registry[SIGNIN_FAILURES_KEY] = Counter(
        "myapp_signin_failures", "Refused sign-ins, by reason", ("reason",), registry=collectors
    )
    add_observer(config, observer)
    collectors.register(TableHealthCollector(config.registry))

    def label_configured_stores() -> None:
        from myapp.sessions import CHAIN_KEY

        chain = config.registry.get(CHAIN_KEY)
        if chain is not None:
            observer.known_stores(chain.names)

    config.action(None, label_configured_stores)
    config.add_route("myapp.metrics", "/metrics")
    config.add_view(metrics_view, route_name="myapp.metrics", request_method="GET")
