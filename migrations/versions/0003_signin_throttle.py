"""Create signin_throttle: failed sign-in counters shared by every app process.

Revision ID: 0003_signin_throttle
Revises: 0002_users
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_signin_throttle"
down_revision = "0002_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_throttle",
        sa.Column(
            "key",
            sa.String(64),
            nullable=False,
            comment="SHA-256 of account:NAME or address:IP",
        ),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure", sa.Float(), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_signin_throttle")),
    )


def downgrade() -> None:
    op.drop_table("signin_throttle")
