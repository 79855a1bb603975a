"""ICE server entries (WebRTC ``RTCIceServer`` dicts) with fresh TURN REST API credentials.

The same credentials work against the bundled relay and against an external coturn
configured with ``use-auth-secret`` and the same ``static-auth-secret``. Their user part
names one participant of one session (``<session>.<participant>``), so the bundled relay
can revoke them when the participant leaves or the session ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ct.turn.auth import rest_credentials


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def ice_servers(host: str, secret: str, user: str, ttl: float, now: float, *,
                udp_port: int | None = 3478, tcp_port: int | None = 3478,
                tls_port: int | None = None, stun: bool = True) -> list[dict]:
    """``[{"urls": [...]}, {"urls": [...], "username": ..., "credential": ...}]``.

    ``stun:`` comes first (no credentials); then ``turn:`` over UDP and TCP and
    ``turns:`` over TLS for the ports given (None leaves a transport out).
    """
    h = _host(host)
    servers = []
    if stun and (udp_port or tcp_port):
        servers.append({"urls": [f"stun:{h}:{udp_port or tcp_port}"]})
    urls = []
    if udp_port:
        urls.append(f"turn:{h}:{udp_port}?transport=udp")
    if tcp_port:
        urls.append(f"turn:{h}:{tcp_port}?transport=tcp")
    if tls_port:
        urls.append(f"turns:{h}:{tls_port}?transport=tcp")
    if urls:
        username, password = rest_credentials(secret, user, ttl, now)
        servers.append({"urls": urls, "username": username, "credential": password})
    return servers


@dataclass(frozen=True, slots=True)
class IceServerConfig:
    """The TURN server an edge hands its participants (built by ``tap.py``)."""

    host: str
    secret: str  # signs the REST API credentials
    ttl: float  # seconds the credentials stay valid for new allocations
    udp_port: int | None = 3478
    tcp_port: int | None = 3478
    tls_port: int | None = None

    def servers_for(self, user: str, now: float) -> list[dict]:
        """ICE servers with fresh credentials of ``user``."""
        return ice_servers(self.host, self.secret, user, self.ttl, now,
                           udp_port=self.udp_port, tcp_port=self.tcp_port,
                           tls_port=self.tls_port)


def participant_user(session_id: str, participant_id: int) -> str:
    """The REST API user of one participant: ``<session>.<participant>``."""
    return f"{session_id}.{participant_id}"


def revoke_on_departure(turn_server: Any, ttl: float, seconds: Callable[[], float]) -> Callable:
    """An edge relay listener revoking a session's or a departed participant's credentials
    (and deleting their allocations) on the bundled relay ``turn_server``."""

    def on_relay_event(kind: str, session: Any, participant: Any, reason: Any) -> None:
        if kind == "session-ended":
            turn_server.revoke(session.id, seconds() + ttl)
        elif kind == "participant-left" and participant is not None:
            turn_server.revoke(participant_user(session.id, participant.id), seconds() + ttl)

    return on_relay_event
