"""Add user_sessions.mac: each row's authenticator (an HMAC under the session secrets).

Nullable and without a default, so adding it rewrites nothing; on PostgreSQL its brief
lock is asked for in short waits, never queueing requests behind a long transaction.
Rows written before it have NULL there and are never served: those sessions end once, at
the upgrade (their shoppers sign in again). Not indexed: it is only read.

Revision ID: 0003_user_sessions_mac
Revises: 0002_user_sessions_hot
"""

import sqlalchemy as sa
from alembic import op

from myapp.sessions.database.onlineddl import add_column_without_queueing

revision = "0003_user_sessions_mac"
down_revision = "0002_user_sessions_hot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.add_column("user_sessions", sa.Column("mac", sa.String(64), nullable=True))
        return
    with op.get_context().autocommit_block():
        add_column_without_queueing(
            "ALTER TABLE user_sessions ADD COLUMN IF NOT EXISTS mac varchar(64)"
        )


def downgrade() -> None:
    op.drop_column("user_sessions", "mac")
