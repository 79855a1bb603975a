"""Outbound HTTP proxy (``CT_PROXY``, ``NO_PROXY``): which calls go through it, and how.

Every outbound HTTP(S) connection a server opens (the edge's link to the locator, the
locator's ``/health`` probes of edges, the locators' latency pings of each other, the
dashboard's calls to the OpenID provider) asks :class:`OutboundProxy` for its endpoint.
Through the proxy, the connection is an HTTP ``CONNECT`` tunnel (:class:`TunnelEndpoint`),
whatever the scheme: websockets and TLS run inside it end to end, the proxy sees only the
host and port. ``NO_PROXY`` rules (:class:`NoProxy`) name the destinations reached directly.

Parsing is pure; the endpoint is a thin adapter. Credentials in the proxy URL are sent as
``Proxy-Authorization: Basic`` and never shown: :class:`ProxyURL` prints them masked.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

MAX_PROXY_ANSWER = 16 * 1024  # status line and headers of the proxy's answer to CONNECT
DEFAULT_PROXY_PORT = 3128
_HOST_RULE = re.compile(r"^\.?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


class ProxySettingError(ValueError):
    """A ``CT_PROXY`` or ``NO_PROXY`` value that does not parse; the message says why."""


class ProxyError(ConnectionError):
    """The proxy could not be reached or refused the tunnel; the message is one log line."""


@dataclass(frozen=True)
class ProxyURL:
    """``http://[user:password@]host[:port]``; printed with the password masked."""

    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def masked(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = f"{self.user}:****@" if self.user is not None else ""
        return f"http://{auth}{host}:{self.port}"

    __str__ = masked

    def __repr__(self) -> str:
        return repr(self.masked())

    def authorization(self) -> bytes | None:
        """The ``Proxy-Authorization`` header value, or None without credentials."""
        if self.user is None:
            return None
        pair = f"{self.user}:{self.password or ''}".encode()
        return b"Basic " + base64.b64encode(pair)


def parse_proxy(raw: str) -> ProxyURL | None:
    """``CT_PROXY``: an ``http://`` proxy URL, or empty/``none`` for no proxy."""
    value = raw.strip()
    if value.lower() in ("", "none"):
        return None
    if "://" not in value:
        value = "http://" + value  # host:port, as curl takes it
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ProxySettingError("bad port in the proxy URL") from None
    if parts.scheme != "http":
        raise ProxySettingError(f"only http:// proxies are supported (got {parts.scheme}://); "
                                "the tunnel to https and wss servers is encrypted end to end "
                                "all the same")
    if not parts.hostname:
        raise ProxySettingError("expected a URL such as http://proxy.example.com:3128")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxySettingError("the proxy URL takes no path or query, only "
                                "http://[user:password@]host:port")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyURL(parts.hostname, port or DEFAULT_PROXY_PORT, user, password)


# ------------------------------------------------------------------ NO_PROXY


@dataclass(frozen=True)
class NoProxy:
    """``NO_PROXY`` rules: ``*``, host names (a name also matches its subdomains, a leading
    dot is optional), IP addresses and CIDR networks, each optionally with ``:port``.
    Names are compared as written, never resolved."""

    everything: bool = False
    names: tuple[tuple[str, int | None], ...] = ()
    networks: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None], ...] = ()
    text: str = field(default="", compare=False)  # as configured, for the start-up log

    def __repr__(self) -> str:
        return repr(self.text)

    def bypass(self, host: str, port: int | None = None) -> bool:
        """True when ``host:port`` is reached directly, not through the proxy."""
        if self.everything:
            return True
        host = host.strip("[]").rstrip(".").lower()
        address = _address(host)
        if address is not None:
            return any(address in net and rule_port in (None, port)
                       for net, rule_port in self.networks
                       if net.version == address.version)
        return any((host == name or host.endswith("." + name)) and rule_port in (None, port)
                   for name, rule_port in self.names)


def _address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, ``10.0.0.0/8`` or a bare IPv6 address."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ProxySettingError(f"NO_PROXY entry {entry!r} is not host[:port]")
        return host, _port(entry, rest[1:]) if rest else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(entry, port)
    return entry, None  # no port, or a bare IPv6 address / network


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ProxySettingError(f"NO_PROXY entry {entry!r} has a bad port")
    return int(text)


def parse_no_proxy(raw: str) -> NoProxy:
    """Comma- (or space-) separated ``NO_PROXY`` rules; a malformed one is an error."""
    entries = [e for e in re.split(r"[,\s]+", raw.strip()) if e]
    names, networks = [], []
    for entry in entries:
        if entry == "*":
            return NoProxy(everything=True, text=raw.strip())
        host, port = _split_port(entry)
        if "/" in host or _address(host) is not None:
            try:
                networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                raise ProxySettingError(f"NO_PROXY entry {entry!r} is not a valid address or "
                                        "CIDR network") from None
        elif _HOST_RULE.match(host):
            names.append((host.lstrip(".").rstrip(".").lower(), port))
        else:
            raise ProxySettingError(f"NO_PROXY entry {entry!r} is not a host name, domain, "
                                    "address or CIDR network")
    return NoProxy(names=tuple(names), networks=tuple(networks), text=",".join(entries))


# ------------------------------------------------------------------ endpoints


@dataclass(frozen=True)
class OutboundProxy:
    """``CT_PROXY`` with its ``NO_PROXY`` rules: the endpoint for each destination."""

    proxy: ProxyURL | None = None
    no_proxy: NoProxy = NoProxy()

    def proxy_for(self, host: str, port: int) -> ProxyURL | None:
        """The proxy to go through to ``host:port``, or None to connect directly."""
        if self.proxy is None or self.no_proxy.bypass(host, port):
            return None
        return self.proxy

    def endpoint(self, reactor, host: str, port: int, timeout: float = 10.0):
        """A TCP client endpoint to ``host:port``: a ``CONNECT`` tunnel or direct."""
        proxy = self.proxy_for(host, port)
        if proxy is None:
            return HostnameEndpoint(reactor, host, port, timeout=timeout)
        return TunnelEndpoint(reactor, proxy, host, port, timeout)


def connect_request(host: str, port: int, proxy: ProxyURL) -> bytes:
    """The ``CONNECT`` request for ``host:port`` (pure)."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1".encode(), f"Host: {target}".encode()]
    authorization = proxy.authorization()
    if authorization is not None:
        lines.append(b"Proxy-Authorization: " + authorization)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse_connect_answer(head: bytes) -> tuple[int, str]:
    """(status, reason) of the proxy's answer head (status line and headers)."""
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    match = re.match(r"^HTTP/1\.[01] (\d{3})(?: (.*))?$", status_line)
    if match is None:
        raise ProxyError(f"the proxy answered CONNECT with {status_line[:80]!r}, not HTTP")
    return int(match.group(1)), (match.group(2) or "").strip()[:80]


class _TunnelProtocol(Protocol):
    """Asks the proxy for the tunnel; once granted, hands the connection to the real
    protocol and forwards everything to it."""

    def __init__(self, endpoint: TunnelEndpoint, factory, ready: defer.Deferred):
        self.endpoint = endpoint
        self.wrapped_factory = factory  # (``factory`` is set by our own Factory)
        self.ready = ready
        self.inner = None
        self._head = b""

    def connectionMade(self):
        e = self.endpoint
        self.transport.write(connect_request(e.host, e.port, e.proxy))

    def dataReceived(self, data):
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_PROXY_ANSWER:
                self._refuse(ProxyError(f"the proxy {self.endpoint.proxy} sent an answer "
                                        "too long for CONNECT"))
            return
        head, rest = self._head[:end], self._head[end + 4:]
        self._head = b""
        try:
            status, reason = parse_connect_answer(head)
        except ProxyError as e:
            self._refuse(e)
            return
        if status != 200:
            hint = " (check the user and password in CT_PROXY)" if status == 407 else ""
            self._refuse(ProxyError(
                f"the proxy {self.endpoint.proxy} refused CONNECT "
                f"{self.endpoint.host}:{self.endpoint.port}: {status} {reason}{hint}"))
            return
        inner = self.wrapped_factory.buildProtocol(self.transport.getPeer())
        if inner is None:
            self._refuse(error.ConnectError("the factory built no protocol"))
            return
        ready, self.ready = self.ready, None
        self.inner = inner
        inner.makeConnection(self.transport)
        if ready is not None and not ready.called:
            ready.callback(inner)
        if rest:
            inner.dataReceived(rest)

    def _refuse(self, reason: Exception) -> None:
        """Give up on the tunnel (not once it is granted: then it belongs to ``inner``)."""
        if self.inner is None:
            self.transport.abortConnection()
            self._fail(reason)

    def _fail(self, reason: Exception) -> None:
        ready, self.ready = self.ready, None
        if ready is not None and not ready.called:
            ready.errback(reason)

    def connectionLost(self, reason):
        if self.inner is not None:
            self.inner.connectionLost(reason)
        else:
            self._fail(ProxyError(f"the proxy {self.endpoint.proxy} closed the connection "
                                  "before answering CONNECT"))


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """A client endpoint to ``host:port`` through an HTTP proxy's ``CONNECT`` tunnel."""

    def __init__(self, reactor, proxy: ProxyURL, host: str, port: int, timeout: float = 10.0):
        self.reactor = reactor
        self.proxy = proxy
        self.host = host
        self.port = port
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<TunnelEndpoint {self.host}:{self.port} via {self.proxy}>"

    def connect(self, factory) -> defer.Deferred:
        tunnel: list[_TunnelProtocol] = []

        def cancel(_):
            if tunnel:
                tunnel[0].transport.abortConnection()
            else:
                connecting.cancel()

        ready: defer.Deferred = defer.Deferred(cancel)
        to_proxy = HostnameEndpoint(self.reactor, self.proxy.host, self.proxy.port,
                                    timeout=self.timeout)
        connecting = to_proxy.connect(
            Factory.forProtocol(lambda: _TunnelProtocol(self, factory, ready)))

        def unreachable(failure):
            if not ready.called:
                ready.errback(ProxyError(f"cannot reach the proxy {self.proxy}: "
                                         f"{failure.getErrorMessage()}"))

        def connected(protocol):
            tunnel.append(protocol)
            # The CONNECT exchange gets the same time limit as the TCP connect.
            call = self.reactor.callLater(self.timeout, protocol._refuse, ProxyError(
                f"the proxy {self.proxy} did not answer CONNECT within {self.timeout:g} s"))

            def stop_timer(result):
                if call.active():
                    call.cancel()
                return result

            ready.addBoth(stop_timer)

        connecting.addCallbacks(connected, unreachable)
        return ready
