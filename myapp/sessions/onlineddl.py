"""Schema changes that never queue the site's requests behind a long transaction.

The package's migrations use it for the one kind of step that takes ACCESS EXCLUSIVE on
``user_sessions`` (adding a column: a catalog change, no rewrite).
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


def add_column_without_queueing(alter_table: str) -> None:
    """Run ``alter_table`` (an ``ADD COLUMN IF NOT EXISTS``) in short lock waits.

    Call it inside ``op.get_context().autocommit_block()``. It runs on the driver's own
    connection: a statement that gives up waiting leaves nothing to roll back, and the
    migration's connection goes on.
    """
    import psycopg

    raw = op.get_bind().connection.dbapi_connection
    assert raw is not None
    for attempt in range(1, LOCK_TRIES + 1):
        raw.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            raw.execute(alter_table)
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == LOCK_TRIES:
                raise
            log.info("user_sessions is busy (lock wait over %s); trying again", LOCK_TIMEOUT)
            time.sleep(0.5)
        finally:
            raw.execute("RESET lock_timeout")
