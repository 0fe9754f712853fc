"""Headless Chromium against the site served by waitress on a free loopback port.

Every answer carries a strict Content-Security-Policy (the app's own when it sets one),
so an inline script or style would show up as a console error. Screenshots of every
open page land in test-artifacts/browser/<test name>/ when a test fails.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from webtest.http import StopableWSGIServer

import myapp
from myapp.sessions import get_chain
from tests.conftest import base_settings
from tests.support.databases import REPO
from tests.support.site import new_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} is not installed"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def site(postgres_url: str) -> Iterator[str]:
    """The app on the test PostgreSQL database, served by waitress; yields its base URL."""
    with serve_site(postgres_url) as url:
        yield url


@contextmanager
def serve_site(postgres_url: str, **overrides: str) -> Iterator[str]:
    """Serve the app with ``overrides`` as settings; yields its base URL.

    Port 0: the kernel picks a free port while binding, so no other process can take
    it between a look-up and the bind.
    """
    settings = base_settings(**{"sqlalchemy.url": postgres_url, **overrides})
    router = myapp.main({}, **settings)
    server = StopableWSGIServer(router, host="127.0.0.1", port=0, threads=4)
    runner = threading.Thread(target=server.run, name="waitress", daemon=True)
    runner.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.shutdown()
        runner.join(timeout=5)
        assert not runner.is_alive(), "waitress did not stop"
        get_chain(router.registry).close()
        router.registry["dbengine"].dispose()


@pytest.fixture
def account(postgres_url: str) -> tuple[str, str]:
    engine = sa.create_engine(postgres_url)
    try:
        return new_user(engine, "shopper")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_context(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Open browser contexts (separate cookie jars); screenshots their pages on failure."""
    contexts: list[Any] = []

    def open_context(**kwargs: Any) -> Any:
        context = chromium.new_context(**kwargs)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield open_context
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
        folder.mkdir(parents=True, exist_ok=True)
        number = 0
        for context in contexts:
            for page in context.pages:
                number += 1
                page.screenshot(path=str(folder / f"page-{number}.png"), full_page=True)
    for context in contexts:
        context.close()
