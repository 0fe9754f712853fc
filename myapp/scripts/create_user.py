"""``myapp-create-user --ini INI [--if-missing] USERNAME PASSWORD``: add a site account."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from myapp.accounts import UserExists, create_user
from myapp.models import get_engine
from myapp.sessions.purge import error_summary
from myapp.sessions.redact import install_log_redaction, redact

EXIT_OK, EXIT_FAILED = 0, 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="myapp-create-user", description=__doc__)
    parser.add_argument("--ini", required=True, help="the app's ini file (database settings)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="succeed without changes when the user exists (for idempotent set-up)",
    )
    parser.add_argument("username")
    parser.add_argument("password")
    return parser.parse_args(argv)


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
        with engine.begin() as conn:
            user = create_user(conn, args.username, args.password)
    except UserExists as exc:
        if args.if_missing:
            print(f"{exc}; nothing to do")
            return EXIT_OK
        print(f"error: {exc} (use --if-missing to accept that)", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:
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
