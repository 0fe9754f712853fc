"""One tween for what every response must say to browsers and caches, and the Host check.

* ``Content-Security-Policy``: the site's own files only, no inline script or style,
  never framed (``frame-ancestors 'none'``); plus ``X-Content-Type-Options``,
  ``Referrer-Policy`` and, when the session cookie is Secure, HSTS.
* A response whose content depended on the session (the view, its template or the CSRF
  token read it) is ``Cache-Control: no-store`` with ``Vary: Cookie``: a shared cache
  must never give one visitor's page to another.
* A ``Host`` outside ``myapp.allowed_hosts`` is answered 400 before any view runs: the
  site builds redirects and form URLs from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS

from myapp.sessions import get_options
from myapp.settings import get_site_settings

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
log = logging.getLogger(__name__)
HSTS = "max-age=31536000; includeSubDomains"
STATIC_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
}


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header: no port, lower case, no trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:6543
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") <= 1 else host


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    name = host_name(host_header)
    return any(
        name == entry or (entry.startswith(".") and (name.endswith(entry) or name == entry[1:]))
        for entry in allowed
    )


def drop_undecodable_cookies(request: Request) -> None:
    """Drop the cookies WebOb cannot decode (``x=\\377``), keeping the others.

    A garbled cookie is ignored like any bad cookie (a fresh session, no token), not
    answered 400: otherwise one stray cookie for this host breaks every page.
    """
    header = request.environ.get("HTTP_COOKIE")
    if not header:
        return
    try:
        request.cookies.get("")
    except UnicodeDecodeError:
        kept = []
        for pair in header.split(";"):
            request.environ["HTTP_COOKIE"] = pair
            try:
                request.cookies.get("")
            except UnicodeDecodeError:
                continue
            kept.append(pair.strip())
        request.environ["HTTP_COOKIE"] = "; ".join(kept)
        try:
            request.cookies.get("")
        except UnicodeDecodeError:  # a quote opened in one pair and closed in another
            request.environ["HTTP_COOKIE"] = ""


def used_session(request: Request) -> bool:
    """Whether the response may depend on the visitor's cookies (Pyramid reifies it)."""
    return "session" in request.__dict__


def security_tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    allowed = get_site_settings(registry).allowed_hosts
    warned = False
    headers = dict(STATIC_HEADERS)
    if get_options(registry).cookie_secure:
        headers["Strict-Transport-Security"] = HSTS

    def security_tween(request: Request) -> Response:
        host = request.environ.get("HTTP_HOST") or request.environ.get("SERVER_NAME", "")
        if host_allowed(host, allowed):
            drop_undecodable_cookies(request)
            response = handler(request)
        else:
            nonlocal warned
            # The first refusal is a WARNING (a missing name in the ini looks like this);
            # the rest, scanners mostly, INFO.
            log.log(
                logging.INFO if warned else logging.WARNING,
                "refused a request for host %r: not in myapp.allowed_hosts (%s); if it is "
                "this site's, add it there",
                host[:100],
                " ".join(allowed),
            )
            warned = True
            response = Response(
                "Bad Request: this site does not answer to that host name.\n",
                status=400,
                content_type="text/plain",
            )
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if used_session(request):
            response.cache_control.no_store = True
            response.cache_control.private = True
            response.cache_control.max_age = None
            response.cache_control.public = False
            vary = tuple(response.vary or ())
            if "cookie" not in (v.lower() for v in vary):
                response.vary = (*vary, "Cookie")
        return response

    return security_tween


def undecodable(exc: UnicodeDecodeError, request: Request) -> Response:
    """A query string, form or cookie that is not UTF-8 is the client's error, not ours."""
    return Response(
        "Bad Request: the request is not valid UTF-8.\n", status=400, content_type="text/plain"
    )


def includeme(config: Configurator) -> None:
    # Outermost: error pages and the 400 for a foreign Host get the headers too.
    config.add_tween("myapp.security.security_tween_factory", under=INGRESS)
    config.add_exception_view(undecodable, context=UnicodeDecodeError)
