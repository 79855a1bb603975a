"""The ``twisted.web`` site both daemons use.

On top of Twisted's ``Site`` it:

* caps request bodies (``CT_HTTP_MAX_BODY``, larger only for the routes given in
  ``body_limits``): a ``Content-Length`` over the cap is refused with 413 before any of
  the body is read, and a chunked body is refused the moment it passes the cap; nothing
  past the cap is buffered;
* answers a malformed ``Content-Type`` with 400 (Twisted's form parsing raises on some
  values and the request would get no answer at all), and so a path or Host header that
  is not UTF-8 (Klein would log a traceback for it);
* sends ``Strict-Transport-Security`` on responses served over HTTPS
  (``CT_HSTS_MAX_AGE``);
* writes an access log line per request only when ``CT_ACCESS_LOG`` is set.

Refusals are JSON ``{"error": code, "message": ...}`` and one rate-limited warning line.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web.server import Request, Site

from ct.common.logthrottle import RateLimitedLog


_log = Logger()

DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_HSTS_MAX_AGE = 365 * 86400


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """``CT_ACCESS_LOG``, ``CT_HTTP_MAX_BODY`` and ``CT_HSTS_MAX_AGE`` (0: no HSTS)."""

    access_log: bool = False
    max_body: int = DEFAULT_MAX_BODY
    hsts_max_age: int = DEFAULT_HSTS_MAX_AGE


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# RFC 9110 media-type: type "/" subtype *( OWS ";" OWS [ token "=" ( token / quoted-string ) ] )
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(
    rb"\A" + _TOKEN + rb"/" + _TOKEN
    + rb"(?:[ \t]*;[ \t]*(?:" + _TOKEN + rb"=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
    + rb"[ \t]*\Z")


def valid_media_type(value: bytes) -> bool:
    """Is ``value`` a well-formed ``Content-Type`` (RFC 9110 ``media-type``, ASCII only)?"""
    return _MEDIA_TYPE.match(value) is not None


def undecodable(path: bytes, host: bytes) -> str | None:
    """Why routing cannot use a path or Host (Klein, file lookups would raise), or None."""
    decoded = unquote_to_bytes(path)
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return "the URL path is not UTF-8 once percent-decoded"
    if _CONTROL.search(decoded):
        return "the URL path has control characters once percent-decoded"
    try:
        host.decode("utf-8")
    except UnicodeDecodeError:
        return "the Host header is not UTF-8"
    return None


def request_path(target: bytes) -> bytes:
    """The path of a request-target (origin or absolute form), without the query."""
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    if b"://" in path[:16]:
        path = b"/" + path.split(b"://", 1)[1].partition(b"/")[2]
    return path


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}, sort_keys=True).encode() + b"\n"


class ServerRequest(Request):
    """A request whose body is bounded and whose ``Content-Type`` is checked first.

    Subclass this (not ``twisted.web.server.Request``) to add behaviour to a
    :class:`ServerSite`'s requests.
    """

    _body_limit = DEFAULT_MAX_BODY
    _body_size = 0
    _refused = False
    _bad_content_type = False

    def gotLength(self, length):
        site = self.channel.site
        # The request line is parsed before the headers, but Request.path is only set once
        # the body is in: read the target Twisted's channel has kept (None: the default).
        target = getattr(self.channel, "_path", None)
        self._body_limit = site.body_limit(target)
        self.content = io.BytesIO()  # never more than the limit
        if length is not None and length > self._body_limit:
            self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the 413
            self._refuse_body(f"Content-Length {length}")

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._body_size += len(data)
        if self._body_size > self._body_limit:
            self._refuse_body("chunked body")
            return
        self.content.write(data)

    def _refuse_body(self, what: str) -> None:
        self._refused = True
        self.content = io.BytesIO()
        site = self.channel.site
        body = error_body("too-large", f"request body over {self._body_limit} bytes")
        head = (b"HTTP/1.1 413 Content Too Large\r\ncontent-type: application/json\r\n"
                b"cache-control: no-store\r\nconnection: close\r\n"
                b"content-length: %d\r\n" % len(body))
        if site.hsts_header is not None and self.isSecure():
            head += b"strict-transport-security: " + site.hsts_header + b"\r\n"
        self.channel.transport.write(head + b"\r\n" + body)
        self.channel.loseConnection()
        site.warn("body-" + what.split()[0], "HTTP request from {peer} refused (413): {what} "
                  "over the {limit} byte limit", peer=_peer(self), what=what,
                  limit=self._body_limit)

    def requestReceived(self, command, path, version):
        if self._refused:
            return  # answered with 413 and closed; nothing is processed
        ctype = self.requestHeaders.getRawHeaders(b"content-type")
        if ctype and not all(valid_media_type(v) for v in ctype):
            self._bad_content_type = True
            self.requestHeaders.removeHeader(b"content-type")  # Twisted must not parse it
        super().requestReceived(command, path, version)

    def process(self):
        site = self.channel.site
        if site.hsts_header is not None and self.isSecure():
            self.setHeader(b"strict-transport-security", site.hsts_header)
        if self._bad_content_type:
            problem = "malformed Content-Type header"
        else:
            problem = undecodable(self.path, self.getRequestHostname())
        if problem is None:
            super().process()
            return
        self.site = site
        site.warn(problem, "HTTP request from {peer} refused (400): {problem}",
                  peer=_peer(self), problem=problem)
        self.setResponseCode(400)
        self.setHeader(b"content-type", b"application/json")
        self.setHeader(b"cache-control", b"no-store")
        self.write(error_body("bad-request", problem))
        self.finish()


def _peer(request) -> str:
    return getattr(request.getClientAddress(), "host", None) or "?"


class ServerSite(Site):
    """The ``Site`` of the locator and the edge (see the module doc).

    ``body_limits`` maps a path prefix (``b"/api/v1/regions"``) to the body cap of the
    routes under it; every other route gets ``config.max_body``.
    """

    displayTracebacks = False
    requestFactory = ServerRequest

    def __init__(self, resource, reactor, config: SiteConfig = SiteConfig(),
                 body_limits: Mapping[bytes, int] | None = None):
        super().__init__(resource, reactor=reactor)
        self.access_log = config.access_log
        self.max_body = config.max_body
        # Longest prefix first, so /a/b wins over /a.
        self.body_limits = sorted((body_limits or {}).items(), key=lambda kv: -len(kv[0]))
        self.hsts_header = (b"max-age=%d" % config.hsts_max_age if config.hsts_max_age > 0
                            else None)
        self.warnings = RateLimitedLog(_log, reactor.seconds)

    def body_limit(self, target: bytes | None) -> int:
        """The body cap of a request-target."""
        if target:
            path = request_path(target)
            for prefix, limit in self.body_limits:
                if path == prefix or path.startswith(prefix.rstrip(b"/") + b"/"):
                    return limit
        return self.max_body

    def warn(self, kind: str, fmt: str, **fields) -> None:
        """One warning line for a refused request, rate-limited per ``kind``."""
        self.warnings.warn(kind, fmt, **fields)

    def log(self, request):
        if self.access_log:
            super().log(request)
