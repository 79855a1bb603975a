"""``twistd -n ctturn``: the standalone STUN/TURN relay; also embedded by ``twistd ctedge``."""

from __future__ import annotations

import secrets
import socket
from typing import Any, MutableMapping

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger
from twisted.python import usage

from ct.settings import settings_for
from ct.common.settings import describe, make_options
from ct.turn import auth
from ct.turn.policy import PeerPolicy
from ct.turn.server import TurnConfig, TurnServer, TurnStreamFactory, UdpServerSocket
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

    def __init__(self, reactor, server: TurnServer, host: str, port: int):
        self.reactor = reactor
        self.server = server
        self.host = host
        self.port = port
        self.listening = None

    def startService(self):
        super().startService()
        self.listening = UdpServerSocket(self.reactor, self.server, self.host, self.port)

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
    return ssl.PrivateCertificate.loadPEM(pem).options()


def _stream_endpoint(reactor, host: str, port: int, tls=None):
    if tls is not None:
        return SSL4ServerEndpoint(reactor, port, tls, interface=host)
    if ":" in host:
        return TCP6ServerEndpoint(reactor, port, interface=host)
    return TCP4ServerEndpoint(reactor, port, interface=host)


def make_turn_service(values: MutableMapping[str, Any], reactor) -> IService:
    """The relay as one service, from parsed settings (``ctturn`` or ``ctedge`` values).

    When neither CT_TURN_SECRET nor CT_TURN_USERS is set, a random secret is generated and
    stored in ``values["turn_secret"]`` so the embedding edge mints matching credentials.
    The :class:`TurnServer` is available as ``service.turn_server`` (stats: ``.stats``).
    """
    secret = values.get("turn_secret")
    users = dict(values.get("turn_users") or ())
    if not secret:
        secret = secrets.token_urlsafe(32)
        values["turn_secret"] = secret
        _log.info("turn: no CT_TURN_SECRET set; generated one for this process")
    relay_host = values.get("turn_relay_address") or "0.0.0.0"
    external = values.get("turn_external_address")
    if not external and relay_host in ("0.0.0.0", "::"):
        external = _host_address()
        _log.warn("turn: CT_TURN_EXTERNAL_ADDRESS unset; announcing relayed addresses on "
                  "{address}", address=external)
    alternate = values.get("turn_alternate_server")
    config = TurnConfig(
        realm=values.get("turn_realm") or "ct",
        relay_host=relay_host,
        external_host=external,
        relay_ports=tuple(values.get("turn_relay_ports") or (49152, 65535)),
        max_allocations=values.get("turn_max_allocations", 1000),
        user_quota=values.get("turn_user_quota", 10),
        bandwidth=values.get("turn_bandwidth", 1024 * 1024),
        alternate_server=split_host_port(alternate, 3478) if alternate else None,
        hold=values.get("turn_batch_delay", 1.0) / 1000.0,
        socket_buffer=values.get("turn_socket_buffer") or 4 * 1024 * 1024,
        relay_socket_buffer=values.get("turn_relay_socket_buffer") or 0,
        unauthenticated_rate=values.get("turn_unauthenticated_rate", 20.0),
        max_connections=values.get("turn_max_connections", 2000),
        idle_timeout=values.get("turn_tcp_idle_timeout", 60.0),
    )
    credentials = auth.Credentials(config.realm, users, secret)
    policy = PeerPolicy(allowed=values.get("turn_allow_peers") or (),
                        own=(relay_host, external))
    server = TurnServer(config, credentials, policy, reactor)

    service = MultiService()
    service.setName("turn")
    service.turn_server = server
    TurnServerService(server).setServiceParent(service)
    listening = []
    udp = values.get("turn_listen_udp")
    if udp:
        host, port = split_host_port(udp, 3478)
        UdpListenerService(reactor, server, host.strip("[]"), port).setServiceParent(service)
        listening.append(f"udp {udp}")
    tcp = values.get("turn_listen_tcp")
    factory = TurnStreamFactory(server)
    if tcp:
        host, port = split_host_port(tcp, 3478)
        StreamServerEndpointService(_stream_endpoint(reactor, host.strip("[]"), port),
                                    factory).setServiceParent(service)
        listening.append(f"tcp {tcp}")
    cert = values.get("turn_tls_cert") or values.get("tls_cert")
    key = values.get("turn_tls_key") or values.get("tls_key")
    tls = values.get("turn_listen_tls")
    if tls and cert and key:
        host, port = split_host_port(tls, 5349)
        StreamServerEndpointService(
            _stream_endpoint(reactor, host.strip("[]"), port, _tls_context(cert, key)),
            factory).setServiceParent(service)
        listening.append(f"tls {tls}")
    _log.info("turn: STUN/TURN relay on {listening}; relay ports {low}-{high} on {relay} "
              "announced as {external}; realm {realm}",
              listening=", ".join(listening) or "nothing", low=config.relay_ports[0],
              high=config.relay_ports[1], relay=relay_host,
              external=server.advertised_host, realm=config.realm)
    return service


def makeService(options: usage.Options, reactor=None) -> IService:
    if reactor is None:
        from twisted.internet import reactor
    values = dict(options)
    for line in describe(values, Options.settings):
        _log.info("turn: setting {line}", line=line)
    return make_turn_service(values, reactor)

