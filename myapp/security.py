"""One tween for what every response must say to browsers and caches, and the Host check.

* ``Content-Security-Policy``: the site's own files only, no inline script or style,
  never framed (``frame-ancestors 'none'``); plus ``X-Content-Type-Options``,
  ``Referrer-Policy`` and, when the session cookie is Secure, HSTS.
* A response whose content depended on the session (the view, its template or the CSRF
  token read it) is ``Cache-Control: no-store`` with ``Vary: Cookie``: a shared cache
  must never give one visitor's page to another.
* A ``Host`` that is not an RFC 3986 host (``myapp.hosts``) or is outside
  ``myapp.allowed_hosts`` is answered 400 before any view runs: the site builds
  redirects and form URLs from it. With ``myapp.public_origin`` set, those URLs are
  built from that origin instead, whatever the request said.
* A form posted from another origin (its ``Origin``, or else its ``Referer``) is
  answered 403 over plain HTTP too; Pyramid checks HTTPS requests itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS

from myapp.hosts import host_allowed, parse_origin
from myapp.sessions import get_options
from myapp.sessions.database.requesttm import expects_writes
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


def cross_origin(request: Request) -> bool:
    """Whether an unsafe request over plain HTTP says it comes from another origin.

    Pyramid's own check does this only for HTTPS. Over HTTP a cookie can be planted,
    so a known pre-session CSRF token could sign someone in to an attacker's account
    (login CSRF); browsers send ``Origin`` with every cross-site POST. A request that
    names no origin at all is left to the CSRF token.
    """
    if not expects_writes(request.method) or request.scheme == "https":
        return False
    claimed = request.headers.get("Origin") or request.referrer
    if not claimed:
        return False
    origin = parse_origin(claimed.split(" ")[-1])
    return origin is None or origin != parse_origin(request.host_url)


def used_session(request: Request) -> bool:
    """Whether the response may depend on the visitor's cookies (Pyramid reifies it)."""
    return "session" in request.__dict__


def security_tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    site = get_site_settings(registry)
    allowed, public = site.allowed_hosts, site.public_origin
    warned = False
    headers = dict(STATIC_HEADERS)
    if get_options(registry).cookie_secure:
        headers["Strict-Transport-Security"] = HSTS

    def security_tween(request: Request) -> Response:
        host = request.environ.get("HTTP_HOST") or request.environ.get("SERVER_NAME", "")
        nonlocal warned
        if not host_allowed(host, allowed):
            response = _refuse_host(host, allowed, warned)
            warned = True
        else:
            if public is not None:  # links and redirects name the public site only
                request.environ["wsgi.url_scheme"] = public.scheme
                request.environ["HTTP_HOST"] = public.netloc
            drop_undecodable_cookies(request)
            if cross_origin(request):
                log.info(
                    "refused a %s to %s posted from another origin", request.method, request.path
                )
                response = Response(
                    "Forbidden: this form was sent from another site.\n",
                    status=403,
                    content_type="text/plain",
                )
            else:
                response = handler(request)
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


def _refuse_host(host: str, allowed: tuple[str, ...], warned: bool) -> Response:
    # The first refusal is a WARNING (a missing name in the ini looks like this);
    # the rest, scanners mostly, INFO.
    log.log(
        logging.INFO if warned else logging.WARNING,
        "refused a request for host %r: not a host name, or not in myapp.allowed_hosts (%s); "
        "if it is this site's, add it there",
        host[:100],
        " ".join(allowed) or "any",
    )
    return Response(
        "Bad Request: this site does not answer to that host name.\n",
        status=400,
        content_type="text/plain",
    )


def undecodable(exc: UnicodeDecodeError, request: Request) -> Response:
    """A query string, form or cookie that is not UTF-8 is the client's error, not ours."""
    return Response(
        "Bad Request: the request is not valid UTF-8.\n", status=400, content_type="text/plain"
    )


def includeme(config: Configurator) -> None:
    # Outermost: error pages and the 400 for a foreign Host get the headers too.
    config.add_tween("myapp.security.security_tween_factory", under=INGRESS)
    config.add_exception_view(undecodable, context=UnicodeDecodeError)
