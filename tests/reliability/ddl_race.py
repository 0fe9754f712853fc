"""Run the same CREATE TABLE IF NOT EXISTS from several processes at the same instant.

Kept free of pytest so that spawned worker processes import it cheaply.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import psycopg
from psycopg import sql

# The session table DDL the crashed app ran at every server start.
SESSIONS_DDL = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (sid varchar PRIMARY KEY, sess json, expire timestamptz)"
)
# Any constant works, as long as every process that runs the DDL uses the same one.
DDL_LOCK_KEY = 0x5E55_1045
_BARRIER_TIMEOUT = 30.0
_RESULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Failure:
    """One worker's error while creating one table."""

    table: str
    sqlstate: str | None
    message: str


def _create_table(conn: psycopg.Connection, table: str, with_lock: bool) -> None:
    ddl = SESSIONS_DDL.format(sql.Identifier(table))
    if not with_lock:
        # Autocommit, like node-postgres running a single statement.
        conn.execute(ddl)
        return
    with conn.transaction():
        # The xact lock is held until commit, so the next worker only runs the DDL
        # once the table is committed and IF NOT EXISTS can see it.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        conn.execute(ddl)


def _worker(
    dsn: str,
    tables: list[str],
    with_lock: bool,
    barrier: Barrier,
    results: Queue[list[Failure] | str],
) -> None:
    try:
        failures = []
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            for table in tables:
                barrier.wait(_BARRIER_TIMEOUT)
                try:
                    _create_table(conn, table, with_lock)
                except psycopg.Error as exc:
                    failures.append(Failure(table, exc.sqlstate, str(exc)))
        results.put(failures)
    except BaseException as exc:
        # Unblock the other workers instead of leaving them at the barrier.
        barrier.abort()
        results.put(f"worker crashed: {exc!r}")


def _collect(
    procs: list[BaseProcess], results: Queue[list[Failure] | str]
) -> list[list[Failure] | str]:
    """Gather one outcome per worker, failing fast if a worker dies without reporting."""
    outcomes: list[list[Failure] | str] = []
    deadline = time.monotonic() + _RESULT_TIMEOUT
    while len(outcomes) < len(procs):
        try:
            outcomes.append(results.get(timeout=0.2))
            continue
        except queue.Empty:
            pass
        dead = [proc.exitcode for proc in procs if proc.exitcode not in (None, 0)]
        if dead:
            raise RuntimeError(f"DDL race workers died with exit codes {dead}")
        if time.monotonic() > deadline:
            raise TimeoutError("DDL race workers did not report back")
    return outcomes


def race_create_tables(
    dsn: str, tables: list[str], workers: int, with_lock: bool = False
) -> list[Failure]:
    """Let ``workers`` processes create each table in turn, all at once; return failures."""
    # Not plain fork: forking a process that may hold threads or sockets is unsafe. The
    # fork server imports this module once, so each worker starts without a fresh import.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    barrier = ctx.Barrier(workers)
    results: Queue[list[Failure] | str] = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(dsn, tables, with_lock, barrier, results))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        outcomes = _collect(procs, results)
    finally:
        barrier.abort()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    crashes = [outcome for outcome in outcomes if isinstance(outcome, str)]
    if crashes:
        raise RuntimeError("; ".join(crashes))
    return [failure for outcome in outcomes if isinstance(outcome, list) for failure in outcome]
