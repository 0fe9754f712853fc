"""Waitress with a graceful stop: ``use = egg:myapp#main`` in ``[server:main]``.

On SIGTERM (or SIGINT) the process stops accepting connections, answers what is in
flight (each answer says ``Connection: close``), closes idle keep-alive connections,
and exits once nothing is left or after ``shutdown_grace`` seconds (default 20),
whichever comes first. A second signal stops waiting. Every other ``[server:main]``
setting is waitress's own. Waitress's "Task queue depth" warning, which it logs on
every request that has to wait for a thread, is turned into one explanatory line a
minute at most.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

log = logging.getLogger(__name__)

DEFAULT_GRACE = 20.0
#: How often the server loop looks at the stop flag (a signal cannot wake it safely).
LOOP_SECONDS = 0.2
#: The queue warning is said at most this often.
QUEUE_REPORT_SECONDS = 60.0

StartResponse = Callable[..., Any]


class QueueDepthReport(logging.Filter):
    """Replaces waitress's per-request "Task queue depth is N" with a line a minute."""

    def __init__(self, threads: int, every: float = QUEUE_REPORT_SECONDS) -> None:
        super().__init__()
        self.threads = threads
        self.every = every
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self._peak = 0
        self._times = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Task queue depth"):
            return True
        depth = int(record.args[0]) if isinstance(record.args, tuple) and record.args else 0
        now = time.monotonic()
        with self._lock:
            self._peak = max(self._peak, depth)
            self._times += 1
            if now < self._quiet_until:
                return False
            self._quiet_until = now + self.every
            peak, times = self._peak, self._times
            self._peak = self._times = 0
        record.msg = (
            "requests are waiting for a free worker thread: %d waiting now, at most %d, "
            "%d time(s) since this was last said; all %d threads are busy. If it lasts, "
            "add processes (or waitress threads), and look at /healthz and the store "
            "latency in /metrics for slow store calls. Said at most every %gs."
        )
        record.args = (depth, peak, times, self.threads, self.every)
        return True


def quiet_queue_warnings(threads: int) -> None:
    """Install :class:`QueueDepthReport` on waitress's queue logger (once)."""
    queue_logger = logging.getLogger("waitress.queue")
    if not any(isinstance(f, QueueDepthReport) for f in queue_logger.filters):
        queue_logger.addFilter(QueueDepthReport(threads))


class Stop:
    """When the stop began (monotonic), shared by the server loop and the app wrapper."""

    since: float | None = None


def closing(app: Callable[..., Iterable[bytes]], stop: Stop) -> Callable[..., Iterable[bytes]]:
    """``app``, answering ``Connection: close`` once the stop has begun."""

    def closing_app(environ: dict[str, Any], start_response: StartResponse) -> Any:
        if stop.since is None:
            return app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != "connection"]
            return start_response(status, [*kept, ("Connection", "close")], exc_info)

        return app(environ, start)

    return closing_app


class GracefulServer:
    """Runs a waitress server's loop until a signal, then drains it."""

    def __init__(self, server: Any, stop: Stop, grace: float = DEFAULT_GRACE) -> None:
        self.server = server
        self.stop = stop
        self.grace = grace
        self._map: dict[int, Any] = server.map if hasattr(server, "map") else server._map

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags: the loop does the work (a lock taken here could deadlock).
        if self.stop.since is None:
            self.stop.since = time.monotonic()
        else:
            self.grace = 0.0  # a second signal: stop waiting

    def run(self) -> None:
        adj = self.server.adj
        while True:
            wasyncore.loop(
                timeout=LOOP_SECONDS, map=self._map, use_poll=adj.asyncore_use_poll, count=1
            )
            if self.stop.since is None:
                continue
            if not self._accepting_closed:
                self._stop_accepting()
            busy = self._busy()
            waited = time.monotonic() - self.stop.since
            if not busy:
                log.info("stopped after %.2fs: every request in flight was answered", waited)
                break
            if waited >= self.grace:
                log.warning(
                    "stopped after the %gs grace period (shutdown_grace) with %d request(s) "
                    "still in flight; they were cut",
                    self.grace,
                    busy,
                )
                break
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(self._map)

    _accepting_closed = False

    def _stop_accepting(self) -> None:
        self._accepting_closed = True
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, BaseWSGIServer):
                # The listener only (its close() would also close the loop's trigger).
                wasyncore.dispatcher.close(dispatcher)
        log.warning(
            "stopping (signal received): no longer accepting connections; finishing "
            "%d request(s) in flight, for at most %gs (shutdown_grace)",
            self._busy(),
            self.grace,
        )

    def _busy(self) -> int:
        """Requests not yet fully answered; idle keep-alive connections are closed."""
        dispatcher = self.server.task_dispatcher
        with dispatcher.lock:
            busy = len(dispatcher.queue)
        for channel in list(self._map.values()):
            if not isinstance(channel, HTTPChannel):
                continue
            if channel.requests or channel.total_outbufs_len or channel.request is not None:
                busy += 1
            elif not channel.will_close:
                channel.will_close = True  # idle keep-alive: the client reconnects elsewhere
        return busy


def listening_urls(server: Any) -> list[str]:
    """Where ``server`` (one socket or several) accepts connections."""
    servers = getattr(server, "effective_listen", None)
    if servers is None:
        servers = [(server.effective_host, server.effective_port)]
    urls = []
    for host, port in servers:
        shown = f"[{host}]" if ":" in str(host) else host
        urls.append(f"http://{shown}:{port}")
    return urls


def serve(app: Callable[..., Iterable[bytes]], global_conf: Any = None, **settings: Any) -> int:
    """The ``paste.server_runner``: waitress's settings, plus ``shutdown_grace`` (seconds)."""
    grace = float(settings.pop("shutdown_grace", DEFAULT_GRACE))
    quiet = bool(settings.pop("_quiet", False))
    stop = Stop()
    try:
        server = create_server(closing(app, stop), **settings)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        where = settings.get("listen") or f"{settings.get('host')}:{settings.get('port')}"
        # One line, no traceback: the operator's fix is in it.
        raise SystemExit(
            f"myapp: cannot listen on {where}: the address is already in use (is another "
            "server running?). Stop it, or choose another port: `listen` in [server:main] "
            "(make run PORT=6544 in development)"
        ) from None
    graceful = GracefulServer(server, stop, grace)
    quiet_queue_warnings(server.adj.threads)
    graceful.install_signal_handlers()
    if not quiet:
        logging.basicConfig()
    for url in listening_urls(server):
        log.info("serving on %s (%d threads)", url, server.adj.threads)
    graceful.run()
    return 0
