"""The edge as one object: relay, presence, lag, audit trail and health, wired together.

Adapters (websocket protocols, HTTP resources, the locator link) receive this object;
it holds no sockets of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.logger import Logger

from ct import __version__
from ct.common import hosttoken
from ct.common.addresses import client_ip, parse_networks
from ct.common.hosttoken import HostIdentity, HostTokenConfig
from ct.common.cpu import CpuMeter
from ct.common.lag import LagMonitor
from ct.common.tokens import check_team_token
from ct.edge.presence import PresenceHub
from ct.edge.relay import Limits, Participant, Relay, Session
from ct.protocol import errors
from ct.protocol.errors import ProtocolError
from ct.protocol.link import AuditRecord, Draining
from ct.protocol.wire import MAX_TOKEN, field_str

_log = Logger()
_audit_log = Logger(namespace="ct.audit")


@dataclass
class EdgeConfig:
    """Everything the edge object needs, as plain values (``tap.py`` maps settings here)."""

    limits: Limits = field(default_factory=Limits)
    team_secret: str | None = None
    rate_limit: float = 500.0
    rate_burst: int = 5000
    handshake_timeout: float = 10.0
    ping_interval: float = 20.0
    region: str = "default"
    trusted_proxies: tuple = ()
    min_client_version: str | None = None
    edge_id: str | None = None
    host_tokens: HostTokenConfig | None = None  # CT_HOST_AUTH=sso; None: open
    # Checks the host tokens guests sign in with (CT_HOST_TOKEN_SECRET set); None: guests
    # cannot be asked to sign in here.
    guest_tokens: HostTokenConfig | None = None
    guest_auth: bool = False  # CT_GUEST_AUTH=sso: every guest signs in
    cpu_interval: float = 2.0  # the CPU figure's window: the locator report interval


def _version_tuple(text: str) -> tuple:
    parts = []
    for piece in text.replace("-", ".").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class Edge:
    """Sessions, presence and health of one edge process."""

    def __init__(self, clock, config: EdgeConfig | None = None):
        self.clock = clock
        self.config = config = config if config is not None else EdgeConfig()
        self.edge_id = config.edge_id or uuid.uuid4().hex[:12]
        self.relay = Relay(clock, config.limits)
        self.presence = PresenceHub(clock)
        self.lag = LagMonitor(clock)
        self.cpu = CpuMeter(clock, config.cpu_interval)
        self.relay.host_check = self._check_host
        self.relay.guest_check = self._check_guest
        self.relay.add_listener(self._on_relay_event)
        self.audit_sinks: list[Callable[[dict[str, Any]], None]] = []
        self.handshake_hooks: list[Callable[[Any, Participant], None]] = []
        self.av_reports = None  # ct.edge.av.AvReports when A/V is on (ct/edge/tap.py)
        self.started_at = clock.seconds()
        self.probe = None  # set by the tap when self-probing is on
        self.outbox = None  # set by the tap with a locator link: its writes show in /health
        self._trusted_proxies = parse_networks(config.trusted_proxies, "trusted proxy")
        self.draining: Draining | None = None  # stopping: see start_draining
        self.drain_listeners: list[Callable[[Draining], None]] = []  # the locator link

    # -- read by the websocket adapters
    @property
    def team_secret(self):
        return self.config.team_secret

    @property
    def rate_limit(self):
        return self.config.rate_limit

    @property
    def rate_burst(self):
        return self.config.rate_burst

    @property
    def handshake_timeout(self):
        return self.config.handshake_timeout

    @property
    def ping_interval(self):
        return self.config.ping_interval

    def client_address(self, socket_host: str, forwarded_for: str | None = None) -> str:
        """The client's IP: the socket peer's, or from ``X-Forwarded-For`` when the peer is
        one of ``trusted_proxies`` (see :func:`ct.common.addresses.client_ip`)."""
        return client_ip(socket_host, forwarded_for, self._trusted_proxies)

    def hosts_session(self, session_id: str) -> bool:
        """Does this edge hold ``session_id``, live (the browser app's page asks)?"""
        session = self.relay.sessions.get(session_id)
        return session is not None and not session.ended and not session.internal

    def after_handshake(self, conn, participant: Participant) -> None:
        for hook in self.handshake_hooks:
            hook(conn, participant)

    def start_draining(self, timeout: float) -> Draining:
        """The edge is stopping: refuse new sessions (``shutting-down``) from now; those
        running are ended ``timeout`` s later. Listeners (the locator link, which tells the
        locator to place nothing here) hear it once."""
        if self.draining is None:
            now = self.clock.seconds()
            self.draining = Draining(now, now + max(0.0, timeout))
            self.relay.draining = True
            for listener in list(self.drain_listeners):
                try:
                    listener(self.draining)
                except Exception:
                    _log.failure("telling {listener!r} that the edge is draining",
                                 listener=listener)
        return self.draining

    # -- policies applied when a session is hosted

    def signed_in(self, message: dict[str, Any]) -> HostIdentity | None:
        """With ``CT_HOST_AUTH=sso``, who the message's ``hostToken`` says signed in
        (``sign-in-required`` when missing, expired, for another audience or forged);
        None when hosting is open."""
        config = self.config.host_tokens
        if config is None:
            return None
        try:
            return hosttoken.verify(message.get("hostToken"), config, self.clock.seconds())
        except hosttoken.HostTokenRefused as e:
            raise ProtocolError(errors.SIGN_IN_REQUIRED, str(e)) from None

    def _check_guest(self, session: Session, message: dict[str, Any]) -> str | None:
        """With ``CT_GUEST_AUTH=sso`` or a host that asked for it (``guestSignIn``), the
        signed-in name of a guest (``sign-in-required`` without a valid token); None
        when the session lets guests in with the link alone."""
        if not (self.config.guest_auth or session.guests_sign_in):
            return None
        config = self.config.guest_tokens
        if config is None:  # not reached: hosting with guestSignIn is refused then
            raise ProtocolError(errors.SIGN_IN_REQUIRED, "guests must sign in, but this edge "
                                "cannot check sign-ins (CT_HOST_TOKEN_SECRET)")
        try:
            identity = hosttoken.verify(message.get("hostToken"), config, self.clock.seconds())
        except hosttoken.HostTokenRefused as e:
            raise ProtocolError(errors.SIGN_IN_REQUIRED,
                                f"this session's guests sign in: {e}") from None
        return identity.name

    def _check_host(self, message: dict[str, Any]) -> str | None:
        """Policies applied before hosting; returns the signed-in name to show, if any."""
        identity = self.signed_in(message)
        if message.get("guestSignIn") is True and self.config.guest_tokens is None:
            raise ProtocolError(errors.SIGN_IN_REQUIRED, "guests cannot be asked to sign in "
                                "on this edge: it has no single sign-on (CT_HOST_TOKEN_SECRET)")
        team = message.get("team")
        if team is not None:
            token = field_str(message, "teamToken", MAX_TOKEN)
            if not self.team_secret:
                raise ProtocolError(errors.PRESENCE_DISABLED, "team sessions need team presence, "
                                    "which is not configured on this edge (CT_TEAM_SECRET)")
            if not check_team_token(self.team_secret, team, token):
                raise ProtocolError(errors.FORBIDDEN, f"wrong token for team {team!r}")
        minimum = self.config.min_client_version
        if minimum:
            version = message.get("clientVersion")
            if not isinstance(version, str) or _version_tuple(version) < _version_tuple(minimum):
                raise ProtocolError(errors.CLIENT_TOO_OLD, f"hosting needs client version "
                                    f"{minimum} or newer (got {version!r})")
        return identity.name if identity is not None else None

    # -- events: audit trail and presence

    def _on_relay_event(self, kind: str, session: Session, p: Participant | None,
                        reason: str | None) -> None:
        if session.internal:
            return
        if kind in ("participant-away", "participant-back"):
            _log.info("{kind}: {name} (#{pid}) in session {sid}", kind=kind, name=p.name,
                      pid=p.id, sid=session.id)
            return
        details: dict[str, Any] = {}
        if kind == "session-started":
            details = {"team": session.team, "client": session.host_client,
                       "title": session.title}
            _audit_log.info("session created: {sid} by {user} ({client})", sid=session.id,
                            user=p.name, client=session.host_client or "unknown client")
        elif kind == "participant-joined":
            details = {"client": p.client, "participant": p.id}
            _audit_log.info("participant joined: {user} (#{pid}) in session {sid}",
                            user=p.name, pid=p.id, sid=session.id)
        elif kind == "participant-left":
            details = {"reason": reason, "participant": p.id}
            _audit_log.info("participant left: {user} (#{pid}) from session {sid} ({reason})",
                            user=p.name, pid=p.id, sid=session.id, reason=reason)
        elif kind == "session-ended":
            details = {"reason": reason, "frames": session.frames,
                       "duration": round(self.clock.seconds() - session.created_at, 3)}
            _audit_log.info("session ended: {sid} ({reason})", sid=session.id, reason=reason)
        entry = AuditRecord(id=uuid.uuid4().hex, time=self.clock.seconds(), edge=self.edge_id,
                            kind=kind.replace("-", "_"), session=session.id,
                            user=p.name if p else None, details=details).to_json()
        for sink in self.audit_sinks:
            sink(entry)
        if session.team:
            if kind == "session-started":
                self.presence.session_started(session.team, session.summary())
            elif kind == "session-ended":
                self.presence.session_ended(session.team, session.id, reason)
            else:
                self.presence.session_updated(session.team, session.summary())

    # -- numbers for health, metrics and the locator

    def snapshot(self) -> dict[str, Any]:
        relay = self.relay
        stats = relay.stats
        in_sessions = relay.users()
        return {
            "edge": self.edge_id,
            "region": self.config.region,
            "version": __version__,
            "sessions": len(relay.sessions),
            "people": relay.people,
            "connections": relay.connected,
            "presence_connections": self.presence.connections(),
            "users_online": len(in_sessions) + self.presence.online_users(),
            "users_in_sessions": len(in_sessions),
            "lag_ms": round(self.lag.lag_ms, 3),
            "cpu": self.cpu.fraction,
            "sessions_hosted_total": stats.sessions_hosted,
            "frames_in_total": stats.frames_in,
            "deliveries_total": stats.deliveries,
            "bytes_in_total": stats.bytes_in,
            "bytes_out_total": stats.bytes_out,
            "resumes_total": stats.resumes,
            "resumes_unrecovered_total": stats.resumes_unrecovered,
            "errors": dict(stats.errors),
            "max_people": relay.limits.max_people,
            **self.av_counts(),
        }

    def av_counts(self) -> dict[str, int]:
        """The calls now (``ct.edge.av``; zeros when A/V is off), as the metric snapshot
        carries them to the locator and the lone edge's history keeps them."""
        if self.av_reports is None:
            return {"av_participants": 0, "av_calls": 0, "av_relayed": 0, "av_direct": 0}
        av = self.av_reports.snapshot()
        return {"av_participants": av["participants_in_calls"], "av_calls": av["calls"],
                "av_relayed": av["peer_connections"]["relayed"],
                "av_direct": av["peer_connections"]["direct"]}

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body) for ``/health``: the relay path must work, the reactor keep up.

        A degraded check (the outbox cannot write its file) keeps the answer 200 with
        ``"status": "degraded"``: sessions still work, but the operator must act."""
        body = {"status": "ok", "role": "edge", "version": __version__, "edge": self.edge_id,
                "uptime": round(self.clock.seconds() - self.started_at, 3),
                "sessions": len(self.relay.sessions), "connections": self.relay.connected,
                "lag_ms": round(self.lag.lag_ms, 3), "checks": {}}
        healthy = True
        if self.lag.max_lag_ms > 2000:
            healthy = False
            body["checks"]["reactor"] = f"timers late by up to {self.lag.max_lag_ms:.0f} ms"
        else:
            body["checks"]["reactor"] = "ok"
        if self.probe is not None:
            ok, detail = self.probe.status()
            body["checks"]["relay"] = detail
            healthy = healthy and ok
        degraded = False
        if self.outbox is not None:
            ok, detail = self.outbox.health()
            body["checks"]["outbox"] = detail
            degraded = not ok
        if self.draining is not None:  # still healthy: its sessions go on until then
            body["draining"] = {"until": self.draining.until}
        if not healthy:
            body["status"] = "failing"
        elif degraded:
            body["status"] = "degraded"
        return healthy, body

    def usage_line(self) -> None:
        snap = self.snapshot()
        _log.info("usage: {online} users online, {insession} users in {sessions} sessions, "
                  "{conns} session connections", online=snap["users_online"],
                  insession=snap["users_in_sessions"], sessions=snap["sessions"],
                  conns=snap["connections"])
