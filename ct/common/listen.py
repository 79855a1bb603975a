"""Listening on endpoint strings, with a start-up log line that names the real ports."""

from __future__ import annotations

from twisted.application import service
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.logger import Logger

_log = Logger()


class StartupError(Exception):
    """Start-up cannot go on; the message says why and which setting to change."""


def https_endpoint(listen: str, cert: str, key: str) -> str:
    """Add the certificate and key to an ``ssl:`` endpoint string that does not name them."""
    if "privateKey=" in listen:
        return listen
    return (f"{listen}:privateKey={quoteStringArgument(key)}"
            f":certKey={quoteStringArgument(cert)}")


def server_listeners(reactor, values, site) -> "ListenersService":
    """HTTP on ``CT_HTTP_LISTEN``; HTTPS on ``CT_HTTPS_LISTEN`` when a certificate and key are set."""
    from twisted.python import usage

    listeners = []
    if values["http_listen"]:
        listeners.append(("HTTP", "CT_HTTP_LISTEN", values["http_listen"], site))
    if values["tls_cert"] and values["tls_key"] and values["https_listen"]:
        listeners.append(("SSL", "CT_HTTPS_LISTEN",
                          https_endpoint(values["https_listen"], values["tls_cert"],
                                         values["tls_key"]), site))
    elif values["tls_cert"] or values["tls_key"]:
        raise usage.UsageError("HTTPS needs both CT_TLS_CERT and CT_TLS_KEY")
    if not listeners:
        raise usage.UsageError("nothing to listen on: set CT_HTTP_LISTEN, or CT_TLS_CERT and "
                               "CT_TLS_KEY for HTTPS")
    return ListenersService(reactor, listeners)


class ListenersService(service.Service):
    """Listens on each ``(label, endpoint string, factory)``; logs the ports once all are up.

    A port that cannot be opened stops start-up with a :class:`StartupError` naming the
    setting, because a server that silently lacks a port is worse than one that fails.
    """

    def __init__(self, reactor, listeners, what: str = "services"):
        self.reactor = reactor
        self.listeners = listeners  # [(label, setting name, description, factory)]
        self.what = what
        self.ports = {}

    def startService(self):
        super().startService()
        parts = []
        for label, setting, description, factory in self.listeners:
            endpoint = serverFromString(self.reactor, description)
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
