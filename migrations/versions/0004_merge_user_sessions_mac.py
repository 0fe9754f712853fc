"""Merge the session package's user_sessions.mac into the site's history (one head).

Revision ID: 0004_merge_user_sessions_mac
Revises: 0003_signin_throttle, 0003_user_sessions_mac
"""

revision = "0004_merge_user_sessions_mac"
down_revision = ("0003_signin_throttle", "0003_user_sessions_mac")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
