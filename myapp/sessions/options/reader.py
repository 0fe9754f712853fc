"""Typed values from raw ini strings; every error names the key it came from.

No defaults live here: each caller in ``options`` passes its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyramid.exceptions import ConfigurationError
from pyramid.path import DottedNameResolver
from pyramid.settings import asbool, aslist

from .backends import BACKEND_NAMES

TRUE_WORDS = ("true", "yes", "on", "1", "t", "y")
FALSE_WORDS = ("false", "no", "off", "0", "f", "n")


class SettingsReader:
    """Typed access to raw ini strings; every error names the key it came from."""

    def __init__(self, settings: Mapping[str, object]) -> None:
        self.settings = settings

    def _raw(self, key: str) -> str | None:
        value = self.settings.get(key)
        if value is None:
            return None
        value = str(value).strip()
        return value if value != "" else None

    def text(self, key: str, default: str | None) -> str | None:
        raw = self._raw(key)
        return default if raw is None else raw

    def boolean(self, key: str, default: bool) -> bool:
        raw = self._raw(key)
        if raw is None:
            return default
        if raw.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ConfigurationError(f"{key}: expected true or false, got {raw!r}")
        return asbool(raw)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{key}: expected a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigurationError(f"{key}: must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float) -> float:
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f"{key}: expected a number of seconds, got {raw!r}") from None
        if not value >= minimum or value == float("inf"):
            raise ConfigurationError(f"{key}: must be a finite number >= {minimum}, got {raw!r}")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = self._raw(key)
        if raw is None:
            return default
        for candidate in allowed:
            if raw.lower() == candidate.lower():
                return candidate
        raise ConfigurationError(f"{key}: expected one of {', '.join(allowed)}, got {raw!r}")

    def optional_choice(self, key: str, allowed: tuple[str, ...]) -> str | None:
        raw = self._raw(key)
        if raw is None or raw.lower() in ("none", "off", "false"):
            return None
        return self.choice(key, allowed[0], allowed)

    def backends(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self._raw(key)
        if raw is None:
            return default
        raw_names = aslist(raw.replace(",", " "))
        if not raw_names:
            raise ConfigurationError(f"{key}: list at least one of {', '.join(BACKEND_NAMES)}")
        names = tuple(entry if ":" in entry else entry.lower() for entry in raw_names)
        for name in names:
            if ":" in name:
                self._importable(key, name)
            elif name not in BACKEND_NAMES:
                raise ConfigurationError(
                    f"{key}: unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)} "
                    "or name a store of your own as package.module:builder"
                )
        if len(set(names)) != len(names):
            raise ConfigurationError(f"{key}: a backend is listed twice in {raw!r}")
        return names

    @staticmethod
    def _importable(key: str, name: str) -> None:
        """A store of the app's own (``package.module:builder``) must import at start-up."""
        try:
            DottedNameResolver().resolve(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(f"{key}: cannot import the store {name!r}: {exc}") from None

    def cookie_name(self, key: str, default: str) -> str:
        value = self.text(key, default) or default
        if not value.isascii() or any(c in value for c in ' ;,="\\()<>@:/[]?{}\t'):
            raise ConfigurationError(f"{key}: {value!r} is not a valid cookie name")
        return value

    def max_age(self, key: str) -> int | None:
        raw = self._raw(key)
        if raw is None or raw.lower() == "lifetime":
            return None
        if raw.lower() == "browser":
            return 0  # a cookie that ends with the browser session
        return self.integer(key, 0, minimum=1)
