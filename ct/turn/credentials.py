"""ICE server entries (WebRTC ``RTCIceServer`` dicts) with fresh TURN REST API credentials.

The same credentials work against the bundled relay and against an external coturn
configured with ``use-auth-secret`` and the same ``static-auth-secret``. Their user part
names one participant of one session (``<session>.<participant>``), so the bundled relay
can revoke them when the participant leaves or the session ends.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from ct.turn.auth import rest_credentials
from ct.turn.settings import split_host_port


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


def _port(listen: str | None) -> int | None:
    if not listen:
        return None
    return split_host_port(listen, None)[1]


def edge_ice_servers(values: Mapping[str, Any], user: str, now: float) -> list[dict]:
    """ICE servers an edge hands a participant, from the edge's parsed settings.

    Nothing unless ``CT_AV_ENABLED``; an external coturn (``CT_AV_COTURN_SERVER`` and
    ``CT_AV_COTURN_SECRET``) wins over the bundled relay (``CT_TURN_ENABLED``).
    """
    if not values.get("av_enabled"):
        return []
    ttl = values.get("turn_credential_ttl", 600.0)
    external = values.get("av_coturn_server")
    if external:
        secret = values.get("av_coturn_secret")
        if not secret:
            return []
        host, port = split_host_port(external, 3478)
        return ice_servers(host, secret, user, ttl, now, udp_port=port, tcp_port=port)
    if not values.get("turn_enabled") or not values.get("turn_secret"):
        return []
    host = values.get("turn_host")
    if not host and values.get("server_url"):
        host = urlsplit(values["server_url"]).hostname
    host = host or values.get("turn_external_address")
    if not host:
        return []
    tls = values.get("turn_tls_cert") or values.get("tls_cert")
    return ice_servers(host, values["turn_secret"], user, ttl, now,
                       udp_port=_port(values.get("turn_listen_udp")),
                       tcp_port=_port(values.get("turn_listen_tcp")),
                       tls_port=_port(values.get("turn_listen_tls")) if tls else None)
