"""Credentials out of every message: ``scheme://user:password@host`` becomes ``user:***@``,
and a credential given as a parameter (``redis://host/0?password=…``, a libpq
``password=…``) becomes ``password=***``."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TextIO

# The userinfo of any URL-like text: everything between "//" and the last "@" before the
# host, without crossing whitespace, quotes or another "//". A password may hold "@" or
# ":" when it is not percent-encoded, so the match runs to the last "@".
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^\s'\"<>/]*)@")
MASK = "***"
# A credential as a query or key=value parameter: its value, up to the next separator.
_PARAMETER = re.compile(
    r"(?P<name>\b(?:password|passwd|pwd|pass|token|auth|secret|access_token|api_key)=)"
    r"(?P<value>(?:[^&;\s'\"<>#,):]|:(?!\s|$))+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the password (or a lone token) of every URL in it replaced by ``***``."""
    if "@" in text:
        text = _USERINFO.sub(_mask, text)
    if "=" in text:
        text = _PARAMETER.sub(lambda m: m.group("name") + MASK, text)
    return text


def _mask(match: re.Match[str]) -> str:
    user, sep, _secret = match.group("info").partition(":")
    kept = f"{user}:{MASK}" if sep else MASK  # redis://token@host: the token is the secret
    return f"{match.group('scheme')}{kept}@"


def redact_values(value: object) -> object:
    """A copy of a JSON-like value whose strings are redacted (for /healthz and the CLI)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [redact_values(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter: the formatted message and any traceback leave without credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (the root by default)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingWriter:
    """A text stream that redacts what is written to it (the scripts' output)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(redact(text))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()
