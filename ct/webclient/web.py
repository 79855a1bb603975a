"""The edge's ``/join/<session>`` (the browser app's page) and ``/join-assets/`` (its files).

``/join/<session>?token=…[&ctstickiness=…]#key=…`` answers, in this order:

* over plain HTTP to a host that is not this computer (``localhost``, ``127.0.0.0/8``,
  ``[::1]``): a page saying the link needs HTTPS (WebCrypto needs a secure context). Only
  when sure: a request saying ``X-Forwarded-Proto: https`` or ``Forwarded: proto=https``
  (a TLS-terminating proxy), or any request to an edge whose ``CT_SERVER_URL`` is
  ``https://``, gets the app, which checks ``isSecureContext`` itself (a wrong guess here
  only changes which page explains it);
* a session this edge does not hold, when the link names a ``ctstickiness`` value the
  request did not carry as a cookie: a redirect to the same URL that sets the cookie, so a
  load balancer routing on the cookie sends the browser to the session's edge; otherwise
  404 with a page saying the session is not here;
* the app's HTML shell, which sets the ``ctstickiness`` cookie from the link (browsers
  carry it, IDE clients send a header: ``docs/load-balancer.md``).

Every page is ``no-store`` with a strict Content-Security-Policy (no inline script) and
``Referrer-Policy: no-referrer``. The key in the fragment never reaches a server.
"""

from __future__ import annotations

import secrets
from typing import Callable
from urllib.parse import quote

from twisted.web import resource

from ct.common.addresses import parse_ip
from ct.edge import stickiness
from ct.webclient import pages
from ct.webclient.assets import Assets

MAX_SESSION_ID = 64
ASSET_CACHE = b"public, max-age=31536000, immutable"


def valid_session_id(text: str) -> bool:
    """1-64 printable characters (anything else names no session)."""
    return 0 < len(text) <= MAX_SESSION_ID and text.isprintable()


def loopback_host(host: str) -> bool:
    """Is ``host`` (a Host header's name, IPv6 in brackets) this computer, where browsers
    treat plain HTTP as a secure context?"""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = parse_ip(name)
    return address is not None and address.is_loopback


def surely_insecure(request, public_https: bool) -> bool:
    """Is this page surely no secure context (plain HTTP to another computer, no sign of a
    TLS proxy in front)? ``public_https``: the edge's public URL is ``https://``."""
    if public_https or request.isSecure() or loopback_host(_host_name(request)):
        return False
    proto = (request.getHeader(b"x-forwarded-proto") or b"").split(b",")[0].strip().lower()
    forwarded = (request.getHeader(b"forwarded") or b"").lower().replace(b" ", b"")
    return proto != b"https" and b"proto=https" not in forwarded


def _host_name(request) -> str:
    return request.getRequestHostname().decode("utf-8", "replace")


def _query_value(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def send_page(request, page: pages.Page, nonce: str) -> bytes:
    request.setResponseCode(page.status)
    for name, value in pages.SECURITY_HEADERS.items():
        request.setHeader(name, value)
    request.setHeader(b"content-security-policy", pages.CSP.format(nonce=nonce).encode())
    return page.body


class JoinPages(resource.Resource):
    """``/join``: children are sessions; ``/join`` and ``/join/`` name none."""

    def __init__(self, assets: Assets, is_active: Callable[[str], bool],
                 public_https: bool = False):
        """``is_active(session_id)``: does this edge hold that session (not ended)?
        ``public_https``: the edge's public URL (``CT_SERVER_URL``) is ``https://``."""
        super().__init__()
        self.assets = assets
        self.is_active = is_active
        self.public_https = public_https

    def getChild(self, path, request):
        if path == b"":
            return self
        return SessionPage(self, path.decode("utf-8", "replace"))

    def render_GET(self, request):
        nonce = new_nonce()
        return send_page(request, pages.no_session(self.assets, nonce), nonce)


class SessionPage(resource.Resource):
    isLeaf = True

    def __init__(self, pages_: JoinPages, session_id: str):
        super().__init__()
        self.parent = pages_
        self.session_id = session_id

    def render_GET(self, request):
        parent, assets, nonce = self.parent, self.parent.assets, new_nonce()
        if request.postpath or not valid_session_id(self.session_id):
            return send_page(request, pages.not_found(assets, nonce), nonce)
        if surely_insecure(request, parent.public_https):
            return send_page(request, pages.insecure(assets, nonce, _host_name(request)), nonce)
        sticky = stickiness.from_request(_query_value(request, stickiness.NAME), None)
        if not parent.is_active(self.session_id):
            carried = stickiness.from_request(None, _cookie_header(request))
            if sticky is not None and carried != sticky:
                # Another edge may hold it: come back with the cookie the balancer routes on.
                request.setResponseCode(302)
                request.setHeader(b"location", self_location(self.session_id, request.uri))
                request.setHeader(b"cache-control", b"no-store")
                request.setHeader(b"referrer-policy", b"no-referrer")
                request.setHeader(b"set-cookie", stickiness.cookie(sticky, request.isSecure()))
                return b""
            return send_page(request, pages.not_found(assets, nonce), nonce)
        if sticky is not None:
            request.setHeader(stickiness.NAME, sticky)
            request.setHeader(b"set-cookie", stickiness.cookie(sticky, request.isSecure()))
        return send_page(request, pages.shell(assets, nonce), nonce)


def self_location(session_id: str, uri: bytes) -> bytes:
    """This page again, relative (``<session>?<query>``): the same path under any prefix a
    proxy adds."""
    query = uri.split(b"?", 1)[1] if b"?" in uri else b""
    return quote(session_id, safe="").encode() + (b"?" + query if query else b"")


def _cookie_header(request) -> str | None:
    raw = request.getHeader(b"cookie")
    return None if raw is None else raw.decode("latin-1")


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


class AssetFiles(resource.Resource):
    """``/join-assets/<name>.<hash>.<ext>``: the app's files, cached for a year."""

    isLeaf = True

    def __init__(self, assets: Assets):
        super().__init__()
        self.assets = assets

    def render_GET(self, request):
        asset = None
        if len(request.postpath) == 1:
            asset = self.assets.served(request.postpath[0].decode("utf-8", "replace"))
        request.setHeader(b"x-content-type-options", b"nosniff")
        if asset is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            return b"no such file (the page that asked for it is older than this server)\n"
        request.setHeader(b"content-type", asset.content_type)
        request.setHeader(b"cache-control", ASSET_CACHE)
        return asset.body


def mount(root: resource.Resource, assets: Assets, is_active: Callable[[str], bool],
          public_https: bool = False) -> None:
    """Serve ``/join/<session>`` and ``/join-assets/`` under ``root`` (the edge's)."""
    root.putChild(b"join", JoinPages(assets, is_active, public_https))
    root.putChild(b"join-assets", AssetFiles(assets))
