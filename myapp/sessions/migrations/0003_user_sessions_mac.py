"""Add user_sessions.mac: each row's authenticator (an HMAC under the session secrets).

Nullable and without a default, so adding it rewrites nothing and takes no longer than
its lock. Rows written before it have NULL there and are never served: those sessions
end once, at the upgrade (their shoppers sign in again). Not indexed: it is only read.

Revision ID: 0003_user_sessions_mac
Revises: 0001_user_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_user_sessions_mac"
down_revision = "0001_user_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_sessions", sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("user_sessions", "mac")
