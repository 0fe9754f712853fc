"""Create users: site accounts (name, argon2 password hash).

Revision ID: 0002_users
Revises: 0001_user_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_users"
down_revision = "0001_user_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column(
            "password_hash", sa.String(255), nullable=False, comment="argon2id, PHC string format"
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )


def downgrade() -> None:
    op.drop_table("users")
