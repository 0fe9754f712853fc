"""Settings are parsed once; a bad value stops start-up with a message naming its key."""

from __future__ import annotations

import secrets

import pytest
from pyramid.exceptions import ConfigurationError

from myapp.sessions.options import DEVELOPMENT_SECRET, SessionOptions, looks_random

SECRET = "kV3u9QmZp7Lx2Rt8Wb4Yc6Nd1Hf5Jg0Ts9Ae"
OLDER = "Qe7Rw2Ty9Ui4Op1As6Df3Gh8Jk5Lz0Xc7Vb"


def parse(environ=None, **settings):
    return SessionOptions.from_settings({"session.secret": SECRET, **settings}, environ or {})


def test_defaults_are_the_documented_ones():
    options = parse()
    assert options.backends == ("sql", "redis", "memory")
    assert options.cookie_name == "session"
    assert options.cookie_samesite == "Lax"
    assert options.cookie_secure is False
    assert options.secrets == (SECRET,)


def test_backends_are_read_in_order():
    assert parse(**{"session.backends": "redis  sql"}).backends == ("redis", "sql")
    assert parse(**{"session.backends": "memory,redis"}).backends == ("memory", "redis")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("session.backends", "sql mongo", "session.backends: unknown backend 'mongo'"),
        ("session.backends", "sql sql", "session.backends: a backend is listed twice"),
        ("session.timeout", "soon", "session.timeout: expected a whole number"),
        ("session.timeout", "0", "session.timeout: must be at least 1"),
        ("session.cookie_secure", "maybe", "session.cookie_secure: expected true or false"),
        ("session.cookie_samesite", "Sometimes", "session.cookie_samesite: expected one of"),
        ("session.store_timeout", "nan", "session.store_timeout"),
        ("session.store_timeout", "inf", "session.store_timeout"),
        ("session.cookie_name", "bad name", "session.cookie_name"),
        ("session.reissue_time", "100000", "session.reissue_time (100000) must be shorter"),
        ("session.cache", "memcached", "session.cache: expected one of redis"),
    ],
)
def test_bad_value_names_its_key(key, value, fragment):
    with pytest.raises(ConfigurationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse(**{key: value})


def test_samesite_none_needs_secure():
    with pytest.raises(ConfigurationError, match="session.cookie_secure = true"):
        parse(**{"session.cookie_samesite": "none"})
    options = parse(**{"session.cookie_samesite": "none", "session.cookie_secure": "true"})
    assert (options.cookie_samesite, options.cookie_secure) == ("None", True)


def test_secret_is_required():
    with pytest.raises(ConfigurationError, match="session.secret is required"):
        SessionOptions.from_settings({}, {})


def test_short_secret_is_refused():
    with pytest.raises(ConfigurationError, match="at least 32 characters"):
        SessionOptions.from_settings({"session.secret": "short"}, {})


def test_secrets_are_a_list_newest_first():
    options = parse(**{"session.secret": f"{SECRET}\n{OLDER}"})
    assert options.secrets == (SECRET, OLDER)


def test_secret_from_the_environment():
    options = SessionOptions.from_settings(
        {"session.secret_env": "MYAPP_SESSION_SECRET"}, {"MYAPP_SESSION_SECRET": OLDER}
    )
    assert options.secrets == (OLDER,)


def test_missing_environment_secret_names_the_variable():
    with pytest.raises(ConfigurationError, match="MYAPP_SESSION_SECRET is not set"):
        SessionOptions.from_settings({"session.secret_env": "MYAPP_SESSION_SECRET"}, {})


def test_cookie_max_age_forms():
    assert parse().cookie_max_age is None
    assert parse(**{"session.cookie_max_age": "browser"}).cookie_max_age == 0
    assert parse(**{"session.cookie_max_age": "3600"}).cookie_max_age == 3600


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        (DEVELOPMENT_SECRET, "the development secret committed in development.ini"),
        ("a" * 32, "too little entropy"),
        ("ab" * 24, "too little entropy"),
        ("abcdefghijklmnopqrstuvwxyz012345", "too little entropy.*sequence"),
        ("0123456789abcdef0123456789abcdef", "too little entropy"),
        ("qwertyuiopasdfghjklzxcvbnm1234567890", "too little entropy"),
        ("1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,", "too little entropy.*spatial"),
        ("zxcvbnm,./asdfghjkl;'qwertyuiop[]", "too little entropy"),
        ("password-password-password-password", "too little entropy"),
        (DEVELOPMENT_SECRET[:-1] + "X", "near-copy of the development secret"),
        ("X" + DEVELOPMENT_SECRET[1:], "near-copy of the development secret"),
        (DEVELOPMENT_SECRET.upper(), "near-copy of the development secret"),
        (DEVELOPMENT_SECRET.replace("-", "_"), "near-copy of the development secret"),
    ],
)
def test_published_or_low_entropy_secret_is_refused_naming_the_setting(secret, fragment):
    with pytest.raises(ConfigurationError, match=f"^session.secret: .*{fragment}"):
        SessionOptions.from_settings({"session.secret": secret}, {})
    with pytest.raises(ConfigurationError, match=f"MYAPP_SESSION_SECRET .*{fragment}"):
        SessionOptions.from_settings(
            {"session.secret_env": "MYAPP_SESSION_SECRET"}, {"MYAPP_SESSION_SECRET": secret}
        )


def test_development_secret_only_where_the_ini_allows_it():
    settings = {"session.secret": DEVELOPMENT_SECRET, "session.allow_development_secret": "true"}
    assert SessionOptions.from_settings(settings, {}).secrets == (DEVELOPMENT_SECRET,)


def test_generated_secrets_pass():
    for _ in range(50):
        assert looks_random(secrets.token_hex(16))
        assert looks_random(secrets.token_urlsafe(32))


def test_operator_token_from_setting_or_environment():
    assert parse().operator_token is None
    assert parse(**{"session.operator_token": OLDER}).operator_token == OLDER
    from_env = parse(
        {"OPS_TOKEN": SECRET}, **{"session.operator_token_env": "OPS_TOKEN"}
    ).operator_token
    assert from_env == SECRET
    assert parse(**{"session.operator_token_env": "OPS_TOKEN"}).operator_token is None
    with pytest.raises(ConfigurationError, match="session.operator_token: .* random"):
        parse(**{"session.operator_token": "x" * 40})
