"""Only values every store keeps exactly are accepted, and the refusal names the key."""

from __future__ import annotations

import math

import pytest

from myapp.sessions.request.session import SessionTooLarge, check_value, dumps, dumps_checked, loads


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**70), 1.5, "text", "Zoë ✓ 🎉", [], {}, [1, [2, [3]]], {"a": {"b": [None]}}],
)
def test_json_values_are_accepted_and_round_trip(value):
    check_value("k", value)
    assert loads(dumps({"k": value})) == {"k": value}


@pytest.mark.parametrize(
    ("value", "error", "fragment"),
    [
        (object(), TypeError, "object is not JSON"),
        ((1, 2), TypeError, "tuple is not JSON"),
        ({1, 2}, TypeError, "set is not JSON"),
        (b"bytes", TypeError, "bytes is not JSON"),
        (math.nan, ValueError, "NaN/Infinity"),
        (math.inf, ValueError, "NaN/Infinity"),
        ("a\x00b", ValueError, "NUL"),
        ("\ud800", ValueError, "lone surrogate"),
        ({1: "x"}, TypeError, "dict keys must be str"),
        ({"ok": [{"deep": math.nan}]}, ValueError, "NaN"),
    ],
)
def test_bad_values_are_refused_naming_the_key(value, error, fragment):
    with pytest.raises(error, match=fragment) as info:
        check_value("cart", value)
    assert "'cart'" in str(info.value)


def test_non_string_key_is_refused():
    with pytest.raises(TypeError, match="session keys must be str"):
        check_value(1, "x")


def test_too_deep_is_refused():
    value: list = []
    for _ in range(40):
        value = [value]
    with pytest.raises(ValueError, match="nested deeper"):
        check_value("k", value)


def test_max_size_is_enforced_with_a_clear_error():
    assert dumps_checked({"k": "x" * 10}, 100)
    with pytest.raises(SessionTooLarge, match=r"more than session\.max_size \(100\)"):
        dumps_checked({"k": "x" * 200}, 100)


def test_stored_text_that_is_not_an_object_is_refused():
    for text in ("[]", "1", '"x"', "null"):
        with pytest.raises(ValueError, match="not a JSON object"):
            loads(text)
