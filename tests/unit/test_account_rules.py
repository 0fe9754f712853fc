"""Which names and passwords a new account may have: one check, for every way in."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from myapp.accounts import account_problems, common_passwords, create_user, find_user
from myapp.models import metadata

CHEAP = PasswordHasher.from_parameters(CHEAPEST)


@pytest.mark.parametrize(
    ("name", "password", "problem"),
    [
        ("alice", "a", "at least 8 characters"),
        ("alice", "", "at least 8 characters"),
        ("alice", "password1", "most common"),
        ("alice", "Qwertyuiop", "most common"),
        ("alice", "ALICE", "at least 8"),
        ("alicealice", "AliceAlice", "not be the username"),
        ("\u0430lice", "a-good-long-one", "one script"),  # Cyrillic a, then Latin
        ("al\x1bice", "a-good-long-one", "control or invisible"),
        ("al\u200bice", "a-good-long-one", "control or invisible"),
        ("ali ce", "a-good-long-one", "spaces"),
        ("alice<script>", "a-good-long-one", "letters, digits"),
        ("", "a-good-long-one", "1 to 64"),
        ("x" * 65, "a-good-long-one", "1 to 64"),
    ],
)
def test_a_bad_name_or_password_is_refused_saying_why(name, password, problem):
    problems = account_problems(name, password)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "name",
    ["alice", "Bob", "jean-luc.picard", "\u0438\u0432\u0430\u043d", "caf\u00e9", "a@b.example"],
)
def test_good_names_and_passwords_pass(name):
    assert account_problems(name, "correct horse battery") == []


def test_the_common_list_is_shipped_and_large():
    assert len(common_passwords()) >= 10_000
    assert "123456" in common_passwords()


@pytest.fixture
def conn():
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def test_create_user_refuses_what_account_problems_refuses(conn):
    for name, password in (("alice", "a"), ("\u0430lice", "a-good-long-one"), ("a\x1bb", "x" * 9)):
        with pytest.raises(ValueError, match="username|password"):
            create_user(conn, name, password, hasher=CHEAP)
        assert find_user(conn, name) is None


def test_names_are_stored_nfkc_normalised(conn):
    user = create_user(conn, "\uff21lice", "a-good-long-one", hasher=CHEAP)  # full-width A
    assert user.username == "alice"
    assert find_user(conn, "ALICE")[0].id == user.id
    assert find_user(conn, "\uff41lice")[0].id == user.id
