"""Who may see operator details (/healthz causes, /metrics): a bearer token or a loopback client."""

from __future__ import annotations

import hmac
import ipaddress

from pyramid.request import Request
from pyramid.response import Response

from ..redact import redact_values

#: What anyone may read of /healthz: enough for a load balancer, nothing about the stores.
PUBLIC_HEALTH_FIELDS = ("status", "session_backend")


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped); False for anything unparsable."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def bearer_matches(request: Request, token: str | None) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant-time compare)."""
    if not token:
        return False
    scheme, _, supplied = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.strip().encode("utf-8"), token.encode("utf-8"))


def operator_access(request: Request) -> bool:
    """A configured operator token in the request, or a client on this host.

    Behind a proxy on this host every request comes from loopback unless waitress's
    ``trusted_proxy`` settings give the client's own address (see production.ini).
    """
    from ..assemble import get_options

    if bearer_matches(request, get_options(request.registry).operator_token):
        return True
    return is_loopback(request.remote_addr)


def health_for(request: Request, health: dict[str, object]) -> dict[str, object]:
    """The whole health report for an operator; ``status`` and the store name for others."""
    if operator_access(request):
        return redact_values(health)  # type: ignore[return-value]
    return {field: health.get(field) for field in PUBLIC_HEALTH_FIELDS}


def refused(request: Request) -> Response:
    """The answer to a non-operator asking for an operator page."""
    response = Response(
        "This page is for operators: send Authorization: Bearer <operator token>.\n",
        status=401,
        content_type="text/plain",
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="operator"'
    response.cache_control.no_store = True
    return response
