"""Edge side of the edge-locator link: register, report, relay the outbox, obey suspend.

A ``ClientService`` keeps one websocket to the locator's ``/ws/edge``, reconnecting with
exponential backoff and jitter. On every (re)connect the edge registers again with the
sessions and teams it serves, so a restarted locator learns the current state. While the
link is down nothing is lost: audit entries and metric snapshots wait in the durable
outbox and are relayed in order after reconnect; the locator acknowledges each batch
once stored.
"""

from __future__ import annotations

import random
import uuid
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ct import __version__
from ct.client.links import websocket_url
from ct.common.http import TrustAllPolicy
from ct.common.proxy import OutboundProxy
from ct.edge import admin
from ct.protocol import link
from ct.protocol.link import BATCH, decode_link_message
from ct.protocol.wire import encode_control

_log = Logger()

CLOSE_TIMEOUT = 2.0  # stopping: the locator's answer to our close, at most


class _LinkProtocol(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.link._opened(self)

    def onMessage(self, payload, isBinary):
        try:
            self.factory.link._received(self, decode_link_message(payload))
        except Exception:
            _log.failure("locator link: bad message from the locator")

    def onClose(self, wasClean, code, reason):
        self.factory.link._closed(self, code, reason)

    def connectionLost(self, reason):
        if "certificate verify failed" in str(reason.value):
            self.factory.link.untrusted_certificate(str(reason.value))
        super().connectionLost(reason)

    def send_json(self, message: dict[str, Any]) -> None:
        self.sendMessage(encode_control(message), False)


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """Passes failed connection attempts to ``failed`` (ClientService keeps them quiet)."""

    def __init__(self, endpoint, failed: Callable):
        self.endpoint = endpoint
        self.failed = failed

    def __repr__(self) -> str:
        return repr(self.endpoint)

    def connect(self, factory):
        d = self.endpoint.connect(factory)
        d.addErrback(self.failed)
        return d


@implementer(IStreamClientEndpoint)
class RotatingEndpoint:
    """Several locators (``CT_LOCATOR=url1,url2,...``): each connection attempt goes to the
    next one, so a link that drops reconnects to another locator."""

    def __init__(self, targets, ws_factory):
        self.targets = list(targets)  # [(websocket URL, endpoint)]
        self.ws_factory = ws_factory
        self._next = 0

    def connect(self, factory):
        url, endpoint = self.targets[self._next % len(self.targets)]
        self._next += 1
        self.ws_factory.setSessionParameters(url=url)  # the Host header of this locator
        return endpoint.connect(factory)


class LocatorLink(service.Service):
    def __init__(self, reactor, edge, outbox, locator_url: str, secret: str,
                 public_url: Callable[[], str], report_interval: float = 2.0,
                 trust_all: bool = False, max_connections: int = 0,
                 outbound: OutboundProxy | None = None):
        self.reactor = reactor
        self.edge = edge
        self.outbox = outbox
        self.locator_url = locator_url
        self.secret = secret
        self.public_url = public_url
        self.report_interval = report_interval
        self.trust_all = trust_all
        self.max_connections = max_connections
        self.proto: _LinkProtocol | None = None
        self.registered = False
        self.suspended = False
        self.in_flight: list[int] | None = None
        self._retry_call = None  # a batch the locator asked to send again later
        self._backlog = False
        self.batches_sent = 0
        self.last_error: str | None = None
        self.downloads = None  # a DownloadCounter: per-client counts go into reports
        self.server_log = None  # a ServerLog: its recent lines answer the locator's log-lines
        self.config_listeners: list[Callable[[dict[str, Any]], None]] = [self._apply_advanced]
        self._link_closed = None  # fires once the link closed (stopping)
        self._reporter = LoopingCall(self.report)
        self._reporter.clock = reactor
        outbox.on_added = self.pump
        edge.relay.add_listener(self._session_event)
        edge.drain_listeners.append(self._drain_started)

        urls = [websocket_url(u, "edge") for u in locator_url.split(",") if u.strip()]
        self.factory = factory = WebSocketClientFactory(urls[0], reactor=reactor)
        factory.protocol = _LinkProtocol
        factory.link = self
        factory.noisy = False
        factory.setProtocolOptions(autoPingInterval=5, autoPingTimeout=10,
                                   openHandshakeTimeout=10,
                                   maxMessagePayloadSize=16 * 1024 * 1024)
        # CT_PROXY: the proxy for these locators (a CONNECT tunnel, TLS inside it), or None
        self.proxy = outbound.proxy_for(factory.host, factory.port) if outbound else None
        endpoints = [(url, _endpoint(reactor, WebSocketClientFactory(url, reactor=reactor),
                                     trust_all, outbound)) for url in urls]
        endpoint = (endpoints[0][1] if len(endpoints) == 1
                    else RotatingEndpoint(endpoints, factory))
        self.client = ClientService(
            _ReportingEndpoint(endpoint, self._connect_failed), factory, clock=reactor,
            retryPolicy=backoffPolicy(initialDelay=0.5, maxDelay=10.0, factor=1.6,
                                      jitter=random.random))

    def startService(self):
        super().startService()
        self.client.startService()
        self._reporter.start(self.report_interval, now=False)

    def stopService(self):
        """Close the link with a websocket close (1000), so the locator knows
        the edge stopped rather than lost it; cut after CLOSE_TIMEOUT s without an answer."""
        super().stopService()
        if self._reporter.running:
            self._reporter.stop()
        if self._retry_call is not None:
            self._retry_call.cancel()
            self._retry_call = None
        closed = defer.succeed(None)
        proto = self.proto
        if proto is not None and proto.state == proto.STATE_OPEN:
            closed = self._link_closed = defer.Deferred()
            proto.sendClose(1000, "edge stopping")  # autobahn sends 1000 or 3000-4999
            closed.addTimeout(CLOSE_TIMEOUT, self.reactor, onTimeoutCancel=lambda *_: None)
        return closed.addCallback(lambda _: self.client.stopService())

    # -- connection life

    def _opened(self, proto):
        self.proto = proto
        relay = self.edge.relay
        proto.send_json(link.Register(
            edge=self.edge.edge_id, url=self.public_url(), region=self.edge.config.region,
            version=__version__, max_connections=self.max_connections,
            sessions=tuple(link.SessionInfo(s.id, s.team, s.created_at)
                           for s in relay.sessions.values() if not s.internal),
            teams=tuple(sorted(self.edge.presence.teams)),
            draining=self.edge.draining).to_json(self.secret))

    def _received(self, proto, message):
        kind = message["type"]
        if kind == link.REGISTERED:
            self.registered = True
            self.suspended = bool(message.get("suspended"))
            self._backlog = self.outbox.depth > 0
            _log.info("registered with the locator at {url}{s}; {n} records waiting in the "
                      "outbox", url=self.factory.url, s=" (suspended)" if self.suspended else "",
                      n=self.outbox.depth)
            self.last_error = None
            if self._retry_call is not None:
                self._retry_call.cancel()
                self._retry_call = None
            self.report()
            self.pump()
        elif kind == link.STORED:
            self._stored(message)
        elif kind == link.RETRY:
            self._retry_later(message)
        elif kind == link.SUSPEND:
            self.suspended = bool(message.get("suspended"))
            _log.info("the locator {what} this edge", what="suspended" if self.suspended
                      else "resumed")
        elif kind == link.CONFIG:
            for listener in self.config_listeners:
                try:
                    listener(message)
                except Exception:
                    _log.failure("applying settings from the locator")
        elif kind in link.ADMIN_REQUESTS:
            self._admin_request(proto, kind, message)
        elif kind == link.ERROR:
            text = f"{message.get('code')}: {message.get('message')}"
            if text != self.last_error:
                _log.error("the locator refused this edge: {text}", text=text)
            self.last_error = text

    def _apply_advanced(self, message):
        minimum = (message.get("advanced") or {}).get("minClientVersion") or None
        if minimum != self.edge.config.min_client_version:
            self.edge.config.min_client_version = minimum
            _log.info("minimum client version to host a session: {v}", v=minimum or "any")

    def _admin_request(self, proto, kind, message):
        """Answer the locator's administrator requests (dashboard actions)."""
        relay = self.edge.relay
        request = message.get("request")
        if kind == link.LOG_LINES:
            self._send_log(proto, request, link.requested_log_lines(message))
            return
        if kind == link.LIST_SESSIONS:
            proto.send_json(link.sessions_answer(request, admin.list_sessions(relay)))
            return
        try:
            if kind == link.REMOVE_PARTICIPANT:
                result = {"participant": admin.remove_participant(
                    relay, message.get("session"), message.get("participant"))}
            else:
                result = {"summary": admin.end_session(relay, message.get("session"))}
        except admin.AdminError as e:
            proto.send_json(link.refused(request, e.code, e.message))
            return
        _log.info("administrator request from the locator: {kind} {session}", kind=kind,
                  session=message.get("session"))
        proto.send_json(link.done(request, **result))

    def _send_log(self, proto, request, lines: int) -> None:
        """The recent lines of this edge's log, bounded (``link.log_tail``), to the locator."""
        if self.server_log is None:
            proto.send_json(link.refused(request, "not-available", "this edge keeps no log"))
            return

        def answer(recent):
            kept, truncated = link.log_tail(recent, lines)
            if proto is self.proto:  # not over a link that has gone since
                source = self.server_log.source()
                proto.send_json(link.LogAnswer(tuple(kept), source, truncated).to_json(request))

        def failed(f):
            _log.failure("reading the log for the locator", f)
            if proto is self.proto:
                proto.send_json(link.refused(request, "failed", "could not read the log"))

        self.server_log.lines(lines + 1).addCallbacks(answer, failed)  # +1: older ones?

    def untrusted_certificate(self, detail: str) -> None:
        """The locator's TLS certificate did not verify: say what to do, once per cause."""
        text = f"certificate: {detail}"
        if text != self.last_error:
            _log.error("the locator's TLS certificate is not trusted ({detail}): install its "
                       "CA on this host, or set CT_TRUST_ALL_CERTS=true for a self-signed "
                       "locator of your own", detail=detail)
        self.last_error = text

    def _connect_failed(self, failure):
        """One line per cause while connecting fails (ClientService retries with back-off)."""
        if not failure.check(defer.CancelledError):
            via = f" through the proxy {self.proxy}" if self.proxy is not None else ""
            text = f"connect: {failure.getErrorMessage()}"
            if text != self.last_error:
                _log.warn("cannot connect to the locator at {url}{via}: {error}; retrying",
                          url=self.locator_url, via=via, error=failure.getErrorMessage())
            self.last_error = text
        return failure

    def _closed(self, proto, code, reason):
        if proto is not self.proto:
            return
        waiting, self._link_closed = self._link_closed, None
        if waiting is not None and not waiting.called:
            waiting.callback(None)
        was = self.registered
        self.proto = None
        self.registered = False
        self.in_flight = None
        if was and not self.running:
            _log.info("link to the locator closed: the edge is stopping")
        elif was:
            _log.warn("link to the locator lost ({code}); reconnecting, records wait in the "
                      "outbox", code=code)

    # -- traffic

    def report(self):
        if not self.registered:
            return
        snap = self.edge.snapshot()
        self.proto.send_json(link.Report(
            lag_ms=snap["lag_ms"], connections=snap["connections"], sessions=snap["sessions"],
            users=snap["users_online"], cpu=snap["cpu"], suspended=self.suspended,
            outbox=self.outbox.depth,
            sessions_hosted=snap["sessions_hosted_total"],
            downloads=self.downloads.counts() if self.downloads is not None else {}).to_json())

    def _drain_started(self, draining: link.Draining) -> None:
        """The edge is stopping: the locator places nothing here from now (a link made
        later carries it in its registration)."""
        if self.registered and self.proto is not None:
            self.proto.send_json(draining.to_json())
            _log.info("told the locator this edge is stopping: no new sessions come here")

    def _session_event(self, kind, session, participant, reason):
        if session.internal or not self.registered:
            return  # the next registration carries the current sessions
        if kind == "session-started":
            update = link.SessionUpdate(session.id, session.team, session.created_at)
        elif kind == "session-ended":
            update = link.SessionUpdate(session.id, ended=self.reactor.seconds())
        else:
            return
        self.proto.send_json(update.to_json())

    def pump(self):
        """Send the next outbox batch unless one is in flight."""
        if (not self.registered or self.in_flight is not None or self.outbox.depth == 0
                or self._retry_call is not None):
            return
        self.in_flight = []
        d = self.outbox.peek(BATCH)

        def send(records):
            if not self.registered or self.proto is None:
                self.in_flight = None
                return
            if not records:
                self.in_flight = None
                return
            self.in_flight = [seq for seq, _, _ in records]
            self.batches_sent += 1
            self.proto.send_json(link.Records(
                self.batches_sent,
                audit=tuple(body for _, kind, body in records if kind == "audit"),
                metrics=tuple(body for _, kind, body in records if kind == "metrics")).to_json())

        def failed(f):
            self.in_flight = None
            _log.failure("outbox read failed", f)

        d.addCallbacks(send, failed)

    def _retry_later(self, message):
        """The locator could not store a batch (its database is away): send it again
        after the delay it asks for (1 to 60 s); the records stay in the outbox."""
        if message.get("batch") != self.batches_sent or self.in_flight is None:
            return
        self.in_flight = None
        if self._retry_call is None:
            self._retry_call = self.reactor.callLater(link.retry_delay(message), self._retry_now)

    def _retry_now(self):
        self._retry_call = None
        self.pump()

    def _stored(self, message):
        if message.get("batch") != self.batches_sent:
            return  # of an earlier batch: the answer to the one in flight follows
        seqs, self.in_flight = self.in_flight or [], None
        d = self.outbox.remove(seqs)

        def removed(depth):
            if depth == 0 and self._backlog:
                _log.info("outbox empty: the locator has every record")
                self._backlog = False
            self.pump()

        d.addCallback(removed)
        d.addErrback(lambda f: _log.failure("outbox delete failed", f))


def _endpoint(reactor, parsed: WebSocketClientFactory, trust_all: bool,
              outbound: OutboundProxy | None = None):
    """The TCP (or TLS) client endpoint of one locator URL (``parsed`` holds its parts),
    through the ``CT_PROXY`` tunnel unless ``CT_NO_PROXY`` exempts the locator."""
    if outbound is not None and outbound.proxy_for(parsed.host, parsed.port) is not None:
        endpoint = outbound.endpoint(reactor, parsed.host, parsed.port, timeout=10)
    else:
        endpoint = clientFromString(reactor, f"tcp:host={parsed.host}:port={parsed.port}"
                                             ":timeout=10")
    if parsed.isSecure:
        from twisted.internet.ssl import optionsForClientTLS

        tls = (TrustAllPolicy().creatorForNetloc(parsed.host, parsed.port) if trust_all
               else optionsForClientTLS(parsed.host))
        endpoint = wrapClientTLS(tls, endpoint)
    return endpoint


def metric_record(edge, downloads, clock) -> link.MetricRecord:
    """The edge's numbers now, as the metric snapshot its outbox sends to the locator."""
    snap = edge.snapshot()
    return link.MetricRecord(
        id=uuid.uuid4().hex, time=clock.seconds(), users_online=snap["users_online"],
        sessions=snap["sessions"], connections=snap["connections"], lag_ms=snap["lag_ms"],
        sessions_hosted_total=snap["sessions_hosted_total"],
        downloads_total=sum(downloads.counts().values()),
        av_participants=snap["av_participants"], av_calls=snap["av_calls"],
        av_relayed=snap["av_relayed"], av_direct=snap["av_direct"])
