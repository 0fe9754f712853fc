"""myapp-sessions: the operator's tools for the session stores.

    myapp-sessions check INI              readiness of every configured store (deploy gate)
    myapp-sessions purge INI [--batch-size N]   delete expired sessions in short batches
    myapp-sessions stats INI [--top N]    live and expired sessions per store, top users,
                                          and the health of the user_sessions table
    myapp-sessions end-user INI NAME      end every session of one user
    myapp-sessions sign-unsigned INI      sign the sessions an older release stored
                                          without an authenticator (once, at upgrade)

Only check and sign-unsigned need the cookie secret (check checks what start-up
checks; sign-unsigned signs with it); the others sign nothing and run without it,
e.g. from cron.

Exit status: 0 success; 1 not ready or failed; 2 bad usage or configuration;
3 (purge) another purge holds the lock.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import sqlalchemy as sa
from pyramid.exceptions import ConfigurationError
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from myapp.accounts import find_user
from myapp.models import users
from myapp.sessions.chain import StoreState
from myapp.sessions.exceptions import StoreError, error_summary
from myapp.sessions.interfaces import (
    IPurgeable,
    IStoreStatistics,
    IUserSessions,
    IUserSessionsTable,
)
from myapp.sessions.operations.purge import PURGE_LOCK_ID, Purger
from myapp.sessions.operations.tablehealth import read_table_health
from myapp.sessions.redact import RedactingWriter, redact
from myapp.sessions.stores.base import SessionStore

from .environment import ScriptEnvironment, load_environment
from .progress import PurgeProgress

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3

Command = Callable[[ScriptEnvironment, argparse.Namespace, TextIO], int]


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _check_all(env: ScriptEnvironment) -> list[StoreState]:
    return [env.chain.check(index) for index in range(len(env.chain.states))]


def _count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 session``, ``2 sessions``; ``plural`` when adding an s is wrong."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write(("  ".join([*cells, row[-1]])).rstrip() + "\n")


# -- check ----------------------------------------------------------------------


def check(env: ScriptEnvironment, args: argparse.Namespace, out: TextIO) -> int:
    """Initialise every store as start-up does; non-zero when the first one is not ready."""
    states = _check_all(env)
    configured = " ".join(env.options.backends)
    out.write(f"Session stores in {env.ini} (session.backends = {configured}):\n\n")
    rows = [["store", "ready", "check", "why / fix"]]
    for state in states:
        note = "" if state.ready else f"{state.cause}; fix: {state.fix}"
        if state.ready and state.store is not None and not state.store.shared:
            note = "not shared: each app process keeps its own sessions"
        took = "-" if state.check_seconds is None else f"{state.check_seconds:.3f}s"
        rows.append([state.name, "yes" if state.ready else "NO", took, note])
    _table(rows, out)
    serving = next((s for s in states if s.ready), None)
    out.write("\n")
    if serving is None:
        out.write("NOT READY: no store is ready; the app would refuse to start.\n")
        return EXIT_FAILED
    if serving is not states[0]:
        out.write(
            f"NOT READY: the first store, {states[0].name!r}, is not ready; the app would "
            f"start degraded on {serving.name!r}.\n"
        )
        return EXIT_FAILED
    out.write(f"READY: sessions would be served by {serving.name!r}.\n")
    return EXIT_OK


# -- purge ----------------------------------------------------------------------


def purge(env: ScriptEnvironment, args: argparse.Namespace, out: TextIO) -> int:
    """Delete expired sessions batch by batch; safe while the site serves."""
    batch_size = args.batch_size or env.options.purge_batch_size
    targets: list[SessionStore] = []
    status = EXIT_OK
    for state in _check_all(env):
        if state.store is not None and not state.store.shared:
            out.write(f"{state.name}: skipped, it lives inside each app process\n")
        elif not state.ready or state.store is None:
            out.write(f"{state.name}: not ready ({state.cause}); fix: {state.fix}\n")
            status = EXIT_FAILED
        else:
            targets.append(state.store)
    progress = PurgeProgress(out)
    purger = Purger(targets, batch_size=batch_size, lock_engine=env.engine)
    results = purger.run(on_start=progress.start, on_batch=progress.update)
    progress.finish()
    for result in results:
        if result.outcome == "locked":
            out.write(
                f"{result.store}: another purge is running (PostgreSQL advisory lock "
                f"{PURGE_LOCK_ID} is held); this one deleted nothing. Try again later.\n"
            )
        elif result.outcome == "failed":
            out.write(f"{result.store}: failed after deleting {result.deleted}: {result.error}\n")
        else:
            out.write(
                f"{result.store}: deleted {_count(result.deleted, 'expired session')} in "
                f"{_count(result.batches, 'batch', 'batches')} of up to {batch_size} "
                f"({result.seconds:.1f}s)\n"
            )
    outcomes = {result.outcome for result in results}
    if "locked" in outcomes:
        return EXIT_LOCKED
    return EXIT_FAILED if "failed" in outcomes else status


# -- stats ----------------------------------------------------------------------


def _user_names(env: ScriptEnvironment, ids: set[str], out: TextIO) -> dict[str, str]:
    numeric = [int(i) for i in ids if i.isdigit()]
    if not numeric:
        return {}
    try:
        with env.engine.connect() as conn:
            rows = conn.execute(
                sa.select(users.c.id, users.c.username).where(users.c.id.in_(numeric))
            )
            return {str(row.id): row.username for row in rows}
    except SQLAlchemyError as exc:
        out.write(f"(user names unavailable: {error_summary(exc)})\n")
        return {}


def _table_health(env: ScriptEnvironment, out: TextIO) -> None:
    """How user_sessions keeps itself small (PostgreSQL only)."""
    try:
        health = read_table_health(env.engine)
    except SQLAlchemyError as exc:
        out.write(f"\nuser_sessions table: statistics unavailable ({error_summary(exc)})\n")
        return
    if health is None:
        return
    out.write("\nuser_sessions table (PostgreSQL statistics since their last reset):\n")
    for line in health.lines():
        out.write(f"  {line}\n")


def stats(env: ScriptEnvironment, args: argparse.Namespace, out: TextIO) -> int:
    """Live and expired sessions per store, and the users with the most live sessions."""
    now = time.time()
    status = EXIT_OK
    rows = [["store", "live", "expired", "note"]]
    tops: list[tuple[str, list[tuple[str, int]]]] = []
    for state in _check_all(env):
        store = state.store
        if store is not None and not store.shared:
            rows.append([state.name, "-", "-", "not shared: counted inside each app process"])
            continue
        if not state.ready or store is None:
            rows.append([state.name, "-", "-", f"not ready: {state.cause}"])
            status = EXIT_FAILED
            continue
        if not IStoreStatistics.providedBy(store):
            rows.append([state.name, "-", "-", "keeps no counts"])
            continue
        try:
            live, expired = store.count(now)
            tops.append((state.name, store.top_users(now, args.top)))
        except (StoreError, SQLAlchemyError) as exc:
            rows.append([state.name, "-", "-", f"failed: {error_summary(exc)}"])
            status = EXIT_FAILED
            continue
        note = "" if IPurgeable.providedBy(store) else "expires sessions itself"
        rows.append([state.name, str(live), str(expired), note])
    _table(rows, out)
    if any(IUserSessionsTable.providedBy(state.store) for state in env.chain.states):
        _table_health(env, out)
    names = _user_names(env, {uid for _, top in tops for uid, _ in top}, out)
    for store_name, top in tops:
        out.write(f"\nTop {args.top} users by live sessions ({store_name}):\n")
        if not top:
            out.write("  (no signed-in sessions)\n")
        for user_id, count in top:
            label = f"{names[user_id]} (id {user_id})" if user_id in names else f"id {user_id}"
            out.write(f"  {count:>8}  {label}\n")
    return status


# -- end-user -------------------------------------------------------------------


def end_user(env: ScriptEnvironment, args: argparse.Namespace, out: TextIO) -> int:
    """End every session of the user called NAME, on every shared store."""
    try:
        with env.engine.connect() as conn:
            found = find_user(conn, args.name)
    except SQLAlchemyError as exc:
        out.write(
            f"cannot look up {args.name!r}: the database is unreachable ({error_summary(exc)})\n"
        )
        return EXIT_FAILED
    if found is None:
        out.write(f"no user named {args.name!r}\n")
        return EXIT_FAILED
    user = found[0]
    status = EXIT_OK
    for state in _check_all(env):
        store = state.store
        if store is not None and not store.shared:
            out.write(
                f"{state.name}: skipped, it lives inside each app process (they are ended "
                "there by the user's own 'Your sessions' page or a restart)\n"
            )
            continue
        if not state.ready or store is None:
            out.write(f"{state.name}: NOT reached ({state.cause}); fix: {state.fix}\n")
            status = EXIT_FAILED
            continue
        if not IUserSessions.providedBy(store):
            out.write(f"{state.name}: skipped, it cannot find a user's sessions\n")
            continue
        try:
            ended = store.delete_user(str(user.id))
        except StoreError as exc:
            out.write(f"{state.name}: failed: {exc}\n")
            status = EXIT_FAILED
            continue
        out.write(f"{state.name}: ended {_count(ended, 'session')} of {user.username!r}\n")
    return status


# -- sign-unsigned --------------------------------------------------------------


def sign_unsigned(env: ScriptEnvironment, args: argparse.Namespace, out: TextIO) -> int:
    """Sign the user_sessions rows stored before rows carried an authenticator."""
    batch_size = args.batch_size or env.options.purge_batch_size
    status = EXIT_OK
    for state in _check_all(env):
        sql = state.store
        if not IUserSessionsTable.providedBy(sql):
            if state.store is not None:
                out.write(f"{state.name}: nothing to sign (only user_sessions rows are)\n")
            continue
        if not state.ready:
            out.write(f"{state.name}: not ready ({state.cause}); fix: {state.fix}\n")
            status = EXIT_FAILED
            continue
        try:
            signed = sql.sign_unsigned(time.time(), batch_size)
        except StoreError as exc:
            out.write(f"{state.name}: failed: {exc}\n")
            status = EXIT_FAILED
            continue
        out.write(f"{state.name}: signed {_count(signed, 'session')} stored without one\n")
    return status


# -- entry point ----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="myapp-sessions",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("ini", help="the app's ini file, e.g. production.ini")
        sub.set_defaults(run=fn)
        return sub

    command("check", check, "check every configured store as start-up would")
    sub = command("purge", purge, "delete expired sessions in short batches")
    sub.add_argument(
        "--batch-size",
        type=_positive,
        help="sessions deleted per transaction (default: session.purge_batch_size)",
    )
    sub = command("stats", stats, "sessions per store and the users with the most")
    sub.add_argument("--top", type=_positive, default=10, help="how many users to list")
    sub = command("end-user", end_user, "end every session of one user")
    sub.add_argument("name", help="the user's name, as they sign in")
    sub = command(
        "sign-unsigned",
        sign_unsigned,
        "sign the sessions an older release stored without an authenticator",
    )
    sub.add_argument(
        "--batch-size",
        type=_positive,
        help="rows read per batch (default: session.purge_batch_size)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parse_args(argv)
    # Causes quote URLs; one that carries a password must not reach a terminal or a log.
    out = RedactingWriter(out or sys.stdout)
    try:
        env = load_environment(args.ini, needs_secret=args.run in (check, sign_unsigned))
    except (ConfigurationError, FileNotFoundError, KeyError, ArgumentError, ValueError) as exc:
        print(redact(f"configuration error in {args.ini}: {exc}"), file=sys.stderr)
        return EXIT_CONFIG
    try:
        return args.run(env, args, out)  # type: ignore[arg-type]
    finally:
        env.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
