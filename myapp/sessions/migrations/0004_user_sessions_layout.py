"""user_sessions: what a save leaves alone stored after what it changes, and data as json.

A heap-only update logs only the bytes between the first and the last that differ from
the row's previous version. Every save changes data, last_active_at, expires_at,
version and mac; in the old order (id, data, created_at, last_active_at, expires_at,
user_id, user_agent, version, expires_bucket, mac) that span held created_at, user_id
and user_agent as well, logged again on every save though they never change. And
``jsonb`` keeps a small session in ~1.7 times the bytes of its JSON text (242 B for
142): ``json`` keeps the text itself (checked to be JSON), which is all the store
reads back.

The new order is id, last_active_at, expires_at, version, mac, data, expires_bucket,
created_at, user_id, user_agent: a save logs last_active_at to data; the rest is the
unchanged tail. Columns are never reordered in place, so each moved column is copied
into a new one at the end and swapped in under its old name. Online, each step short:

1. the new columns added (no default: a catalog change), with NOT NULL checks not yet
   validated and a trigger that copies every write of the previous release's columns
   into them, in one transaction whose lock is asked for in short waits;
2. the rows written before it copied in batches of their own transactions;
3. the checks validated (a scan that blocks no writes) and the indexes of the new
   columns built CONCURRENTLY;
4. in one short lock: the old columns dropped (a catalog change: their bytes stay in
   rows written before, until the next write of each), the new ones renamed to the
   old names and made NOT NULL (the validated checks prove it without a scan), the
   trigger dropped.

The previous release keeps working throughout and after: the names stay, it writes
``jsonb`` into ``json`` and ``json`` into ``jsonb`` by assignment casts, and reads data
as text either way. Each step checks what is already done, so a run that stopped half
way is finished by the next ``alembic upgrade head``. Nothing to undo on downgrade: the
previous revision's code works with either layout.

Revision ID: 0004_user_sessions_layout
Revises: 0003_user_sessions_mac
"""

import logging
from collections.abc import Collection

import sqlalchemy as sa
from alembic import op

from myapp.sessions.database.onlineddl import alter_without_queueing

revision = "0004_user_sessions_layout"
down_revision = "0003_user_sessions_mac"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# The moved columns in their new physical order: name -> type of the new column.
MOVED = {
    "data": "json",
    "expires_bucket": "bigint",
    "created_at": "timestamptz",
    "user_id": "varchar(64)",
    "user_agent": "varchar(256)",
}
NOT_NULL = ("data", "created_at")
INDEXED = ("expires_bucket", "user_id")
TRIGGER = "user_sessions_layout_copy"
BATCH_ROWS = 10_000
BUCKET_COMMENT = "end of the hour expires_at falls in (Unix seconds); what the purge indexes"


def new(name: str) -> str:
    """The name of a moved column's copy while both exist."""
    return f"{name}_new"


def _check(name: str) -> str:
    return f"ck_user_sessions_{new(name)}_not_null"


def _index(name: str) -> str:
    return f"ix_user_sessions_{name}"


COPY_FUNCTION = (
    f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    + " ".join(f"NEW.{new(name)} := NEW.{name};" for name in MOVED)
    + " RETURN NEW; END $$"
)
COPY_TRIGGER = (
    f"CREATE OR REPLACE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE ON user_sessions "
    f"FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"
)
# Rows not written since the trigger came: a NOT NULL column's copy is still NULL.
FILL = (
    "UPDATE user_sessions SET data_new = data, expires_bucket_new = expires_bucket, "
    "created_at_new = created_at, user_id_new = user_id, user_agent_new = user_agent "
    "WHERE created_at_new IS NULL AND id > :last"
)


def _columns() -> dict[str, int]:
    """The live columns of user_sessions and their physical positions."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT attname, attnum FROM pg_attribute WHERE attrelid = 'user_sessions'::regclass "
            "AND attnum > 0 AND NOT attisdropped"
        )
    )
    return {name: int(number) for name, number in rows}


def is_done(columns: dict[str, int]) -> bool:
    """Whether the moved columns already come after mac (and no copy is left)."""
    return all(columns[name] > columns["mac"] for name in MOVED) and not any(
        new(name) in columns for name in MOVED
    )


def _index_state(name: str) -> str | None:
    """'valid', 'invalid' (a concurrent build that failed) or None (no such index)."""
    valid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = :name AND n.nspname = current_schema()"
            ),
            {"name": name},
        )
        .scalar()
    )
    return None if valid is None else ("valid" if valid else "invalid")


def copy_statements(checks_present: Collection[str] = ()) -> list[str]:
    """Step 1's statements: the new columns, their checks (those not in
    ``checks_present``) and the trigger that copies every write into them."""
    adds = [f"ADD COLUMN IF NOT EXISTS {new(name)} {kind}" for name, kind in MOVED.items()]
    checks = [
        f"ADD CONSTRAINT {_check(name)} CHECK ({new(name)} IS NOT NULL) NOT VALID"
        for name in NOT_NULL
        if _check(name) not in checks_present
    ]
    return [f"ALTER TABLE user_sessions {', '.join(adds + checks)}", COPY_FUNCTION, COPY_TRIGGER]


def _add_copies() -> None:
    """Step 1, in one short lock."""
    present = {
        row[0]
        for row in op.get_bind().execute(
            sa.text("SELECT conname FROM pg_constraint WHERE conrelid = 'user_sessions'::regclass")
        )
    }
    alter_without_queueing(*copy_statements(present))


def _backfill() -> None:
    """Step 2: the rows no write has copied yet, in primary-key order, one short
    transaction per batch (the trigger copies the columns of every later write)."""
    bind = op.get_bind()
    last, filled = "", 0
    while True:
        upper = bind.execute(
            sa.text(
                "SELECT id FROM user_sessions WHERE id > :last ORDER BY id OFFSET :skip LIMIT 1"
            ),
            {"last": last, "skip": BATCH_ROWS - 1},
        ).scalar()
        bound = "" if upper is None else " AND id <= :upper"
        filled += bind.execute(sa.text(FILL + bound), {"last": last, "upper": upper}).rowcount
        if upper is None:
            break
        last = upper
    log.info("user_sessions: %d rows copied into the new layout's columns", filled)


def _index_copies() -> None:
    """Step 3: the checks validated and the new columns indexed, writes going on."""
    for name in NOT_NULL:
        op.execute(f"ALTER TABLE user_sessions VALIDATE CONSTRAINT {_check(name)}")
    for name in INDEXED:
        index = _index(new(name))
        if _index_state(index) == "invalid":
            op.execute(f"DROP INDEX CONCURRENTLY {index}")
        if _index_state(index) is None:
            op.execute(f"CREATE INDEX CONCURRENTLY {index} ON user_sessions ({new(name)})")


def _swap() -> None:
    """Step 4: the copies take the old names, in one short lock."""
    alter_without_queueing(
        f"DROP TRIGGER {TRIGGER} ON user_sessions",
        f"DROP FUNCTION {TRIGGER}()",
        # Their indexes go with them.
        "ALTER TABLE user_sessions " + ", ".join(f"DROP COLUMN {name}" for name in MOVED),
        *(f"ALTER TABLE user_sessions RENAME COLUMN {new(name)} TO {name}" for name in MOVED),
        "ALTER TABLE user_sessions "
        + ", ".join(f"ALTER COLUMN {name} SET NOT NULL" for name in NOT_NULL)
        + ", "
        + ", ".join(f"DROP CONSTRAINT {_check(name)}" for name in NOT_NULL),
        *(f"ALTER INDEX {_index(new(name))} RENAME TO {_index(name)}" for name in INDEXED),
        f"COMMENT ON COLUMN user_sessions.expires_bucket IS '{BUCKET_COMMENT}'",
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # a physical layout; SQLite's data column is JSON text already
    with op.get_context().autocommit_block():
        if is_done(_columns()):
            return
        _add_copies()
        _backfill()
        _index_copies()
        _swap()
        # Statistics for the renamed columns (a sample; blocks no writes).
        op.execute(f"ANALYZE user_sessions ({', '.join(MOVED)})")
        log.info("user_sessions: the moved columns now come after mac")


def downgrade() -> None:
    pass  # the previous revision's code reads and writes either layout
