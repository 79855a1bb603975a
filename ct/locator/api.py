"""The locator's HTTP API (Klein): where clients start and join sessions, and operator calls.

Client calls need no credentials (they reveal only which edge to talk to); operator
calls take the dashboard credentials with HTTP Basic. Errors are JSON
``{"error": code, "message": ...}`` with a fitting status. See ``docs/protocol.md``.
Routes are relative to where :meth:`LocatorAPI.mount` puts them (``/api``, ``/health``).
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource

from ct import __version__
from ct.common import jsonsafe
from ct.common.addresses import parse_networks, request_client_ip
from ct.common.credentials import Credentials, basic_auth
from ct.dashboard.auth import ADMIN, LoginGuard, LoginThrottle, Verdict
from ct.dashboard.backend import audit_entry_dict
from ct.common.logthrottle import RateLimitedLog
from ct.common.web import error_body
from ct.locator.regions import RegionError
from ct.locator.service import Locator, LocatorError
from ct.protocol.wire import MAX_NAME
from ct.storage.apitokens import ApiTokenStore
from ct.storage.database import DATABASE_RETRY_AFTER, DatabaseUnavailable
from ct.storage.store import MAX_QUERY_LIMIT

_log = Logger()

MAX_ID = 64  # session and edge ids
TOKEN_USER = "(API token)"  # the throttle's user name for failed token attempts


@dataclass(frozen=True)
class Operator:
    """Who makes an operator call: ``name`` is audited; ``role`` as on the dashboard."""

    name: str
    role: str
    teams: tuple[str, ...] = ()


def _scope(op: Operator) -> tuple[str, ...] | None:
    """The teams a team viewer's call is limited to; None for an administrator."""
    return None if op.role == ADMIN else tuple(op.teams)


def bearer_token(request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    header = request.getHeader("authorization")
    if not header or not header[:7].lower() == "bearer ":
        return None
    return header[7:].strip()[:200]
MAX_USAGE_DAYS = 366
REGIONS_MAX_DEPTH = 8  # {"regions": {name: {"cidrs": [...]}}} is 4 deep


def _json(request, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode("utf-8") + b"\n"


def _error(request, status: int, code: str, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return error_body(code, message)


def path_id_problem(value: str, what: str, max_len: int) -> str | None:
    """Why a name or id taken from a URL path is unusable (None: it is fine).

    Klein hands over the percent-decoded segment: NUL and other control characters
    (databases refuse them, logs and headers must not carry them) and the replacement
    character of undecodable UTF-8 are refused, as are empty and over-long values.
    """
    if not 0 < len(value) <= max_len:
        return f"{what} must be 1-{max_len} characters"
    if any(c == "\ufffd" or unicodedata.category(c) in ("Cc", "Cs") for c in value):
        return f"{what} must be UTF-8 text without control characters"
    return None


class BadRequest(LocatorError):
    def __init__(self, message: str):
        super().__init__(400, "bad-request", message)


def _checked(value: str, what: str, max_len: int) -> str:
    problem = path_id_problem(value, what, max_len)
    if problem is not None:
        raise BadRequest(problem)
    return value


def regions_document(body: bytes) -> Any:
    """The ``regions`` value of a ``PUT /api/v1/regions`` body; BadRequest when unusable."""
    expected = 'expected {"regions": {name: [CIDR, ...]}}'
    try:
        document = jsonsafe.loads(body, max_depth=REGIONS_MAX_DEPTH)
    except jsonsafe.JSONError as e:
        raise BadRequest(f"{expected}: {e}") from None
    if not isinstance(document, dict) or "regions" not in document:
        raise BadRequest(expected)
    return document["regions"]


def _str_arg(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{name} must be UTF-8 text") from None


def _int_arg(request, name: str, default: int, low: int, high: int) -> int:
    text = _str_arg(request, name)
    if text is None:
        return default
    plain = text.isascii() and text.isdigit() and len(text) <= 12
    if not plain or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _float_arg(request, name: str) -> float | None:
    """Seconds since the epoch (UTC)."""
    text = _str_arg(request, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise BadRequest(f"{name} must be seconds since the epoch (UTC)")
    return value


class LocatorAPI:
    app = Klein()  # at /api
    health_app = Klein()  # at /health and /ct-health

    def __init__(self, locator: Locator, credentials: Credentials, trusted_proxies=(),
                 throttle: LoginThrottle | None = None, tokens: ApiTokenStore | None = None,
                 password_login: bool = True):
        """``throttle``: failed operator log-ins, shared with the dashboard; ``tokens``:
        the API tokens; ``password_login``: False refuses HTTP Basic (tokens only)."""
        self.locator = locator
        self.tokens = tokens
        self.password_login = password_login
        self.credentials = credentials
        self.trusted_proxies = parse_networks(trusted_proxies, "trusted proxy")  # parsed once
        self.guard = LoginGuard(credentials, locator.clock, self._record_failure,
                                "operator API", throttle=throttle)
        self.warnings = RateLimitedLog(_log, locator.clock.seconds)

    def mount(self, root: resource.Resource) -> None:
        """Serve the API at ``/api`` and the health check at ``/health`` and ``/ct-health/``
        under ``root``."""
        root.putChild(b"api", self.app.resource())
        health = self.health_app.resource()
        root.putChild(b"health", health)
        root.putChild(b"ct-health", health)

    def client_ip(self, request) -> str:
        """The client's address; X-Forwarded-For counts only from CT_TRUSTED_PROXIES."""
        return request_client_ip(request, self.trusted_proxies)

    @defer.inlineCallbacks
    def _operator(self, request):
        """Who calls: an :class:`Operator` from an API token (``Authorization: Bearer``)
        or the dashboard account (HTTP Basic, unless password log-in is off), or None;
        ``_unauthorized`` then answers 401, or 429 while this address is locked after
        failed attempts."""
        ip = self.client_ip(request)
        bearer = bearer_token(request)
        if bearer is not None:
            wait = self.guard.throttle.locked_for(ip, TOKEN_USER)
            if wait > 0:
                request.ct_login_verdict = Verdict(False, True, wait)
                return None
            token = yield self.tokens.verify(bearer) if self.tokens is not None else None
            if token is None:
                lock = self.guard.throttle.failed(ip, TOKEN_USER)
                request.ct_login_verdict = Verdict(False, lock > 0, lock)
                self.warnings.warn("bad-token", "operator API: unknown or revoked API token "
                                   "from {ip}", ip=ip)
                return None
            return Operator(f"token:{token.name}", token.role, token.teams)
        given = basic_auth(request)
        if given is None or not self.password_login:
            return None
        verdict = self.guard.check(ip, given[0][:64], given[1])
        if not verdict.ok:
            request.ct_login_verdict = verdict
            return None
        return Operator(given[0], ADMIN)

    @defer.inlineCallbacks
    def _as_operator(self, request, produce, admin: bool = True):
        """Answer with ``produce(operator)`` for an authenticated operator whose role may
        make this call (``admin``: administrators only), else 401/429/403."""
        try:
            operator = yield self._operator(request)
        except DatabaseUnavailable:  # API tokens are in the database
            request.setHeader(b"retry-after", b"%d" % DATABASE_RETRY_AFTER)
            return _error(request, 503, "database-unavailable",
                          "the locator's database is not reachable; try again shortly")
        if operator is None:
            return self._unauthorized(request)
        if admin and operator.role != ADMIN:
            return _error(request, 403, "forbidden", f"{operator.name} is a "
                          f"{operator.role}; this call needs the admin role")
        result = yield self._answer(request, lambda: produce(operator))
        return result

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
            if isinstance(e, BadRequest):
                self.warnings.warn("bad-request", "locator API: {method} from {peer} refused "
                                   "(400): {message}", method=request.method.decode("latin-1"),
                                   peer=self.client_ip(request), message=e.message)
            return _error(request, e.status, e.code, e.message)
        except DatabaseUnavailable:  # logged once per outage by the database
            request.setHeader(b"retry-after", b"%d" % DATABASE_RETRY_AFTER)
            return _error(request, 503, "database-unavailable",
                          "the locator's database is not reachable; try again shortly")
        return _json(request, body)

    # -- health

    @health_app.route("/", methods=["GET", "HEAD"], strict_slashes=False)
    @defer.inlineCallbacks
    def health(self, request):
        healthy, checks = yield self.locator.health()
        body = {"status": "ok" if healthy else "failing", "role": "locator",
                "version": __version__, "checks": checks, **self.locator.snapshot()}
        cluster = getattr(self.locator, "cluster", None)
        if cluster is not None:
            body["locator"] = cluster.locator_id
            body["locators"] = cluster.describe()
        return _json(request, body, 200 if healthy else 503)

    @app.route("/v1/locator/ping", methods=["GET"])
    def ping(self, request):
        """Another locator measures its latency to this one (no database involved)."""
        cluster = getattr(self.locator, "cluster", None)
        return _json(request, {"locator": cluster.locator_id if cluster else None})

    # -- client API

    @app.route("/v1/sessions", methods=["POST"])
    def start_session(self, request):
        ip = self.client_ip(request)
        return self._answer(request, lambda: defer.succeed(self.locator.place_session(ip)))

    @app.route("/v1/sessions/<string:session_id>", methods=["GET"])
    def find_session(self, request, session_id):
        return self._answer(request, lambda: self.locator.find_session(
            _checked(session_id, "session id", MAX_ID)))

    @app.route("/v1/teams/<string:team>/edge", methods=["GET"])
    def team_edge(self, request, team):
        ip = self.client_ip(request)
        return self._answer(request, lambda: self.locator.team_edge(
            _checked(team, "team name", MAX_NAME), ip))

    # -- operator API

    @app.route("/v1/edges", methods=["GET"])
    def edges(self, request):
        return self._as_operator(request, lambda op: self.locator.list_edges().addCallback(
            lambda edges: {"edges": edges}))

    @app.route("/v1/edges/<string:edge_id>/suspend", methods=["POST"])
    def suspend(self, request, edge_id):
        return self._set_suspended(request, edge_id, True)

    @app.route("/v1/edges/<string:edge_id>/resume", methods=["POST"])
    def resume(self, request, edge_id):
        return self._set_suspended(request, edge_id, False)

    def _set_suspended(self, request, edge_id, suspended):
        return self._as_operator(request, lambda op: self.locator.suspend(
            _checked(edge_id, "edge id", MAX_ID), suspended, by=op.name))

    @app.route("/v1/regions", methods=["GET"])
    def get_regions(self, request):
        return self._as_operator(request, lambda op: self.locator.store.get_config(
            "regions", {}).addCallback(lambda r: {"regions": r}))

    @app.route("/v1/audit", methods=["GET"])
    def get_audit(self, request):
        """Audit entries, newest first: ``since``/``until`` (epoch seconds, until exclusive),
        ``kind``, ``user``, ``edge``, ``session``, ``limit`` (1-1000, default 100),
        ``offset``; a team viewer's token sees its teams' sessions' entries only."""

        def query(op):
            filters = {name: _checked(value, name, MAX_NAME) for name, value in (
                (name, _str_arg(request, name)) for name in ("kind", "user", "edge",
                                                             "session")) if value is not None}
            d = self.locator.store.query_audit(
                since=_float_arg(request, "since"), until=_float_arg(request, "until"),
                limit=_int_arg(request, "limit", 100, 1, MAX_QUERY_LIMIT),
                offset=_int_arg(request, "offset", 0, 0, 10**9), teams=_scope(op), **filters)
            return d.addCallback(lambda entries: {
                "entries": [audit_entry_dict(e) for e in entries]})

        return self._as_operator(request, query, admin=False)

    @app.route("/v1/regions", methods=["PUT"])
    def put_regions(self, request):
        body = request.content.read()

        @defer.inlineCallbacks
        def save(op):
            value = regions_document(body)
            try:
                yield self.locator.set_regions(value)
            except RegionError as e:
                raise LocatorError(400, "bad-regions", str(e)) from None
            yield self.locator.audit("config_changed", user=op.name,
                                     details={"key": "regions", "value": value})
            return {"regions": value}

        return self._as_operator(request, save)

    @app.route("/v1/usage", methods=["GET"])
    def usage(self, request):
        """``days`` (1-366, default 30); a team viewer's token gets its teams' sessions'
        numbers only, without the deployment-wide peaks and A/V (``teams`` says so)."""
        return self._as_operator(request, lambda op: self.locator.store.usage(
            _int_arg(request, "days", 30, 1, MAX_USAGE_DAYS), teams=_scope(op)).addCallback(
                lambda report: report.to_json()), admin=False)

    @app.route("/v1/sessions", methods=["GET"])
    def sessions(self, request):
        """The live sessions; a team viewer's token sees its teams' sessions only."""
        @defer.inlineCallbacks
        def listed(op):
            sessions = yield self.locator.live_sessions()
            teams = _scope(op)
            if teams is not None:
                sessions = [s for s in sessions if s.get("team") in teams]
            return {"sessions": sessions}

        return self._as_operator(request, listed, admin=False)

    @app.route("/v1/sessions/<string:session_id>/end", methods=["POST"])
    def end_session(self, request, session_id):
        return self._as_operator(request, lambda op: self.locator.end_session(
            _checked(session_id, "session id", MAX_ID), by=op.name))

    @app.route("/v1/sessions/<string:session_id>/participants/<string:participant>/remove",
               methods=["POST"])
    def remove_participant(self, request, session_id, participant):
        def remove(op):
            if not (participant.isascii() and participant.isdigit() and len(participant) <= 9):
                raise BadRequest("participant must be a participant number")
            return self.locator.remove_participant(
                _checked(session_id, "session id", MAX_ID), int(participant), by=op.name)

        return self._as_operator(request, remove)

    def _unauthorized(self, request):
        verdict = getattr(request, "ct_login_verdict", None)
        if verdict is not None and verdict.locked:
            request.setHeader(b"retry-after", verdict.retry_after_header)
            return _error(request, 429, "too-many-failures", "too many failed log-ins from "
                          f"this address; try again in {verdict.retry_after_header.decode()} s")
        request.setHeader(b"www-authenticate", b'Bearer realm="ct locator", Basic '
                          b'realm="ct locator", charset="UTF-8"')
        return _error(request, 401, "unauthorized", "operator credentials required: an API "
                      "token (Authorization: Bearer) or the dashboard user and password "
                      "(HTTP Basic)")
