"""Another app that includes only ``myapp.sessions`` passes the same session suite."""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest

import tests.functional.test_sessions as session_suite
from tests.conftest import SECRET
from tests.otherapp import main as other_main
from tests.support.databases import REPO


@pytest.fixture
def make_app(make_app):
    """The shared app builder, building the other app instead of the site."""
    return functools.partial(make_app, main=other_main)


class TestTheSessionSuiteInAnotherApp(session_suite.TestEveryStore):
    """Every test of the session suite, on every store, in the other app."""


def test_the_other_app_serves_healthz_and_names_its_store(make_app):
    handle = make_app("sql-sqlite")
    health = handle.app.get("/healthz").json
    assert health["status"] == "ok"
    assert health["session_backend"] == "sql"


def test_building_the_other_app_loads_no_module_of_the_site(sqlite_url):
    program = (
        "import sys\n"
        "from tests.otherapp import main\n"
        f"main({{}}, **{{'sqlalchemy.url': {sqlite_url!r}, 'session.backends': 'sql',"
        f" 'session.secret': {SECRET!r}}})\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('myapp.')"
        " and not m.startswith('myapp.sessions'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("path", ["/_t/read", "/_t/write?value=x", "/_t/flash_then_redirect"])
def test_a_response_that_read_the_session_varies_on_cookie(make_app, path):
    handle = make_app("memory")
    response = handle.app.get(path)
    assert "Cookie" in (response.headers.get("Vary") or "")
    # With the session cookie now sent, the next answers still say so.
    again = handle.app.get("/_t/read")
    assert "Cookie" in (again.headers.get("Vary") or "")


def test_a_response_that_never_read_the_session_does_not_vary(make_app):
    handle = make_app("memory")
    assert "Vary" not in handle.app.get("/_t/untouched").headers
