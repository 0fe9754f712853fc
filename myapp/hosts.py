"""Host headers and origins read as RFC 3986 says, nothing more: ``host [ ":" port ]``.

The host is an IP literal in brackets (``[::1]``), or a name of letters, digits, ``-``,
``.`` and ``_`` (a DNS name, an IPv4 address); the port is up to five digits. Anything
else (``localhost:@evil.example``, ``localhost:80@evil.example``, ``localhost:6543/evil``)
is not a host at all, so it is refused before any allow-list is consulted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_HOST = re.compile(
    r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_.])?)(?::(?P<port>[0-9]{0,5}))?",
    re.ASCII,
)
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_host(header: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` header (lower case, no trailing dot), or None
    when it is not an RFC 3986 host with an optional port."""
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return None
    port = match["port"]
    if port and int(port) > 65535:
        return None
    name = match["name"]
    return (name if name.startswith("[") else name.rstrip(".")), int(port) if port else None


def host_allowed(header: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``header`` is a well-formed host whose name is listed in ``allowed``
    (``.example.org`` also takes its subdomains); any well-formed host when empty."""
    parsed = parse_host(header)
    if parsed is None:
        return False
    name = parsed[0]
    if not allowed:
        return True
    return any(
        name == entry or (entry.startswith(".") and (name.endswith(entry) or name == entry[1:]))
        for entry in allowed
    )


@dataclass(frozen=True, slots=True)
class Origin:
    """``scheme://host[:port]``, as browsers send in ``Origin``."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        default = DEFAULT_PORTS[self.scheme] == self.port
        return self.host if default else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def parse_origin(text: str) -> Origin | None:
    """The origin of an absolute http(s) URL (``Origin`` or ``Referer``), or None."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or "@" in parts.netloc:
        return None
    parsed = parse_host(parts.netloc)
    if parsed is None:
        return None
    name, port = parsed
    return Origin(scheme, name, DEFAULT_PORTS[scheme] if port is None else port)
