"""How many modules of ``myapp.sessions`` one state-changing POST passes through.

How it counts: the app is built and warmed up first (a GET for the CSRF token and one
POST that creates the session: start-up and the first request's imports and caches
are excluded). Then ``sys.setprofile`` records, during one more POST that changes the
session on the SQL store (PostgreSQL, so in its session transaction), the file of every
Python function called in this thread. The modules counted are the files under
``myapp/sessions/`` among them: each one whose code ran for the request, however
little. Threads of the package (the deadline's watchdog, probes) are not counted.

A reader follows that many modules to see a POST through: twelve at most.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType

import pytest

import myapp.sessions
from tests.support.site import cart_lines, csrf_token

pytestmark = pytest.mark.postgres

PACKAGE = Path(myapp.sessions.__file__).resolve().parent

#: The most modules a POST may pass through: 29 before the package was put in folders,
#: 24 once modules that are one idea were merged, 12 since each part of the road is
#: grouped by role (the request: factory, session, storeio; the chain and its recovery;
#: the SQL store: store, transaction, connection; the database's pool and transaction;
#: the authenticator; the events).
MOST_MODULES = 12


def _modules_run(call) -> list[str]:
    """The modules of the package whose functions ``call()`` ran, in this thread."""
    files: set[str] = set()
    package = str(PACKAGE)

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            files.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return sorted(
        str(Path(name).resolve().relative_to(PACKAGE)) for name in files if name.startswith(package)
    )


def test_a_post_passes_through_few_modules(make_app):
    handle = make_app("sql-postgres")
    app = handle.app
    token = csrf_token(app.get("/"))
    app.post("/cart/add", {"csrf_token": token, "product": "cups"})  # the session begins
    responses = []

    modules = _modules_run(
        lambda: responses.append(app.post("/cart/add", {"csrf_token": token, "product": "cups"}))
    )

    print(f"{len(modules)} modules of myapp/sessions/ ran during one POST:", *modules, sep="\n  ")
    assert responses[0].status_int == 303
    assert cart_lines(responses[0].follow()) == {"cups": 2}  # the POST changed the session
    # The hook saw the road: the factory, the write and the session transaction ran.
    assert {"request/factory.py", "request/storeio.py", "stores/sqlstore/transaction.py"} <= set(
        modules
    )
    assert len(modules) <= MOST_MODULES, modules
