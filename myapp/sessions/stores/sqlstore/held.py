"""Connections the SQL store keeps checked out of its autocommit pool between statements.

Each one-statement call used to check a connection out of SQLAlchemy's pool and back
in: events, record bookkeeping and a reset-on-return ROLLBACK (a no-op in autocommit,
still a driver call) cost ~25 us CPU per request, as much as a third of psycopg's own
cost for the statement. Here an idle connection waits on a stack instead, still checked
out of (and so still counted by) the engine's pool, whose size and overflow keep
bounding how many exist. At most ``pool_size`` wait; any other is closed when
released, as the pool closes its overflow. Disposing of the engine closes the held
ones too.

What the pool did at checkout is done here when a connection is taken: one that looks
closed (its socket is readable) or that idled ``idle_ping_seconds`` is pinged, and
replaced when the ping fails; one opened before a server refused a write as read-only
is closed (``primary``). ``pool_recycle`` applies only when a connection is taken
from the pool itself.
"""

from __future__ import annotations

import os
import threading
import time

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from ...database.pool import IDLE_PING_SECONDS, needs_ping, retired


class HeldConnections:
    """A LIFO stack of the autocommit engine's pooled connections, kept checked out."""

    def __init__(self, engine: Engine, idle_ping_seconds: float = IDLE_PING_SECONDS) -> None:
        self._engine = engine
        self._idle_ping_seconds = idle_ping_seconds
        self._dialect = engine.dialect
        self._ping_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._keep = max(1, int(getattr(engine.pool, "size", lambda: 5)()))
        self._idle: list[tuple[PoolProxiedConnection, float]] = []
        self._lock = threading.Lock()  # only for close() against release()
        self._closed = False
        self._pid = os.getpid()
        # Whoever disposes of the engine (shutdown, tests, a failover) means its
        # connections: the held ones are closed too.
        event.listen(engine, "engine_disposed", self._on_engine_disposed)

    def acquire(self) -> PoolProxiedConnection:
        """A connection for one statement; give it back with ``release`` or ``discard``."""
        if self._pid != os.getpid():
            self._forget_inherited()
        while True:
            try:
                pooled, idle_since = self._idle.pop()  # atomic: no lock on the hot path
            except IndexError:
                return self._engine.raw_connection()
            if self._usable(pooled, idle_since):
                return pooled

    def release(self, pooled: PoolProxiedConnection) -> None:
        """Keep a healthy connection for the next statement."""
        with self._lock:
            if not self._closed and len(self._idle) < self._keep:
                self._idle.append((pooled, time.monotonic()))
                return
        # Closed, as the pool closes its overflow: held and pooled idle connections
        # together stay within pool_size.
        self.discard(pooled)

    def discard(self, pooled: PoolProxiedConnection, error: BaseException | None = None) -> None:
        """Close a connection (one on which anything failed, or one not needed) and
        hand its slot back to the pool, which opens a new one when asked."""
        pooled.invalidate(error)
        pooled.close()

    def close(self) -> None:
        """Close every waiting connection and keep none from now on."""
        with self._lock:
            self._closed = True
        self._close_idle()

    def _on_engine_disposed(self, engine: Engine) -> None:
        if self._pid == os.getpid():
            self._close_idle()

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled, _ in idle:
            # Closed, not checked back in: the pool they came from may be gone.
            self.discard(pooled)

    def __len__(self) -> int:
        return len(self._idle)

    def _usable(self, pooled: PoolProxiedConnection, idle_since: float) -> bool:
        driver = pooled.driver_connection
        if retired(pooled.info, driver):  # opened to a server that is read-only now
            self.discard(pooled)
            return False
        if not needs_ping(driver, idle_since, time.monotonic(), self._idle_ping_seconds):
            return True
        try:
            self._dialect.do_ping(driver)
        except self._ping_error as error:
            self.discard(pooled, error)
            return False
        return True

    def _forget_inherited(self) -> None:
        # A forked worker must neither talk on its parent's sockets nor close them:
        # it starts a pool of its own and leaves the inherited connections alone.
        self._idle = []
        self._pid = os.getpid()
        self._engine.dispose(close=False)
