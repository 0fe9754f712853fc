"""Bring the session package's user_sessions layout revision into the site's history.

Nothing to do: a merge point, so ``alembic upgrade head`` has one head again.

Revision ID: 0006_session_layout
Revises: 0005_orders, 0004_user_sessions_layout
"""

revision = "0006_session_layout"
down_revision = ("0005_orders", "0004_user_sessions_layout")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
