"""Deleting expired sessions in short batches, one purger at a time across the fleet.

Used by ``myapp-sessions purge`` and by the optional purge thread that
``session.purge_interval`` starts inside the app. On PostgreSQL the SQL store is
only purged under an advisory lock held by an open transaction, so several processes
(or a cron job and the app) never purge at the same time; the others skip their turn.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from pyramid.config import Configurator
from pyramid.registry import Registry
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..assemble import get_chain, get_observer, get_options
from ..database import ENGINE_KEY
from ..events import SessionObserver
from ..exceptions import PurgeLocked, StoreError, error_summary
from ..interfaces import IPurgeable, IUserSessionsTable
from ..stores.base import SessionStore

log = logging.getLogger(__name__)

# Any constant works as long as every process uses the same; differs from the
# migration lock in migrations/env.py so a purge never holds up a deploy.
PURGE_LOCK_ID = 0x6D797075726765  # "mypurge"
PURGE_THREAD_KEY = "myapp.sessions.purge_thread"


@dataclass(slots=True)
class StorePurge:
    """How one store's purge went."""

    store: str
    outcome: str = "running"  # then "done", "locked" or "failed"
    deleted: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch: float = 0.0
    error: str | None = None


BatchCallback = Callable[[StorePurge], None]


def purge_store(
    store: SessionStore,
    *,
    batch_size: int,
    now: float,
    on_batch: BatchCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    result: StorePurge | None = None,
) -> StorePurge:
    """Delete sessions expired at ``now``, ``batch_size`` at a time, until none is left.

    Each batch is its own short transaction (the store's ``purge_expired``), so rows
    are never locked for longer than one batch. A store that is not
    :class:`~myapp.sessions.interfaces.IPurgeable` expires its records itself: done at
    once. Raises StoreError.
    """
    result = result or StorePurge(store.name)
    started = time.perf_counter()
    while IPurgeable.providedBy(store) and not (should_stop and should_stop()):
        batch_started = time.perf_counter()
        deleted = store.purge_expired(now, batch_size)
        result.longest_batch = max(result.longest_batch, time.perf_counter() - batch_started)
        if deleted == 0:
            break
        result.deleted += deleted
        result.batches += 1
        if on_batch is not None:
            on_batch(result)
    result.seconds = time.perf_counter() - started
    result.outcome = "done"
    return result


@contextlib.contextmanager
def advisory_lock(engine: Engine, lock_id: int = PURGE_LOCK_ID) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while the block runs, or raise PurgeLocked.

    The lock is transaction-level (``pg_try_advisory_xact_lock``), held by a
    transaction that stays open on a connection of its own while the batches run on
    others, and released by its rollback, or by PostgreSQL when the connection dies.
    Nothing outlives the transaction on the server connection, so this holds behind a
    transaction-pooling PgBouncer too (which pins a server connection to an open
    transaction), and a lock can never stay behind on a pooled connection. The
    transaction only read, so it holds back no vacuum.

    Elsewhere (SQLite: one host, one file) there is nothing to take.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        try:
            taken = conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": lock_id}
            ).scalar()
            if not taken:
                raise PurgeLocked("another process is purging sessions (the purge lock is taken)")
            yield
        finally:
            conn.rollback()  # ends the transaction: the lock goes with it


class Purger:
    """Purges several stores; the PostgreSQL one only under the fleet-wide advisory lock."""

    def __init__(
        self,
        stores: Sequence[SessionStore],
        *,
        batch_size: int,
        lock_engine: Engine | None = None,
        observer: SessionObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stores = list(stores)
        self.batch_size = batch_size
        self.lock_engine = lock_engine
        self.observer = observer or SessionObserver()
        self.clock = clock

    def _lock_for(self, store: SessionStore) -> contextlib.AbstractContextManager[None]:
        # Only the user_sessions table lives in the database the lock is taken in.
        if IUserSessionsTable.providedBy(store) and self.lock_engine is not None:
            return advisory_lock(self.lock_engine)
        return contextlib.nullcontext()

    def run(
        self,
        *,
        on_start: Callable[[SessionStore, float], None] | None = None,
        on_batch: BatchCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[StorePurge]:
        """Purge every store once; failures are logged and reported, never raised."""
        results = []
        for store in self.stores:
            result = StorePurge(store.name)
            results.append(result)
            try:
                with self._lock_for(store):
                    now = self.clock()
                    if on_start is not None:
                        on_start(store, now)
                    purge_store(
                        store,
                        batch_size=self.batch_size,
                        now=now,
                        on_batch=on_batch,
                        should_stop=should_stop,
                        result=result,
                    )
            except PurgeLocked as exc:
                result.outcome, result.error = "locked", str(exc)
                log.info("session purge of %r skipped: %s", store.name, exc)
                continue
            except (StoreError, SQLAlchemyError) as exc:
                result.outcome, result.error = "failed", error_summary(exc)
                log.error(
                    "session purge of %r failed after %d deleted: %s",
                    store.name,
                    result.deleted,
                    result.error,
                )
                continue
            finally:
                if result.deleted:
                    self.observer.purged(store.name, result.deleted)
            if result.deleted:
                log.info(
                    "purged %d expired sessions from %r in %d batches (%.1fs)",
                    result.deleted,
                    store.name,
                    result.batches,
                    result.seconds,
                )
        return results


class PurgeThread(threading.Thread):
    """Runs a :class:`Purger` every ``interval`` seconds until stopped."""

    def __init__(self, purger: Purger, interval: float) -> None:
        super().__init__(name="myapp-session-purge", daemon=True)
        self.purger = purger
        self.interval = interval
        self._stopping = threading.Event()
        self.runs = 0

    def run(self) -> None:
        # The first purge waits one interval: a fleet deploying at once does not
        # start with a burst of purges.
        while not self._stopping.wait(self.interval):
            self.purger.run(should_stop=self._stopping.is_set)
            self.runs += 1

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end (mid-purge, after the current batch) and wait for it."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)


def get_purge_thread(registry: Registry) -> PurgeThread | None:
    return registry.get(PURGE_THREAD_KEY)


def includeme(config: Configurator) -> None:
    """Start the purge thread when ``session.purge_interval`` > 0 (off by default)."""
    registry = config.registry
    options = get_options(registry)
    if options.purge_interval <= 0:
        return
    chain = get_chain(registry)
    purger = Purger(
        [state.store for state in chain.states if state.store is not None],
        batch_size=options.purge_batch_size,
        lock_engine=registry.get(ENGINE_KEY),
        observer=get_observer(registry),
    )
    thread = PurgeThread(purger, options.purge_interval)
    registry[PURGE_THREAD_KEY] = thread
    thread.start()
    log.info(
        "expired sessions are purged every %ss in batches of %d (session.purge_interval)",
        options.purge_interval,
        options.purge_batch_size,
    )
