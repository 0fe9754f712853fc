"""The site's own settings (``myapp.*`` and ``signin.*``): read once, validated, typed."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import argon2.profiles
from argon2 import PasswordHasher
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from pyramid.settings import aslist

SETTINGS_KEY = "myapp.site_settings"
# argon2-cffi's named parameter sets; the default is its own (RFC 9106, low memory).
HASH_PROFILES = ("RFC_9106_LOW_MEMORY", "RFC_9106_HIGH_MEMORY", "CHEAPEST")


@dataclass(frozen=True)
class SiteSettings:
    """Defaults are the documented ones (README, "Settings")."""

    #: Host names the site answers to (``.example.org`` also takes its subdomains);
    #: empty: any. Other ``Host`` headers get a 400.
    allowed_hosts: tuple[str, ...] = ()
    #: Longer passwords are refused before any hashing.
    password_max_length: int = 1024
    #: The argon2 parameters new hashes get; a sign-in with a hash made otherwise
    #: stores a new one. ``CHEAPEST`` is for tests only.
    password_hash_profile: str = "RFC_9106_LOW_MEMORY"  # noqa: S105 - a name, not a secret
    #: Failed sign-ins allowed per account, then per client address, before delays begin.
    signin_account_free_failures: int = 5
    signin_address_free_failures: int = 20
    #: The first delay once the free failures are used up; it doubles with each failure.
    signin_first_delay: float = 1.0
    signin_max_delay: float = 900.0
    #: Counters are forgotten after this long without a failure.
    signin_forget_after: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> SiteSettings:
        """Parse ``settings``; a bad value raises ConfigurationError naming its key."""
        return cls(
            allowed_hosts=_hosts(settings, "myapp.allowed_hosts"),
            password_max_length=_integer(
                settings, "myapp.password_max_length", cls.password_max_length, minimum=8
            ),
            password_hash_profile=_choice(
                settings, "myapp.password_hash_profile", cls.password_hash_profile, HASH_PROFILES
            ),
            signin_account_free_failures=_integer(
                settings, "signin.account_free_failures", cls.signin_account_free_failures
            ),
            signin_address_free_failures=_integer(
                settings, "signin.address_free_failures", cls.signin_address_free_failures
            ),
            signin_first_delay=_number(settings, "signin.first_delay", cls.signin_first_delay),
            signin_max_delay=_number(settings, "signin.max_delay", cls.signin_max_delay),
            signin_forget_after=_number(
                settings, "signin.forget_after", cls.signin_forget_after, minimum=1.0
            ),
        )

    @property
    def hasher(self) -> PasswordHasher:
        return _hasher(self.password_hash_profile)


@functools.cache
def _hasher(profile: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(getattr(argon2.profiles, profile))


def _choice(
    settings: Mapping[str, object], key: str, default: str, allowed: tuple[str, ...]
) -> str:
    raw = _raw(settings, key)
    if raw is None:
        return default
    if raw.upper() not in allowed:
        raise ConfigurationError(f"{key}: expected one of {', '.join(allowed)}, got {raw!r}")
    return raw.upper()


def get_site_settings(registry: Registry) -> SiteSettings:
    return registry[SETTINGS_KEY]


def _raw(settings: Mapping[str, object], key: str) -> str | None:
    value = settings.get(key)
    text = "" if value is None else str(value).strip()
    return text or None


def _integer(settings: Mapping[str, object], key: str, default: int, *, minimum: int = 0) -> int:
    raw = _raw(settings, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{key}: must be at least {minimum}, got {value}")
    return value


def _number(
    settings: Mapping[str, object], key: str, default: float, *, minimum: float = 0.0
) -> float:
    raw = _raw(settings, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}: expected a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigurationError(f"{key}: must be a finite number >= {minimum}, got {raw!r}")
    return value


def _hosts(settings: Mapping[str, object], key: str) -> tuple[str, ...]:
    hosts = tuple(host.lower().rstrip(".") for host in aslist(_raw(settings, key) or ""))
    for host in hosts:
        if not host or not host.isascii() or any(c in host for c in "/@:*?#"):
            raise ConfigurationError(
                f"{key}: {host!r} is not a host name (give names without scheme or port, "
                "e.g. shop.example.org .example.org)"
            )
    return hosts


def includeme(config: Configurator) -> None:
    config.registry[SETTINGS_KEY] = SiteSettings.from_settings(config.get_settings())
