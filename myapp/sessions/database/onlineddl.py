"""Schema changes that never queue the site's requests behind a long transaction.

The package's migrations use it for the steps that take a lock writers wait for on
``user_sessions`` (adding a column, creating a trigger, swapping columns: catalog
changes, no rewrite).
"""

from __future__ import annotations

import logging
import time

from alembic import op

log = logging.getLogger("alembic.runtime.migration")

# Given up after this wait instead of holding every request behind the ALTER's lock
# request while a long transaction finishes; tried again after a pause.
LOCK_TIMEOUT = "2s"
LOCK_TRIES = 30


def alter_without_queueing(*statements: str) -> None:
    """Run ``statements`` in one transaction whose lock waits are short.

    Call it inside ``op.get_context().autocommit_block()``. It runs on the driver's own
    connection: a try that gives up waiting rolls back whole (nothing half done), and is
    made again after a pause, up to ``LOCK_TRIES`` times.
    """
    import psycopg

    raw = op.get_bind().connection.dbapi_connection
    assert raw is not None
    for attempt in range(1, LOCK_TRIES + 1):
        try:
            with raw.transaction():
                raw.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                for statement in statements:
                    raw.execute(statement)
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == LOCK_TRIES:
                raise
            log.info("user_sessions is busy (lock wait over %s); trying again", LOCK_TIMEOUT)
            time.sleep(0.5)


def add_column_without_queueing(alter_table: str) -> None:
    """Run ``alter_table`` (an ``ADD COLUMN IF NOT EXISTS``) in short lock waits."""
    alter_without_queueing(alter_table)
