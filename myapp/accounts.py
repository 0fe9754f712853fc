"""Site accounts: creating users and checking their passwords (argon2id)."""

from __future__ import annotations

import functools
import unicodedata
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
PASSWORD_MIN_LENGTH = 8
# Besides letters (of one script) and marks, a name may hold ASCII digits and these.
NAME_PUNCTUATION = frozenset("-_.@+")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str


class UserExists(ValueError):
    """A user of that name is already there."""


def normalise_username(username: str) -> str:
    """Names are compared in NFKC form, case-insensitively, without surrounding blanks
    (full-width letters are their ASCII selves)."""
    return unicodedata.normalize("NFKC", username).strip().lower()


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's list (shipped with the package)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _script(char: str) -> str:
    """The script of a letter, as the first word of its Unicode name ("LATIN", "CYRILLIC",
    "GREEK", "CJK", "HIRAGANA"...)."""
    return unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]


def name_problems(username: str) -> list[str]:
    """Why ``username`` cannot name a new account (empty: it can)."""
    name = normalise_username(username)
    if not name or len(name) > USERNAME_MAX:
        return [f"a username is 1 to {USERNAME_MAX} characters"]
    problems = []
    if not name.isprintable() or any(c.isspace() for c in name):
        problems.append("a username holds no spaces, control or invisible characters")
    letters = [c for c in name if unicodedata.category(c).startswith("L")]
    others = [
        c
        for c in name
        if not unicodedata.category(c).startswith(("L", "M"))
        and not (c.isascii() and c.isdigit())
        and c not in NAME_PUNCTUATION
        and c.isprintable()
        and not c.isspace()
    ]
    if others:
        problems.append("a username holds letters, digits and - _ . @ + only")
    if len({_script(c) for c in letters}) > 1:
        problems.append("a username's letters are of one script (no Latin mixed with Cyrillic)")
    return problems


def password_problems(
    password: str, username: str = "", *, max_length: int = PASSWORD_MAX_LENGTH
) -> list[str]:
    """Why ``password`` cannot be a new account's (empty: it can)."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return [f"a password is at least {PASSWORD_MIN_LENGTH} characters"]
    if password_too_long(password, max_length):
        return [f"a password is at most {max_length} characters"]
    problems = []
    if password.lower() in common_passwords():
        problems.append("that password is among the most common ones; choose another")
    if username and normalise_username(password) == normalise_username(username):
        problems.append("the password must not be the username")
    return problems


def account_problems(
    username: str, password: str, *, max_length: int = PASSWORD_MAX_LENGTH
) -> list[str]:
    """Every reason a new account of this name and password is refused (empty: none).

    The one check of names and passwords, for ``create_user``, ``myapp-create-user`` and
    any sign-up page: names are NFKC-normalised, printable, of one script; passwords at
    least PASSWORD_MIN_LENGTH characters and not among the common ones.
    """
    return name_problems(username) + password_problems(password, username, max_length=max_length)


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


def create_user(
    conn: Connection | DBSession,
    username: str,
    password: str,
    *,
    hasher: PasswordHasher = DEFAULT_HASHER,
) -> User:
    """Insert a user; raises :class:`UserExists`, or ValueError saying every
    :func:`account_problems` of the name and password."""
    problems = account_problems(username, password)
    if problems:
        raise ValueError("; ".join(problems))
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
