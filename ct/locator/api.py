"""The locator's HTTP API (Klein): where clients start and join sessions, and operator calls.

Client calls need no credentials (they reveal only which edge to talk to); operator
calls take the dashboard credentials with HTTP Basic. Errors are JSON
``{"error": code, "message": ...}`` with a fitting status. See ``docs/protocol.md``.
Routes are relative to where :meth:`LocatorAPI.mount` puts them (``/api``, ``/health``).
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource

from ct import __version__
from ct.common.credentials import Credentials, basic_auth
from ct.dashboard.auth import LoginGuard, LoginThrottle
from ct.locator.regions import RegionError, client_ip
from ct.locator.service import Locator, LocatorError
from ct.protocol.wire import MAX_NAME

_log = Logger()


def _json(request, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode("utf-8") + b"\n"


def _error(request, status: int, code: str, message: str) -> bytes:
    return _json(request, {"error": code, "message": message}, status)


class LocatorAPI:
    app = Klein()  # at /api
    health_app = Klein()  # at /health and /ct-health

    def __init__(self, locator: Locator, credentials: Credentials, trusted_proxies=(),
                 throttle: LoginThrottle | None = None):
        """``throttle``: failed operator log-ins, shared with the dashboard."""
        self.locator = locator
        self.credentials = credentials
        self.trusted_proxies = tuple(trusted_proxies)
        self.guard = LoginGuard(credentials, locator.clock, self._record_failure,
                                "operator API", throttle=throttle)

    def mount(self, root: resource.Resource) -> None:
        """Serve the API at ``/api`` and the health check at ``/health`` and ``/ct-health/``
        under ``root``."""
        root.putChild(b"api", self.app.resource())
        health = self.health_app.resource()
        root.putChild(b"health", health)
        root.putChild(b"ct-health", health)

    def client_ip(self, request) -> str:
        """The client's address; X-Forwarded-For counts only from CT_TRUSTED_PROXIES."""
        host = getattr(request.getClientAddress(), "host", "") or ""
        forwarded = [h.decode("latin-1") for h in
                     request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])]
        return client_ip(host, forwarded or None, self.trusted_proxies)

    def _operator(self, request) -> str | None:
        """The operator's user name, or None; ``_unauthorized`` then answers 401, or 429
        while this address is locked after failed attempts."""
        given = basic_auth(request)
        if given is None:
            return None
        verdict = self.guard.check(self.client_ip(request), given[0][:64], given[1])
        if not verdict.ok:
            request.ct_login_verdict = verdict
            return None
        return given[0]

    def _record_failure(self, user: str, ip: str, reason: str, unreported: int):
        return self.locator.audit("dashboard_login_failed", user=user, details={
            "ip": ip, "reason": f"{reason} (operator API)", "unreported": unreported})

    @defer.inlineCallbacks
    def _answer(self, request, produce):
        try:
            body = yield produce()
        except LocatorError as e:
            retry_after = getattr(e, "retry_after", None)
            if retry_after is not None:
                request.setHeader(b"retry-after", str(retry_after).encode())
            return _error(request, e.status, e.code, e.message)
        return _json(request, body)

    # -- health

    @health_app.route("/", methods=["GET", "HEAD"], strict_slashes=False)
    @defer.inlineCallbacks
    def health(self, request):
        healthy, checks = yield self.locator.health()
        body = {"status": "ok" if healthy else "failing", "role": "locator",
                "version": __version__, "checks": checks, **self.locator.snapshot()}
        return _json(request, body, 200 if healthy else 503)

    # -- client API

    @app.route("/v1/sessions", methods=["POST"])
    def start_session(self, request):
        ip = self.client_ip(request)
        return self._answer(request, lambda: defer.succeed(self.locator.place_session(ip)))

    @app.route("/v1/sessions/<string:session_id>", methods=["GET"])
    def find_session(self, request, session_id):
        if len(session_id) > 64:
            return _error(request, 400, "bad-request", "session id too long")
        return self._answer(request, lambda: self.locator.find_session(session_id))

    @app.route("/v1/teams/<string:team>/edge", methods=["GET"])
    def team_edge(self, request, team):
        if not 0 < len(team) <= MAX_NAME:
            return _error(request, 400, "bad-request", f"team name must be 1-{MAX_NAME} "
                          "characters")
        ip = self.client_ip(request)
        return self._answer(request, lambda: self.locator.team_edge(team, ip))

    # -- operator API

    @app.route("/v1/edges", methods=["GET"])
    def edges(self, request):
        if self._operator(request) is None:
            return self._unauthorized(request)
        return self._answer(request, lambda: self.locator.list_edges().addCallback(
            lambda edges: {"edges": edges}))

    @app.route("/v1/edges/<string:edge_id>/suspend", methods=["POST"])
    def suspend(self, request, edge_id):
        return self._set_suspended(request, edge_id, True)

    @app.route("/v1/edges/<string:edge_id>/resume", methods=["POST"])
    def resume(self, request, edge_id):
        return self._set_suspended(request, edge_id, False)

    def _set_suspended(self, request, edge_id, suspended):
        user = self._operator(request)
        if user is None:
            return self._unauthorized(request)
        return self._answer(request, lambda: self.locator.suspend(edge_id, suspended, by=user))

    @app.route("/v1/regions", methods=["GET"])
    def get_regions(self, request):
        if self._operator(request) is None:
            return self._unauthorized(request)
        return self._answer(request, lambda: self.locator.store.get_config("regions", {})
                            .addCallback(lambda r: {"regions": r}))

    @app.route("/v1/regions", methods=["PUT"])
    def put_regions(self, request):
        if self._operator(request) is None:
            return self._unauthorized(request)
        try:
            value = json.loads(request.content.read() or b"null")["regions"]
        except (ValueError, KeyError, TypeError):
            return _error(request, 400, "bad-request", 'expected {"regions": {name: [CIDR, ...]}}')

        @defer.inlineCallbacks
        def save():
            try:
                yield self.locator.set_regions(value)
            except RegionError as e:
                raise LocatorError(400, "bad-regions", str(e)) from None
            return {"regions": value}

        return self._answer(request, save)

    def _unauthorized(self, request):
        verdict = getattr(request, "ct_login_verdict", None)
        if verdict is not None and verdict.locked:
            request.setHeader(b"retry-after", verdict.retry_after_header)
            return _error(request, 429, "too-many-failures", "too many failed log-ins from "
                          f"this address; try again in {verdict.retry_after_header.decode()} s")
        request.setHeader(b"www-authenticate", b'Basic realm="ct locator", charset="UTF-8"')
        return _error(request, 401, "unauthorized", "operator credentials required "
                      "(the dashboard user and password, HTTP Basic)")
