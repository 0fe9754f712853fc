"""The site's own settings (``myapp.*`` and ``signin.*``): read once, validated, typed
with the session package's reader (errors name their key, as for ``session.*``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import argon2.profiles
from argon2 import PasswordHasher
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from pyramid.settings import aslist

from myapp.hosts import Origin, host_allowed, parse_host, parse_origin
from myapp.sessions.options.reader import SettingsReader

SETTINGS_KEY = "myapp.site_settings"
# argon2-cffi's named parameter sets; the default is its own (RFC 9106, low memory).
HASH_PROFILES = ("RFC_9106_LOW_MEMORY", "RFC_9106_HIGH_MEMORY", "CHEAPEST")


@dataclass(frozen=True)
class SiteSettings:
    """Defaults are the documented ones (README, "Settings")."""

    #: Host names the site answers to (``.example.org`` also takes its subdomains);
    #: empty: any. Other ``Host`` headers get a 400.
    allowed_hosts: tuple[str, ...] = ()
    #: ``https://shop.example.org``: absolute URLs (redirects, links) are built from it,
    #: never from the request's Host. None: from the request (development).
    public_origin: Origin | None = None
    #: Longer passwords are refused before any hashing.
    password_max_length: int = 1024
    #: The argon2 parameters new hashes get; a sign-in with a hash made otherwise
    #: stores a new one. ``CHEAPEST`` is for tests only.
    password_hash_profile: str = "RFC_9106_LOW_MEMORY"  # noqa: S105 - a name, not a secret
    #: Failed sign-ins allowed per account from one client address, per account from
    #: anywhere (a far higher ceiling), and per client address, before delays begin.
    signin_account_free_failures: int = 5
    signin_account_wide_free_failures: int = 100
    signin_address_free_failures: int = 20
    #: The first delay once the free failures are used up; it doubles with each failure.
    signin_first_delay: float = 1.0
    signin_max_delay: float = 900.0
    #: New sessions of visitors who have not signed in, per client address and window.
    anonymous_sessions_per_address: int = 100
    anonymous_sessions_window: float = 3600.0
    #: Counters are forgotten after this long without a failure.
    signin_forget_after: float = 3600.0
    #: Where sign-in attempts are counted: None, in the store serving sessions; or always
    #: in one of the throttle's own (``sql``, ``redis``, ``memory``), for a session store
    #: it has no counters for.
    signin_counters: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> SiteSettings:
        """Parse ``settings``; a bad value raises ConfigurationError naming its key."""
        read = SettingsReader(settings)
        allowed_hosts = _hosts(read, "myapp.allowed_hosts")
        return cls(
            allowed_hosts=allowed_hosts,
            public_origin=_origin(read, "myapp.public_origin", allowed_hosts),
            password_max_length=read.integer(
                "myapp.password_max_length", cls.password_max_length, minimum=8
            ),
            password_hash_profile=read.choice(
                "myapp.password_hash_profile", cls.password_hash_profile, HASH_PROFILES
            ),
            signin_account_free_failures=read.integer(
                "signin.account_free_failures", cls.signin_account_free_failures, minimum=0
            ),
            signin_account_wide_free_failures=read.integer(
                "signin.account_wide_free_failures",
                cls.signin_account_wide_free_failures,
                minimum=0,
            ),
            signin_address_free_failures=read.integer(
                "signin.address_free_failures", cls.signin_address_free_failures, minimum=0
            ),
            signin_first_delay=read.number(
                "signin.first_delay", cls.signin_first_delay, minimum=0.0
            ),
            signin_max_delay=read.number("signin.max_delay", cls.signin_max_delay, minimum=0.0),
            anonymous_sessions_per_address=read.integer(
                "myapp.anonymous_sessions_per_address",
                cls.anonymous_sessions_per_address,
                minimum=1,
            ),
            anonymous_sessions_window=read.number(
                "myapp.anonymous_sessions_window", cls.anonymous_sessions_window, minimum=1.0
            ),
            signin_forget_after=read.number(
                "signin.forget_after", cls.signin_forget_after, minimum=1.0
            ),
            signin_counters=read.text("signin.counters", None),
        )

    @property
    def hasher(self) -> PasswordHasher:
        return _hasher(self.password_hash_profile)


@functools.cache
def _hasher(profile: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(getattr(argon2.profiles, profile))


def get_site_settings(registry: Registry) -> SiteSettings:
    return registry[SETTINGS_KEY]


def _hosts(read: SettingsReader, key: str) -> tuple[str, ...]:
    hosts = tuple(host.lower().rstrip(".") for host in aslist(read.text(key, None) or ""))
    for host in hosts:
        if not host or parse_host(host.removeprefix(".")) != (host.removeprefix("."), None):
            raise ConfigurationError(
                f"{key}: {host!r} is not a host name (give names without scheme or port, "
                "e.g. shop.example.org .example.org)"
            )
    return hosts


def _origin(read: SettingsReader, key: str, allowed: tuple[str, ...]) -> Origin | None:
    text = read.text(key, None)
    if not text:
        return None
    origin = parse_origin(text)
    if origin is None or str(origin) != text.rstrip("/").lower():
        raise ConfigurationError(
            f"{key}: {text!r} is not an origin (give the scheme and host the public reaches "
            "this site by, nothing after them, e.g. https://shop.example.org)"
        )
    if not host_allowed(origin.host, allowed):
        raise ConfigurationError(
            f"{key}: its host {origin.host!r} is not in myapp.allowed_hosts; add it there"
        )
    return origin


def includeme(config: Configurator) -> None:
    config.registry[SETTINGS_KEY] = SiteSettings.from_settings(config.get_settings())
