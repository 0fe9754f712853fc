"""Site accounts: creating users and checking their passwords (argon2id)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as DBSession
from zope.sqlalchemy import mark_changed

from myapp.models import users

# argon2-cffi's defaults follow RFC 9106's recommendations; the cost is in the hash,
# so hashes made with other parameters still verify (and are replaced at sign-in).
DEFAULT_HASHER = PasswordHasher()
USERNAME_MAX = 64
# Longer passwords are refused before hashing: hashing megabytes costs CPU for nothing.
PASSWORD_MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str


class UserExists(ValueError):
    """A user of that name is already there."""


def normalise_username(username: str) -> str:
    """Names are compared case-insensitively and without surrounding blanks."""
    return username.strip().lower()


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    return hasher.hash(password)


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("an unknown user's password is never this")


def find_user(db: Connection | DBSession, username: str) -> tuple[User, str] | None:
    """The user called ``username`` and their password hash, or None."""
    row = db.execute(
        sa.select(users.c.id, users.c.username, users.c.password_hash).where(
            users.c.username == normalise_username(username)
        )
    ).first()
    return None if row is None else (User(row.id, row.username), row.password_hash)


def password_too_long(password: str, max_length: int = PASSWORD_MAX_LENGTH) -> bool:
    return len(password) > max_length


def authenticate(
    db: Connection | DBSession,
    username: str,
    password: str,
    *,
    hasher: PasswordHasher = DEFAULT_HASHER,
    max_length: int = PASSWORD_MAX_LENGTH,
) -> User | None:
    """The user when ``password`` is theirs, else None (same cost either way).

    A password longer than ``max_length`` is refused without hashing. A hash made with
    other parameters than ``hasher``'s is replaced (in ``db``'s transaction).
    """
    if password_too_long(password, max_length) or len(username) > 4 * USERNAME_MAX:
        return None
    # A NUL cannot be in any stored name, and PostgreSQL refuses it in a query.
    found = find_user(db, username) if username.strip() and "\x00" not in username else None
    stored = found[1] if found else _dummy_hash(hasher)
    try:
        hasher.verify(stored, password)
    except (VerificationError, InvalidHashError, UnicodeEncodeError):
        return None
    if found is None:
        return None
    if hasher.check_needs_rehash(stored):
        db.execute(
            sa.update(users)
            .where(users.c.id == found[0].id)
            .values(password_hash=hasher.hash(password))
        )
        if isinstance(db, DBSession):
            mark_changed(db)  # a Core write: zope.sqlalchemy would not commit it otherwise
    return found[0]


def account_problems(
    username: str, password: str, *, max_length: int = PASSWORD_MAX_LENGTH
) -> list[str]:
    """What is wrong with a new account's name and password (empty: nothing).

    The one place the rules live: ``myapp-create-user`` and the sign-up form both ask it.
    """
    problems = []
    name = normalise_username(username)
    if not name or len(name) > USERNAME_MAX or any(c.isspace() for c in name):
        problems.append(f"a username is 1 to {USERNAME_MAX} characters without spaces")
    if not password:
        problems.append("the password must not be empty")
    if password_too_long(password, max_length):
        problems.append(f"a password is at most {max_length} characters")
    return problems


def create_user(
    conn: Connection | DBSession,
    username: str,
    password: str,
    *,
    hasher: PasswordHasher = DEFAULT_HASHER,
) -> User:
    """Insert a user; raises :class:`UserExists` or ValueError for a bad name or password."""
    problems = account_problems(username, password)
    if problems:
        raise ValueError(problems[0])
    name = normalise_username(username)
    if find_user(conn, name) is not None:
        raise UserExists(f"a user named {name!r} already exists")
    user_id = conn.execute(
        sa.insert(users)
        .values(username=name, password_hash=hasher.hash(password))
        .returning(users.c.id)
    ).scalar_one()
    if isinstance(conn, DBSession):
        mark_changed(conn)  # a Core write: zope.sqlalchemy would not commit it otherwise
    return User(user_id, name)
