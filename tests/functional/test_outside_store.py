"""A store written outside the package, named in the settings by its dotted path, serves
the site: no file of the package knows it."""

from __future__ import annotations

import time

import pytest
from pyramid.exceptions import ConfigurationError

from myapp.sessions.request.factory import storage_key
from tests.support.cookies import token_of
from tests.support.outsidestore import DictStore
from tests.support.site import add_to_cart, cart_lines, sign_in, signed_in_as

OUTSIDE_STORE = "tests.support.outsidestore:DictStore"
pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("site_users")]


def test_a_store_of_its_own_keeps_a_signed_in_cart(make_app, postgres_url):
    handle = make_app(
        "outside",
        **{
            "sqlalchemy.url": postgres_url,
            "session.backends": OUTSIDE_STORE,
            "signin.counters": "memory",  # the throttle has no counters for "dict"
        },
    )
    assert isinstance(handle.store, DictStore)
    assert signed_in_as(sign_in(handle.app)) == "alice"
    add_to_cart(handle.app, "green-tea", 2)
    add_to_cart(handle.app, "cups")

    page = handle.app.get("/cart")
    assert signed_in_as(page) == "alice"
    assert cart_lines(page) == {"green-tea": 2, "cups": 1}
    token = token_of(handle.app.cookies["session"])
    stored = handle.store.load(storage_key(token), time.time())
    assert stored is not None and stored.user_id is not None


def test_a_store_that_cannot_be_imported_stops_start_up_naming_the_setting(make_app):
    with pytest.raises(ConfigurationError, match=r"session\.backends: cannot import"):
        make_app("outside", **{"session.backends": "tests.support.outsidestore:NoSuchStore"})


def test_a_store_the_throttle_cannot_count_in_stops_start_up_naming_the_setting(
    make_app, postgres_url
):
    with pytest.raises(ConfigurationError, match=r"session\.backends: sign-in throttling"):
        make_app("outside", **{"sqlalchemy.url": postgres_url, "session.backends": OUTSIDE_STORE})
