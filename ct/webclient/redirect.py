"""The locator's ``/join/<session>``: a redirect (302) to the same path on the session's
edge, query kept (the browser keeps the fragment, and with it the key), or a page saying
why not: unknown or ended session (404), its edge unavailable (410), the locator's
database away (503).

A session reaches the locator's directory a moment after the edge said ``hosted``: a
lookup that finds nothing is retried for a few seconds before the 404 page.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import quote

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web import resource, server

from ct.locator.service import LocatorError
from ct.storage.database import DATABASE_RETRY_AFTER, DatabaseUnavailable
from ct.webclient import pages
from ct.webclient.assets import Assets
from ct.webclient.web import AssetFiles, new_nonce, send_page, valid_session_id

_log = Logger()

NOT_FOUND_RETRIES = 6  # a just-hosted session: 6 more looks, RETRY_DELAY apart
RETRY_DELAY = 0.5


def edge_location(server_url: str, session_id: str, uri: bytes) -> bytes:
    """``<edge URL>/join/<session>`` with the request's query."""
    query = uri.split(b"?", 1)[1] if b"?" in uri else b""
    location = f"{server_url.rstrip('/')}/join/{quote(session_id, safe='')}".encode("utf-8")
    return location + (b"?" + query if query else b"")


class JoinRedirect(resource.Resource):
    """``/join/<session>`` on the locator. ``find_session(id)`` is the lookup behind
    ``GET /api/v1/sessions/<id>`` (a Deferred of ``{"server": url, ...}``, failing with
    :class:`LocatorError` or :class:`DatabaseUnavailable`)."""

    def __init__(self, assets: Assets, find_session: Callable[[str], defer.Deferred], clock,
                 retries: int = NOT_FOUND_RETRIES, delay: float = RETRY_DELAY):
        super().__init__()
        self.assets = assets
        self.find_session = find_session
        self.clock = clock
        self.retries = retries
        self.delay = delay

    def getChild(self, path, request):
        if path == b"":
            return self
        return _Lookup(self, path.decode("utf-8", "replace"))

    def render_GET(self, request):
        nonce = new_nonce()
        return send_page(request, pages.no_session(self.assets, nonce), nonce)

    @defer.inlineCallbacks
    def locate(self, session_id: str, gone: Callable[[], bool]):
        """The edge URL of a session, retrying "not found" briefly; raises as
        ``find_session`` does."""
        for attempt in range(self.retries + 1):
            try:
                found = yield self.find_session(session_id)
                return found["server"]
            except LocatorError as e:
                if e.code != "not-found" or attempt == self.retries or gone():
                    raise
            yield task.deferLater(self.clock, self.delay, lambda: None)


class _Lookup(resource.Resource):
    isLeaf = True

    def __init__(self, parent: JoinRedirect, session_id: str):
        super().__init__()
        self.parent = parent
        self.session_id = session_id

    def render_GET(self, request):
        nonce = new_nonce()
        assets = self.parent.assets
        if request.postpath or not valid_session_id(self.session_id):
            return send_page(request, pages.not_found(assets, nonce), nonce)
        gone = []
        request.notifyFinish().addBoth(gone.append)
        d = self.parent.locate(self.session_id, lambda: bool(gone))

        def redirect(url):
            request.setResponseCode(302)
            request.setHeader(b"location", edge_location(url, self.session_id, request.uri))
            request.setHeader(b"cache-control", b"no-store")
            request.setHeader(b"referrer-policy", b"no-referrer")
            return b""

        def refuse(failure):
            if failure.check(LocatorError) and failure.value.code == "edge-unavailable":
                return send_page(request, pages.edge_unavailable(assets, nonce), nonce)
            if failure.check(LocatorError):  # not-found (and nothing else it raises here)
                return send_page(request, pages.not_found(assets, nonce), nonce)
            if failure.check(DatabaseUnavailable):  # logged once per outage by the database
                request.setHeader(b"retry-after", b"%d" % DATABASE_RETRY_AFTER)
            else:
                _log.failure("join page: looking up session {sid} failed", failure,
                             sid=self.session_id)
            return send_page(request, pages.locator_unavailable(assets, nonce), nonce)

        def finish(body):
            if not gone:
                request.write(body)
                request.finish()

        d.addCallbacks(redirect, refuse).addCallback(finish)
        return server.NOT_DONE_YET


def mount(root: resource.Resource, assets: Assets, find_session, clock) -> None:
    """Serve ``/join/<session>`` (redirects) and ``/join-assets/`` (for the pages' style)
    under the locator's ``root``."""
    root.putChild(b"join", JoinRedirect(assets, find_session, clock))
    root.putChild(b"join-assets", AssetFiles(assets))
