"""Signed-in shoppers across a database fault: production settings, accounts, and the
figures a fault leaves in the shoppers' tally (writes served again, pauses)."""

from __future__ import annotations

import configparser
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bench.soak_client import Crowd, Tally
from myapp.accounts import create_user
from tests.conftest import SECRET
from tests.support.databases import REPO
from tests.support.site import CHEAP_HASHER

if TYPE_CHECKING:
    from tests.reliability.apps import AppProcess

#: A served write: the site's forms answer a POST with a redirect.
WRITE_STATUS = 303


def production_settings(url: str, redis_prefix: str, **extra: str) -> dict[str, str]:
    """production.ini's app settings, on ``url``, with test secrets and views.

    Without its public origin: the shoppers talk to the app directly over plain HTTP,
    not through the TLS proxy that origin names."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "production.ini")
    settings = {
        key: value
        for key, value in parser["app:main"].items()
        if key
        not in ("use", "session.secret_env", "session.operator_token_env", "myapp.public_origin")
    }
    settings.update(
        {
            "sqlalchemy.url": url,
            "session.secret": SECRET,
            "session.redis_prefix": redis_prefix,
            **extra,
        }
    )
    from tests.reliability.apps import app_settings

    return app_settings(**settings)


def shopper_accounts(url: str, count: int) -> list[tuple[str, str]]:
    accounts = [(f"shopper{i}", f"shopper-password-{i}") for i in range(count)]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name, password in accounts:
            create_user(conn, name, password, hasher=CHEAP_HASHER)
    engine.dispose()
    return accounts


def signed_in_crowd(app: AppProcess, accounts: list[tuple[str, str]]) -> tuple[Crowd, Tally]:
    tally = Tally()
    crowd = Crowd(app.port, len(accounts), tally, accounts=accounts).start()
    from tests.reliability.apps import wait_for

    wait_for(lambda: crowd.signed_in == len(accounts), 30, "every shopper signed in")
    wait_for(lambda: tally.confirmed_adds >= 3 * len(accounts), 30, "carts with items")
    return crowd, tally


def first_write_after(tally: Tally, moment: float) -> float:
    """Seconds from ``moment`` to the end of the first write served that began after it."""
    with tally.lock:
        ends = [
            end
            for start, end, status in tally.samples
            if start >= moment and status == WRITE_STATUS
        ]
    assert ends, "no write was served after the fault ended"
    return min(ends) - moment


def longest_write_pause(tally: Tally, start: float, end: float) -> float:
    """The longest time between two served writes (or ``start`` and the first) that ended
    between ``start`` and ``end``."""
    with tally.lock:
        ends = sorted(
            e for _, e, status in tally.samples if start <= e <= end and status == WRITE_STATUS
        )
    assert ends, "no write was served in the window"
    return max(b - a for a, b in zip([start, *ends], ends, strict=False))


def report(what: str, seconds: float, tally: Tally) -> None:
    print(
        f"\n{what}: {seconds:.2f}s; {tally.confirmed_adds} items"
        f" confirmed, {tally.items_lost} lost, {tally.users_signed_out} signed out,"
        f" statuses of failures {sorted({s for _, _, s in tally.failures})}"
    )


def writes_since(tally: Tally, moment: float) -> int:
    with tally.lock:
        return sum(
            1 for start, _, status in tally.samples if start >= moment and status == WRITE_STATUS
        )
