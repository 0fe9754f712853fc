"""Session values are JSON, and only JSON every store can keep (PostgreSQL's jsonb included)."""

from __future__ import annotations

import json
import math
from typing import Any

from .exceptions import SessionTooLarge

MAX_DEPTH = 32

_encoder = json.JSONEncoder(
    allow_nan=False, ensure_ascii=False, check_circular=False, separators=(",", ":")
)
_decoder = json.JSONDecoder()


def check_value(key: object, value: Any) -> None:
    """Raise TypeError/ValueError naming ``key`` unless ``value`` round-trips exactly.

    Accepted: dict with str keys, list, str, int, finite float, bool, None. Strings
    must not hold NUL or lone surrogates (jsonb refuses both at commit).
    """
    if not isinstance(key, str):
        raise TypeError(f"session keys must be str, not {type(key).__name__}: {key!r}")
    _check_string(key, key)
    _check(key, value, 0)


def _check(key: str, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"session[{key!r}]: nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return
    if kind is str:
        _check_string(key, value)
    elif kind is float:
        if not math.isfinite(value):
            raise ValueError(f"session[{key!r}]: {value!r} is not valid JSON (NaN/Infinity)")
    elif kind is list:
        for item in value:
            _check(key, item, depth + 1)
    elif kind is dict:
        for name, item in value.items():
            if type(name) is not str:
                raise TypeError(
                    f"session[{key!r}]: dict keys must be str, not {type(name).__name__} ({name!r})"
                )
            _check_string(key, name)
            _check(key, item, depth + 1)
    else:
        raise TypeError(
            f"session[{key!r}]: {kind.__name__} is not JSON; store only dict, list, str, "
            "int, float, bool or None"
        )


def _check_string(key: str, text: str) -> None:
    if "\x00" in text:
        raise ValueError(f"session[{key!r}]: strings must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"session[{key!r}]: string holds a lone surrogate") from None


def dumps(data: dict[str, Any]) -> str:
    """Compact JSON text of a session dict (values are checked when set)."""
    return _encoder.encode(data)


def dumps_checked(data: dict[str, Any], max_size: int) -> str:
    """Like :func:`dumps`, but re-checks every value and enforces ``max_size`` bytes.

    Nested values can be changed in place without going through ``__setitem__``,
    so the final text is checked once more before it is stored.
    """
    for key, value in data.items():
        check_value(key, value)
    text = dumps(data)
    size = len(text.encode("utf-8"))
    if size > max_size:
        raise SessionTooLarge(
            f"the session is {size} bytes of JSON, more than session.max_size ({max_size}); "
            "keep large data in the database and only its id in the session"
        )
    return text


def loads(text: str) -> dict[str, Any]:
    """Parse stored JSON text; anything but a JSON object raises ValueError."""
    data = _decoder.decode(text)
    if type(data) is not dict:
        raise ValueError("stored session data is not a JSON object")
    return data
