"""``myapp-create-user --ini INI [--if-missing] [--password-stdin] USERNAME``: add a site account.

The password is asked for at a prompt, or read from standard input with
``--password-stdin`` (one line): never from the command line, where ``ps`` and the
shell's history would show it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from myapp.accounts import UserExists, create_user, find_user, normalise_username
from myapp.sessions.database import get_engine
from myapp.sessions.exceptions import error_summary
from myapp.sessions.redact import install_log_redaction, redact

EXIT_OK, EXIT_FAILED = 0, 1


class NoPassword(ValueError):
    """No password could be read."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="myapp-create-user",
        description="Add a site account. The password is asked for, or read from standard input.",
    )
    parser.add_argument("--ini", required=True, help="the app's ini file (database settings)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="succeed without changes when the user exists (for idempotent set-up)",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (its first line) instead of a prompt",
    )
    parser.add_argument("username")
    # Only to refuse it with a reason: a password in argv is visible to every user.
    parser.add_argument("password", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.password is not None:
        parser.error(
            "the password is never taken on the command line (other users see it in `ps`, "
            "and the shell keeps it in its history): type it at the prompt, or pipe it in "
            "with --password-stdin"
        )
    return args


def read_password(
    from_stdin: bool,
    stdin: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str:
    """The new password: the first line of standard input, or typed twice at a prompt."""
    stdin = stdin or sys.stdin
    if from_stdin:
        line = stdin.readline()
        if not line:
            raise NoPassword("standard input is empty: nothing to read the password from")
        return line.removesuffix("\n").removesuffix("\r")
    if not stdin.isatty():
        raise NoPassword("no terminal to ask for the password on: pipe it in with --password-stdin")
    password = prompt("Password: ")
    if prompt("Password (again): ") != password:
        raise NoPassword("the two passwords differ")
    return password


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.ini)
    install_log_redaction()
    try:
        engine = get_engine(get_appsettings(args.ini))
    except (ArgumentError, ValueError) as exc:
        print(redact(f"error: sqlalchemy.url in {args.ini}: {exc}"), file=sys.stderr)
        return EXIT_FAILED
    try:
        with engine.connect() as conn:  # ask for no password for a user that exists
            if find_user(conn, args.username) is not None:
                name = normalise_username(args.username)
                raise UserExists(f"a user named {name!r} already exists")
        password = read_password(args.password_stdin)  # no transaction open meanwhile
        with engine.begin() as conn:
            user = create_user(conn, args.username, password)
    except UserExists as exc:
        if args.if_missing:
            print(f"{exc}; nothing to do")
            return EXIT_OK
        print(f"error: {exc} (use --if-missing to accept that)", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:  # NoPassword, or a name or password create_user refuses
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        print(
            f"error: cannot write to the database ({error_summary(exc)}); check sqlalchemy.url in "
            f"{args.ini} and that `alembic -c {args.ini} upgrade head` ran",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        engine.dispose()
    print(f"created user {user.username!r} (id {user.id})")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
