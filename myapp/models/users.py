"""The ``users`` table: site accounts that sign in with a name and an argon2 password hash."""

from sqlalchemy import Column, DateTime, Integer, String, Table, func

from .meta import metadata

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False, comment="argon2id, PHC string format"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
