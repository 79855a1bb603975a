"""HTTP side of the edge: websocket routes, ``/health``, ``/ct-health/``, ``/clients/``,
``/metrics``, the browser app's ``/join/<session>`` and ``/join-assets/``."""

from __future__ import annotations

import json

from autobahn.twisted.resource import WebSocketResource
from twisted.web import pages, resource

from ct import __version__
from ct.edge.downloads import DownloadCounter, clients_resource
from ct.webclient import web as webclient
from ct.webclient.assets import Assets


class JSONResource(resource.Resource):
    """A leaf answering GET with JSON from a callable returning ``(ok, body)``."""

    isLeaf = True

    def __init__(self, produce):
        super().__init__()
        self._produce = produce

    def render_GET(self, request):
        ok, body = self._produce()
        request.setResponseCode(200 if ok else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body, sort_keys=True).encode("utf-8") + b"\n"

    render_HEAD = render_GET


class Root(resource.Resource):
    """``/``: a short JSON description of the service; children are the routes."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role

    def getChild(self, path, request):
        if path == b"":
            return self
        return pages.notFound("Not found", "no such route on this server")

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        body = {"service": f"ct {self.role}", "version": __version__,
                "health": "/health", "protocol": "docs/protocol.md"}
        return json.dumps(body).encode() + b"\n"


def build_edge_root(edge, session_factory, presence_factory, clients_dir: str | None,
                    no_clients: bool, downloads: DownloadCounter | None = None,
                    metrics: resource.Resource | None = None,
                    assets: Assets | None = None,
                    public_https: bool = False) -> resource.Resource:
    """``public_https``: the edge's public URL (``CT_SERVER_URL``) is ``https://``."""
    root = Root("edge")
    ws = resource.Resource()
    ws.putChild(b"session", WebSocketResource(session_factory))
    ws.putChild(b"presence", WebSocketResource(presence_factory))
    root.putChild(b"ws", ws)
    health = JSONResource(edge.health)
    root.putChild(b"health", health)
    root.putChild(b"ct-health", health)
    if metrics is not None:
        root.putChild(b"metrics", metrics)
    if not no_clients:
        root.putChild(b"clients", clients_resource(clients_dir or None,
                                                    downloads or DownloadCounter()))
    webclient.mount(root, assets or Assets(), edge.hosts_session, public_https)
    return root
