"""Settings of the TURN/STUN relay (``CT_TURN_*``) and of the edge's A/V (``CT_AV_*``)."""

from __future__ import annotations

from ct.common.settings import (
    Setting,
    SettingError,
    parse_bool,
    parse_cidr_list,
    parse_existing_file,
    parse_float,
    parse_int,
    parse_list,
    parse_optional_str,
    parse_size,
    parse_str,
)

TURN = frozenset({"turn"})
TURN_AND_EDGE = frozenset({"turn", "edge"})
EDGE = frozenset({"edge"})


def parse_listen(raw: str) -> str | None:
    """``3478``, ``127.0.0.1:3478``, ``[::]:3478`` or ``none``; returns ``host:port``."""
    value = raw.strip()
    if value.lower() in ("", "none", "off"):
        return None
    host, port = split_host_port(value, None)
    if port is None:
        raise SettingError(f"expected a port or host:port, got {raw!r}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(value: str, default_port: int | None) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare port into ``(host, port)``."""
    value = value.strip()
    if value.isdigit():
        host, port = "0.0.0.0", value
    elif value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, None
    if not host:
        raise SettingError(f"no host in {value!r}")
    if port is None:
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingError(f"bad port in {value!r}")
    return host, int(port)


def parse_port_range(raw: str) -> tuple[int, int]:
    low, sep, high = raw.strip().partition("-")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise SettingError(f"expected a port range such as 49152-65535, got {raw!r}") from None
    if not 1024 <= lo <= hi <= 65535:
        raise SettingError(f"port range must lie within 1024-65535 and be ordered, got {raw!r}")
    return lo, hi


def parse_users(raw: str) -> tuple[tuple[str, str], ...]:
    """``alice:pw1,bob:pw2`` into pairs (a password may contain ``:``)."""
    users = []
    for item in parse_list(raw):
        name, sep, password = item.partition(":")
        if not sep or not name or not password:
            raise SettingError("expected user:password pairs separated by commas")
        users.append((name, password))
    return tuple(users)


def parse_address(raw: str) -> str | None:
    import ipaddress

    value = raw.strip()
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise SettingError(f"expected an IP address, got {raw!r}") from None


def parse_host_port_optional(raw: str) -> str | None:
    value = raw.strip()
    if value.lower() in ("", "none"):
        return None
    split_host_port(value, 3478)
    return value


def parse_batch_delay(raw: str) -> float:
    """Milliseconds, between 0 and 20."""
    value = parse_float(0.0)(raw)
    if value > 20:
        raise SettingError(f"must be at most 20 (milliseconds), got {value}")
    return value


TURN_SETTINGS = [
    Setting("CT_TURN_ENABLED", "turn-enabled", False, parse_bool,
            "Run the bundled STUN/TURN relay inside the edge (`twistd ctturn` always runs it).",
            TURN_AND_EDGE),
    Setting("CT_TURN_LISTEN_UDP", "turn-listen-udp", "0.0.0.0:3478", parse_listen,
            "UDP address of the STUN/TURN listener: a port, host:port, or `none`.",
            TURN_AND_EDGE),
    Setting("CT_TURN_LISTEN_TCP", "turn-listen-tcp", "0.0.0.0:3478", parse_listen,
            "TCP address of the STUN/TURN listener: a port, host:port, or `none`.",
            TURN_AND_EDGE),
    Setting("CT_TURN_LISTEN_TLS", "turn-listen-tls", "0.0.0.0:5349", parse_listen,
            "TLS-over-TCP address (used only with a certificate): a port, host:port, or `none`.",
            TURN_AND_EDGE),
    Setting("CT_TURN_TLS_CERT", "turn-tls-cert", None, parse_existing_file,
            "PEM certificate (chain) for TURN over TLS (the edge falls back to CT_TLS_CERT).",
            TURN_AND_EDGE),
    Setting("CT_TURN_TLS_KEY", "turn-tls-key", None, parse_existing_file,
            "PEM private key for TURN over TLS (the edge falls back to CT_TLS_KEY).",
            TURN_AND_EDGE),
    Setting("CT_TURN_REALM", "turn-realm", "ct", parse_str,
            "Realm of the long-term credentials.", TURN_AND_EDGE),
    Setting("CT_TURN_SECRET", "turn-secret", None, parse_optional_str,
            "Shared secret of the TURN REST API credentials (coturn's static-auth-secret). "
            "Unset on an edge: a random one per process.", TURN_AND_EDGE, secret=True),
    Setting("CT_TURN_USERS", "turn-users", (), parse_users,
            "Static users as user:password pairs separated by commas.", TURN_AND_EDGE,
            secret=True),
    Setting("CT_TURN_RELAY_PORTS", "turn-relay-ports", (49152, 65535), parse_port_range,
            "UDP port range of relay sockets, e.g. 49152-65535.", TURN_AND_EDGE),
    Setting("CT_TURN_RELAY_ADDRESS", "turn-relay-address", "0.0.0.0", parse_address,
            "Local IP address relay sockets bind to.", TURN_AND_EDGE),
    Setting("CT_TURN_EXTERNAL_ADDRESS", "turn-external-address", None, parse_address,
            "Public IP address announced as the relayed address (behind NAT: the public one). "
            "Unset: the relay address, or this host's address if that is a wildcard.",
            TURN_AND_EDGE),
    Setting("CT_TURN_ALLOW_PEERS", "turn-allow-peers", (), parse_cidr_list,
            "CIDRs of peers allowed despite the default deny list (loopback, private, "
            "link-local, multicast, unspecified, NAT64/6to4/Teredo/IPv4-compatible, the "
            "relay's own addresses), e.g. 10.0.0.0/8; an IPv4 address inside an IPv6 peer "
            "is checked too.", TURN_AND_EDGE),
    Setting("CT_TURN_MAX_ALLOCATIONS", "turn-max-allocations", 1000, parse_int(0),
            "Cap on allocations of the relay (0: no cap); beyond it 486.", TURN_AND_EDGE),
    Setting("CT_TURN_USER_QUOTA", "turn-user-quota", 10, parse_int(0),
            "Allocations one user may hold at once (0: no quota); beyond it 486. With REST "
            "API credentials the user is the part after the expiry (one participant), "
            "whatever credential of it is used.", TURN_AND_EDGE),
    Setting("CT_TURN_BANDWIDTH", "turn-bandwidth", 1024 * 1024, parse_size(0),
            "Bytes per second one allocation may relay, both directions together (0: no "
            "limit), e.g. 256k; excess packets are dropped.", TURN_AND_EDGE),
    Setting("CT_TURN_UNAUTHENTICATED_RATE", "turn-unauthenticated-rate", 20.0, parse_float(0.0),
            "UDP requests per second (bursts of twice that) answered to one source IP that "
            "holds no allocation: Binding, 401/438 challenges, errors before sign-in. A "
            "spoofed request makes the relay answer someone else; beyond this rate it stays "
            "silent. 0: no limit.", TURN_AND_EDGE),
    Setting("CT_TURN_MAX_CONNECTIONS", "turn-max-connections", 2000, parse_int(0),
            "TCP and TLS client connections the relay holds at once (0: no cap); beyond it "
            "new connections are closed at once.", TURN_AND_EDGE),
    Setting("CT_TURN_TCP_IDLE_TIMEOUT", "turn-tcp-idle-timeout", 60.0, parse_float(0.0),
            "Seconds a TCP/TLS client connection without an allocation may stay silent "
            "before the relay closes it (0: never).", TURN_AND_EDGE),
    Setting("CT_TURN_ALTERNATE_SERVER", "turn-alternate-server", None, parse_host_port_optional,
            "IP:port answered to Allocate requests as ALTERNATE-SERVER (300), e.g. while "
            "draining this relay.", TURN_AND_EDGE),
    Setting("CT_TURN_BATCH_DELAY", "turn-batch-delay", 1.0, parse_batch_delay,
            "Milliseconds a relay measured busy (16 ready sockets in one wake-up) may hold "
            "datagrams to relay them in batches; a quiet relay forwards every datagram at "
            "once. 0: never hold.",
            TURN_AND_EDGE),
    Setting("CT_TURN_SOCKET_BUFFER", "turn-socket-buffer", 4 * 1024 * 1024, parse_size(65536),
            "Receive and send buffer of the UDP listener (every client's packets queue there "
            "while the relay is busy), e.g. 4m; the kernel caps it at net.core.rmem_max "
            "unless the process has CAP_NET_ADMIN.", TURN_AND_EDGE),
    Setting("CT_TURN_RELAY_SOCKET_BUFFER", "turn-relay-socket-buffer", 0, parse_size(0),
            "Receive buffer of each relay socket (0: the system default, about 200 KB), "
            "e.g. 1m for bursty video.", TURN_AND_EDGE),
    Setting("CT_TURN_FAST_PATH", "turn-fast-path", True, parse_bool,
            "Relay UDP data (ChannelData, Send and Data indications) through the compiled "
            "fast path (recvmmsg/sendmmsg) when it is built; false: the Python data path. "
            "The rules are the same either way.", TURN_AND_EDGE),
    Setting("CT_TURN_HOST", "turn-host", None, parse_optional_str,
            "Host name or IP in the ICE server URLs handed to participants (unset: the host "
            "of CT_SERVER_URL, else CT_TURN_EXTERNAL_ADDRESS).", EDGE),
    Setting("CT_TURN_CREDENTIAL_TTL", "turn-credential-ttl", 600.0, parse_float(60.0),
            "Seconds the TURN credentials handed to participants stay valid for new "
            "allocations; the edge hands fresh ones at every join and resume and every half "
            "of this while connected. The bundled relay also revokes them when the session "
            "ends or the participant leaves; an external coturn only sees the expiry.", EDGE),
    Setting("CT_AV_ENABLED", "av-enabled", False, parse_bool,
            "Enable audio/video: participants get ICE servers (STUN/TURN) with credentials.",
            EDGE),
    Setting("CT_AV_COTURN_SERVER", "av-coturn-server", None, parse_host_port_optional,
            "External TURN server (host or host:port, default port 3478) used instead of "
            "the bundled relay.", EDGE),
    Setting("CT_AV_COTURN_SECRET", "av-coturn-secret", None, parse_optional_str,
            "Shared secret of the external TURN server (coturn `static-auth-secret`).", EDGE,
            secret=True),
]
