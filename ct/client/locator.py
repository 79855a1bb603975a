"""Reference client for the locator's HTTP API: where to host, join, and find team presence."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, task
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from ct.common.http import make_agent


class LocatorRefused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class LocatorClient:
    def __init__(self, reactor, url: str, trust_all_certs: bool = False, timeout: float = 10.0,
                 headers: dict[str, str] | None = None):
        self.reactor = reactor
        self.url = url.rstrip("/")
        self.agent = make_agent(reactor, trust_all_certs, timeout)
        self.timeout = timeout
        self.headers = headers or {}

    @defer.inlineCallbacks
    def _call(self, method: bytes, path: str, body: Any = None,
              auth: tuple[str, str] | str | None = None):
        """``auth``: ``(user, password)`` for HTTP Basic, or an API token (Bearer)."""
        headers = Headers({k.encode(): [v.encode()] for k, v in self.headers.items()})
        if isinstance(auth, str):
            headers.setRawHeaders(b"authorization", [f"Bearer {auth}".encode()])
        elif auth is not None:
            import base64

            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers.setRawHeaders(b"authorization", [f"Basic {token}".encode()])
        producer = None
        if body is not None:
            from twisted.web.client import FileBodyProducer
            from io import BytesIO

            producer = FileBodyProducer(BytesIO(json.dumps(body).encode()))
            headers.setRawHeaders(b"content-type", [b"application/json"])
        d = self.agent.request(method, (self.url + path).encode(), headers, producer)
        d.addTimeout(self.timeout, self.reactor)
        response = yield d
        raw = yield readBody(response)
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"error": "bad-response", "message": raw[:200].decode(errors="replace")}
        if response.code >= 400:
            raise LocatorRefused(response.code, data.get("error", "error"),
                                 data.get("message", ""))
        return data

    def start_session(self) -> defer.Deferred:
        """Fires with ``{"edge", "server", ...}``: host the session on ``server``."""
        return self._call(b"POST", "/api/v1/sessions")

    @defer.inlineCallbacks
    def find_session(self, session_id: str, retries: int = 10, delay: float = 0.3):
        """The edge of a session. A session reaches the locator's directory a moment after
        its host got ``hosted``; a 404 is retried a few times (bounded) before it counts."""
        for attempt in range(retries + 1):
            try:
                answer = yield self._call(b"GET", f"/api/v1/sessions/{session_id}")
                return answer
            except LocatorRefused as e:
                if e.status != 404 or attempt == retries:
                    raise
            yield task.deferLater(self.reactor, delay, lambda: None)

    def team_edge(self, team: str) -> defer.Deferred:
        return self._call(b"GET", f"/api/v1/teams/{team}/edge")

    def edges(self, auth) -> defer.Deferred:
        return self._call(b"GET", "/api/v1/edges", auth=auth)

    def suspend(self, edge_id: str, suspended: bool, auth) -> defer.Deferred:
        action = "suspend" if suspended else "resume"
        return self._call(b"POST", f"/api/v1/edges/{edge_id}/{action}", auth=auth)

    def audit(self, auth, limit: int = 100, kind: str | None = None) -> defer.Deferred:
        from urllib.parse import urlencode

        query = urlencode({"limit": limit, **({"kind": kind} if kind else {})})
        return self._call(b"GET", f"/api/v1/audit?{query}", auth=auth)

    def set_regions(self, regions: dict, auth) -> defer.Deferred:
        return self._call(b"PUT", "/api/v1/regions", {"regions": regions}, auth=auth)
