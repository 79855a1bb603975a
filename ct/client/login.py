"""Signing in to host (``CT_HOST_AUTH=sso``) from a terminal: a loopback redirect (RFC 8252).

:class:`LoopbackLogin` listens on ``127.0.0.1`` (a free port), gives the URL to open in a
browser — the server's ``/dashboard/sso/host`` with this loopback address and a random
``state`` — and fires ``token`` with the host token once the browser comes back from the
identity provider. Only the answer carrying our ``state`` counts.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlencode

from twisted.internet import defer, endpoints
from twisted.web import resource, server

from ct.common.tokens import same_secret

PAGE = (b"<!DOCTYPE html><meta charset=utf-8><title>Signed in</title>"
        b"<p>Signed in. You can close this tab and go back to the terminal.</p>")


class _Callback(resource.Resource):
    isLeaf = True

    def __init__(self, login: LoopbackLogin):
        super().__init__()
        self.login = login

    def render_GET(self, request):
        state = (request.args.get(b"state") or [b""])[0].decode("utf-8", "replace")
        token = (request.args.get(b"token") or [b""])[0].decode("utf-8", "replace")
        request.setHeader(b"cache-control", b"no-store")
        if not token or not same_secret(state, self.login.state) or self.login.token.called:
            request.setResponseCode(400)
            return b"not the sign-in this client started\n"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        self.login.reactor.callLater(0, self.login.token.callback, token)
        return PAGE


class LoopbackLogin:
    def __init__(self, reactor, server_url: str, state: str | None = None):
        self.reactor = reactor
        self.server_url = server_url.rstrip("/")
        self.state = state or secrets.token_urlsafe(24)
        self.token: defer.Deferred = defer.Deferred()
        self._port = None

    @defer.inlineCallbacks
    def start(self):
        """Listen; fires with the URL to open in a browser."""
        site = server.Site(_Callback(self))
        site.displayTracebacks = False
        endpoint = endpoints.TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")
        self._port = yield endpoint.listen(site)
        redirect = f"http://127.0.0.1:{self._port.getHost().port}/callback"
        return (f"{self.server_url}/dashboard/sso/host?"
                + urlencode({"redirect_uri": redirect, "state": self.state}))

    def stop(self):
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return defer.succeed(None)

    @defer.inlineCallbacks
    def wait(self, timeout: float = 300.0):
        """Fires with the host token (``TimeoutError`` after ``timeout`` seconds)."""
        try:
            token = yield self.token.addTimeout(timeout, self.reactor)
        finally:
            yield self.stop()
        return token


def save_token(path: str, token: str) -> None:
    """Write ``token`` to ``path`` readable by this user only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(token + "\n")


def read_token(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return f.read(8192).strip() or None
