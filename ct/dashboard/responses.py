"""How the dashboard answers: security headers on every page, HTML rendering, refusals,
redirects, and reading a form or query argument."""

from __future__ import annotations

from urllib.parse import urlencode

from twisted.internet import defer
from twisted.web.template import Tag, flattenString

HTML = b"text/html; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'none'; style-src 'self'; script-src 'self'; "
                                b"img-src 'self' data:; form-action 'self'; "
                                b"frame-ancestors 'none'; base-uri 'none'",
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"cache-control": b"no-store",
}


def arg(request, name: str) -> str | None:
    """The first value of a query or form argument, as text."""
    values = request.args.get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", errors="replace")


def set_headers(request, content_type: bytes = HTML) -> None:
    request.setHeader(b"content-type", content_type)
    for k, v in SECURITY_HEADERS.items():
        request.setHeader(k, v)


def render(request, tag: Tag, status: int = 200) -> defer.Deferred:
    """An HTML document from ``tag``."""
    request.setResponseCode(status)
    set_headers(request)
    return flattenString(None, tag).addCallback(lambda body: b"<!DOCTYPE html>\n" + body)


def refuse(request, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    set_headers(request, TEXT)
    return message.encode() + b"\n"


def see_other(request, location: str) -> bytes:
    """303 to ``location`` (after a POST, or to a page's new home)."""
    request.setResponseCode(303)
    request.setHeader(b"location", location.encode("utf-8"))
    return b""


def to_login(request, path: str | None = None) -> bytes:
    """303 to the log-in page, which comes back to ``path`` (default: this one)."""
    target = path or request.path.decode("latin-1", "replace")
    request.setResponseCode(303)
    set_headers(request, TEXT)
    request.setHeader(b"location", ("/dashboard/login?" + urlencode({"next": target}))
                      .encode())
    return b"log in first\n"
