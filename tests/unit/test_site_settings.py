"""The site's own settings: typed, defaulted, and every bad value named."""

from __future__ import annotations

import pytest
from pyramid.exceptions import ConfigurationError

from myapp.settings import SiteSettings


def test_defaults_are_the_documented_ones():
    settings = SiteSettings.from_settings({})
    assert settings == SiteSettings()
    assert settings.password_hash_profile == "RFC_9106_LOW_MEMORY"


def test_values_are_parsed_and_a_profile_is_matched_whatever_its_case():
    settings = SiteSettings.from_settings(
        {
            "myapp.allowed_hosts": "Shop.Example.org. .example.net",
            "myapp.password_hash_profile": "cheapest",
            "signin.first_delay": "0.5",
            "signin.account_free_failures": "0",
        }
    )
    assert settings.allowed_hosts == ("shop.example.org", ".example.net")
    assert settings.password_hash_profile == "CHEAPEST"
    assert settings.signin_first_delay == 0.5
    assert settings.signin_account_free_failures == 0


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("myapp.password_max_length", "7", "at least 8"),
        ("myapp.password_max_length", "many", "whole number"),
        ("myapp.password_hash_profile", "FAST", "one of"),
        ("signin.first_delay", "nan", "finite number"),
        ("signin.max_delay", "-1", "finite number"),
        ("signin.forget_after", "0.5", ">= 1.0"),
        ("signin.address_free_failures", "-2", "at least 0"),
        ("myapp.allowed_hosts", "https://shop.example.org", "not a host name"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(key, value, says):
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")) as raised:
        SiteSettings.from_settings({key: value})
    assert says in str(raised.value)
