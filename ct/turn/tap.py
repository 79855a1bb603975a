"""``twistd -n ctturn``: the standalone STUN/TURN relay; also embedded by ``twistd ctedge``."""

from __future__ import annotations

import secrets
import socket
from typing import Any, Mapping
from urllib.parse import urlsplit

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger
from twisted.python import usage

from ct.settings import settings_for
from ct.common.settings import describe, make_options
from ct.turn import auth
from ct.turn.credentials import IceServerConfig
from ct.turn.datapath import DataPath
from ct.turn.metrics import TurnStats
from ct.turn.policy import PeerPolicy
from ct.turn.server import TurnConfig, TurnServer
from ct.turn.sockets import FAST_PATH, UdpServerSocket, UdpSockets
from ct.turn.stream import TurnStreamFactory, select_alpn, tls_factory
from ct.turn.settings import split_host_port

_log = Logger()

_SettingsOptions = make_options(
    settings_for("turn"), "[options]",
    "STUN/TURN relay (RFC 8489/8656) for audio/video fallback; settings also come from "
    "CT_TURN_* environment variables.")


class Options(_SettingsOptions):
    """``ctturn`` options: every ``CT_TURN_*`` setting, and credentials required."""

    def postOptions(self):
        super().postOptions()
        if not self.get("turn_secret") and not self.get("turn_users"):
            # Raised here, not in makeService, so twistd prints one line, not a traceback.
            self._failed = True
            raise usage.UsageError(
                "set CT_TURN_SECRET (REST API shared secret) and/or CT_TURN_USERS: "
                "without credentials no allocation can succeed")


class UdpListenerService(Service):
    """Listens for STUN/TURN datagrams while running."""

    def __init__(self, server: TurnServer, host: str, port: int):
        self.server = server
        self.host = host
        self.port = port
        self.listening: UdpServerSocket | None = None

    def startService(self):
        super().startService()
        self.listening = UdpServerSocket(self.server, self.host, self.port)

    def stopService(self):
        super().stopService()
        if self.listening is not None:
            listening, self.listening = self.listening, None
            listening.close()


class TurnServerService(Service):
    """Starts the expiry sweep; frees every allocation on stop."""

    def __init__(self, server: TurnServer):
        self.server = server

    def startService(self):
        super().startService()
        self.server.start()

    def stopService(self):
        super().stopService()
        self.server.stop()


def _host_address() -> str:
    """This host's first non-loopback IPv4 address (for a wildcard relay address)."""
    try:
        for address in socket.gethostbyname_ex(socket.gethostname())[2]:
            if not address.startswith("127."):
                return address
    except OSError:
        pass
    return "127.0.0.1"


def _tls_context(cert: str, key: str):
    from twisted.internet import ssl

    with open(cert) as c, open(key) as k:
        pem = c.read() + "\n" + k.read()
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    options.getContext().set_alpn_select_callback(select_alpn)
    return options


def _stream_endpoint(reactor, host: str, port: int):
    if ":" in host:
        return TCP6ServerEndpoint(reactor, port, interface=host)
    return TCP4ServerEndpoint(reactor, port, interface=host)


class TurnService(MultiService):
    """The relay as one service: its :class:`TurnServer` and the secret of its REST API
    credentials (generated when none is configured)."""

    def __init__(self, turn_server: TurnServer, secret: str):
        super().__init__()
        self.setName("turn")
        self.turn_server = turn_server
        self.secret = secret


def turn_config(values: Mapping[str, Any]) -> TurnConfig:
    """The relay's configuration from parsed settings (``ctturn`` or ``ctedge`` values)."""
    relay_host = values["turn_relay_address"] or "0.0.0.0"  # an empty setting: the default
    external = values["turn_external_address"]
    if not external and relay_host in ("0.0.0.0", "::"):
        external = _host_address()
        _log.warn("turn: CT_TURN_EXTERNAL_ADDRESS unset; announcing relayed addresses on "
                  "{address}", address=external)
    alternate = values["turn_alternate_server"]
    return TurnConfig(
        realm=values["turn_realm"] or "ct",
        relay_host=relay_host,
        external_host=external,
        relay_ports=values["turn_relay_ports"],
        max_allocations=values["turn_max_allocations"],
        user_quota=values["turn_user_quota"],
        bandwidth=values["turn_bandwidth"],
        alternate_server=split_host_port(alternate, 3478) if alternate else None,
        hold=values["turn_batch_delay"] / 1000.0,
        socket_buffer=values["turn_socket_buffer"],
        relay_socket_buffer=values["turn_relay_socket_buffer"],
        fast_path=values["turn_fast_path"],
        unauthenticated_rate=values["turn_unauthenticated_rate"],
        max_connections=values["turn_max_connections"],
        idle_timeout=values["turn_tcp_idle_timeout"],
    )


def build_turn_server(config: TurnConfig, credentials: auth.Credentials, policy: PeerPolicy,
                      reactor) -> TurnServer:
    """A :class:`TurnServer` wired to real UDP sockets read through ``reactor``."""
    datapath = DataPath(TurnStats())
    sockets = UdpSockets(reactor, datapath, config.relay_host, config.relay_socket_buffer,
                         config.hold, config.fast_path)
    return TurnServer(config, credentials, policy, reactor, sockets, datapath)


def make_turn_service(values: Mapping[str, Any], reactor) -> TurnService:
    """The relay as one service, from parsed settings (``ctturn`` or ``ctedge`` values).

    When neither CT_TURN_SECRET nor CT_TURN_USERS is set, a random secret is generated;
    the embedding edge mints matching credentials with ``service.secret``.
    """
    secret = values["turn_secret"]
    if not secret:
        secret = secrets.token_urlsafe(32)
        _log.info("turn: no CT_TURN_SECRET set; generated one for this process")
    config = turn_config(values)
    credentials = auth.Credentials(config.realm, dict(values["turn_users"]), secret)
    policy = PeerPolicy(allowed=values["turn_allow_peers"],
                        own=(config.relay_host, config.external_host))
    server = build_turn_server(config, credentials, policy, reactor)

    service = TurnService(server, secret)
    TurnServerService(server).setServiceParent(service)
    listening = []
    udp = values["turn_listen_udp"]
    if udp:
        host, port = split_host_port(udp, 3478)
        UdpListenerService(server, host.strip("[]"), port).setServiceParent(service)
        listening.append(f"udp {udp}")
    tcp = values["turn_listen_tcp"]
    factory = TurnStreamFactory(server)
    if tcp:
        host, port = split_host_port(tcp, 3478)
        StreamServerEndpointService(_stream_endpoint(reactor, host.strip("[]"), port),
                                    factory).setServiceParent(service)
        listening.append(f"tcp {tcp}")
    cert, key = _tls_files(values)
    tls = values["turn_listen_tls"]
    if tls and cert and key:
        host, port = split_host_port(tls, 5349)
        StreamServerEndpointService(
            _stream_endpoint(reactor, host.strip("[]"), port),
            tls_factory(_tls_context(cert, key), factory)).setServiceParent(service)
        listening.append(f"tls {tls}")
    _log.info("turn: STUN/TURN relay on {listening}; relay ports {low}-{high} on {relay} "
              "announced as {external}; realm {realm}; UDP data path: {path}",
              listening=", ".join(listening) or "nothing", low=config.relay_ports[0],
              high=config.relay_ports[1], relay=config.relay_host,
              external=server.advertised_host, realm=config.realm,
              path=data_path_name(server, config))
    return service


def data_path_name(server: TurnServer, config: TurnConfig) -> str:
    """Which UDP data path the relay runs, for the log."""
    if getattr(server.sockets, "fast", None) is not None:
        return "compiled (recvmmsg/sendmmsg)"
    if not config.fast_path:
        return "Python (CT_TURN_FAST_PATH=false)"
    if FAST_PATH is None:
        return "Python (ct.turn._fastpath is not built)"
    return "Python"


def _tls_files(values: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """TURN's certificate and key; an edge falls back to its HTTPS ones."""
    return (values["turn_tls_cert"] or values.get("tls_cert"),
            values["turn_tls_key"] or values.get("tls_key"))


def ice_server_config(values: Mapping[str, Any],
                      turn_secret: str | None) -> IceServerConfig | None:
    """Where an edge's participants find a TURN server, from the edge's parsed settings;
    None when there is none (CT_AV_ENABLED unset, or no usable server).

    An external coturn (CT_AV_COTURN_SERVER and CT_AV_COTURN_SECRET) wins over the bundled
    relay (CT_TURN_ENABLED), whose ``turn_secret`` is that of its :class:`TurnService`.
    """
    if not values["av_enabled"]:
        return None
    ttl = values["turn_credential_ttl"]
    external = values["av_coturn_server"]
    if external:
        secret = values["av_coturn_secret"]
        if not secret:
            return None
        host, port = split_host_port(external, 3478)
        return IceServerConfig(host, secret, ttl, udp_port=port, tcp_port=port)
    if not values["turn_enabled"] or not turn_secret:
        return None
    host = values["turn_host"]
    if not host and values["server_url"]:
        host = urlsplit(values["server_url"]).hostname
    host = host or values["turn_external_address"]
    if not host:
        return None
    ports = (_port(values["turn_listen_udp"]), _port(values["turn_listen_tcp"]),
             _port(values["turn_listen_tls"]) if _tls_files(values)[0] else None)
    if not any(ports):
        return None
    return IceServerConfig(host, turn_secret, ttl, *ports)


def _port(listen: str | None) -> int | None:
    return split_host_port(listen, None)[1] if listen else None


def makeService(options: usage.Options, reactor=None) -> TurnService:
    if reactor is None:
        from twisted.internet import reactor
    values = dict(options)
    for line in describe(values, Options.settings):
        _log.info("turn: setting {line}", line=line)
    return make_turn_service(values, reactor)

