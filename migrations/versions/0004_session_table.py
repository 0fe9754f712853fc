"""Bring the session package's user_sessions revision into the site's history.

Nothing to do: a merge point, so ``alembic upgrade head`` has one head again.

Revision ID: 0004_session_table
Revises: 0003_signin_throttle, 0003_user_sessions_mac
"""

revision = "0004_session_table"
down_revision = ("0003_signin_throttle", "0003_user_sessions_mac")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
