"""Listening on endpoint strings, with a start-up log line that names the real ports."""

from __future__ import annotations

import socket

import re
from dataclasses import dataclass

from twisted.application import service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

_log = Logger()


class StartupError(Exception):
    """Start-up cannot go on; the message says why and which setting to change."""


# TLS 1.2 suites allowed on HTTPS: forward-secret key exchange (ECDHE) with AEAD ciphers
# only; no RSA key exchange, no CBC. TLS 1.3 suites (all of them both) are OpenSSL's.
HTTPS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
_TLS_KEYS = ("privateKey", "certKey", "extraCertChain", "dhParameters", "sslmethod")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----",
                       re.DOTALL)


def _split_endpoint(description: str) -> list[str]:
    """The ``:``-separated fields of an endpoint string, ``\\`` escapes kept."""
    fields, current, escaped = [], "", False
    for char in description:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current + ("\\" if escaped else ""))
    return fields


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def tls_options(cert: str, key: str, chain: str | None = None):
    """Server TLS settings: TLS 1.2 or newer, :data:`HTTPS_CIPHERS`; ``cert`` may hold the
    whole chain (leaf first), ``chain`` more intermediate certificates."""
    from twisted.internet import ssl

    with open(cert, "rb") as f:
        certs = _PEM_CERT.findall(f.read())
    with open(key, "rb") as f:
        key_pem = f.read()
    if chain:
        with open(chain, "rb") as f:
            certs += _PEM_CERT.findall(f.read())
    if not certs:
        raise ValueError(f"no PEM certificate in {cert}")
    leaf = ssl.PrivateCertificate.loadPEM(certs[0] + b"\n" + key_pem)
    return ssl.CertificateOptions(
        privateKey=leaf.privateKey.original, certificate=leaf.original,
        extraCertChain=[ssl.Certificate.loadPEM(c).original for c in certs[1:]] or None,
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(HTTPS_CIPHERS),
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2)


class HTTPSEndpoint:
    """``CT_HTTPS_LISTEN`` with :func:`tls_options`: TLS over the plain listener the string
    names (``ssl:1443`` listens like ``tcp:1443``; ``tcp:``, ``systemd:`` work too).

    ``privateKey=``, ``certKey=`` and ``extraCertChain=`` in the string override
    ``CT_TLS_KEY``/``CT_TLS_CERT``; ``dhParameters=`` and ``sslmethod=`` are ignored (no
    finite-field DH; TLS 1.2 or newer always).
    """

    def __init__(self, reactor, description: str, cert: str, key: str):
        self.reactor = reactor
        self.description = description
        fields = _split_endpoint(description)
        given = {}
        plain = [("tcp" if fields[0] == "ssl" else fields[0])]
        for field in fields[1:]:
            name, sep, value = field.partition("=")
            if sep and name in _TLS_KEYS:
                given[name] = _unescape(value)
            else:
                plain.append(field)
        self.plain = ":".join(plain)
        self.options = tls_options(given.get("certKey") or given.get("privateKey") or cert,
                                   given.get("privateKey") or key,
                                   given.get("extraCertChain"))

    def __str__(self) -> str:
        return self.description

    def listen(self, factory):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return serverFromString(self.reactor, self.plain).listen(
            TLSMemoryBIOFactory(self.options, False, factory))


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """Where a server listens: ``CT_HTTP_LISTEN``; ``CT_HTTPS_LISTEN`` with ``CT_TLS_CERT``
    and ``CT_TLS_KEY``. An endpoint of None: not on that protocol."""

    http: str | None
    https: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


def server_listeners(reactor, config: ListenConfig, site) -> "ListenersService":
    """HTTP on ``config.http``; HTTPS on ``config.https`` when a certificate and key are set."""
    from twisted.python import usage

    listeners = []
    if config.http:
        listeners.append(("HTTP", "CT_HTTP_LISTEN", config.http, site))
    if config.tls_cert and config.tls_key and config.https:
        try:
            endpoint = HTTPSEndpoint(reactor, config.https, config.tls_cert, config.tls_key)
        except Exception as e:  # OpenSSL and PEM parsing raise many types
            raise usage.UsageError(f"HTTPS (CT_TLS_CERT, CT_TLS_KEY): {e}") from None
        listeners.append(("SSL", "CT_HTTPS_LISTEN", endpoint, site))
    elif config.tls_cert or config.tls_key:
        raise usage.UsageError("HTTPS needs both CT_TLS_CERT and CT_TLS_KEY")
    if not listeners:
        raise usage.UsageError("nothing to listen on: set CT_HTTP_LISTEN, or CT_TLS_CERT and "
                               "CT_TLS_KEY for HTTPS")
    return ListenersService(reactor, listeners)


class ListenersService(service.Service):
    """Listens on each ``(label, setting, endpoint, factory)``; logs the ports once all are up.

    An endpoint is a Twisted endpoint string or an object with ``listen(factory)`` (such as
    :class:`HTTPSEndpoint`) whose ``str()`` describes it.

    A port that cannot be opened stops start-up with a :class:`StartupError` naming the
    setting, because a server that silently lacks a port is worse than one that fails.
    """

    def __init__(self, reactor, listeners, what: str = "services"):
        self.reactor = reactor
        self.listeners = listeners  # [(label, setting name, endpoint, factory)]
        self.what = what
        self.ports = {}

    def startService(self):
        super().startService()
        parts = []
        for label, setting, description, factory in self.listeners:
            endpoint = (serverFromString(self.reactor, description)
                        if isinstance(description, str) else description)
            result = []
            d = endpoint.listen(factory)
            d.addBoth(result.append)
            if not result:  # pragma: no cover - every stock endpoint listens synchronously
                raise StartupError(f"{setting}: {description} did not listen synchronously")
            outcome = result[0]
            if hasattr(outcome, "getErrorMessage"):
                self._stop_opened()
                raise StartupError(f"cannot listen on {description} ({label}, setting {setting}): "
                                   f"{outcome.getErrorMessage()}")
            self.ports[label] = outcome
            parts.append(f"{outcome.getHost().port} ({label})")
        if parts:
            _log.info("{what} available on port {ports}", what=self.what,
                      ports=" and ".join(parts))

    def _stop_opened(self):
        for port in self.ports.values():
            port.stopListening()
        self.ports.clear()

    def stopService(self):
        super().stopService()
        from twisted.internet.defer import gatherResults, maybeDeferred

        ports, self.ports = list(self.ports.values()), {}
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])


def plain_http_url(listening: "ListenersService", external: bool = False) -> str | None:
    """``http://host:port`` of the plain HTTP listener: over loopback (this host's own
    probes), or with ``external`` as other hosts reach it (a wildcard address becomes this
    host's name). None without a plain HTTP listener."""
    port = listening.ports.get("HTTP")
    if port is None:
        return None
    host = port.getHost()
    address = host.host
    if address in ("0.0.0.0", "", "::"):
        if external:
            address = socket.getfqdn()
        else:
            address = "::1" if address == "::" else "127.0.0.1"
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{host.port}"
