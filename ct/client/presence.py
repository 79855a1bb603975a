"""Reference client for the team presence channel (``/ws/presence``)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks

from ct.client.links import websocket_url
from ct.client.session import _ClientProtocol, connect_websocket
from ct.protocol.wire import PROTOCOL_VERSION, decode_control, encode_control


class PresenceClient:
    """One member's view of a team: ``members`` and ``sessions`` kept current from events."""

    def __init__(self, reactor, server: str, team: str, token: str, user: str,
                 client: str = "ct-python-client/0.1", trust_all_certs: bool = False,
                 host_token: str | None = None):
        """``host_token``: from signing in (``ct-client login``), for CT_HOST_AUTH=sso."""
        self.reactor = reactor
        self.host_token = host_token
        self.server = server
        self.team = team
        self.token = token
        self.user = user
        self.client = client
        self.trust_all = trust_all_certs
        self.events: DeferredQueue = DeferredQueue()
        self.members: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.closed: Deferred = Deferred()
        self.error: dict[str, Any] | None = None
        self._proto = None
        self._state: Deferred | None = None

    def connect(self) -> Deferred:
        """Fires with the initial ``presence-state`` once subscribed."""
        self._state = Deferred()

        def opened(proto):
            self._proto = proto
            message = {"type": "presence", "v": PROTOCOL_VERSION, "team": self.team,
                       "token": self.token, "user": self.user, "client": self.client}
            if self.host_token:
                message["hostToken"] = self.host_token
            proto.sendMessage(encode_control(message), False)
            return self._state

        d = connect_websocket(self.reactor, websocket_url(self.server, "presence"),
                              self._new_protocol, self.trust_all)
        return d.addCallback(opened)

    def close(self) -> Deferred:
        if self._proto is not None:
            self._proto.sendClose(1000)
        return self.closed

    def next_event(self, kind: str | None = None, timeout: float = 10.0) -> Deferred:
        @inlineCallbacks
        def wait():
            while True:
                event = yield self.events.get()
                if kind is None or event["type"] == kind:
                    return event

        return wait().addTimeout(timeout, self.reactor)

    def _new_protocol(self):
        proto = _ClientProtocol()
        proto.owner = self
        return proto

    def _received(self, proto, payload, is_binary):
        message = decode_control(payload)
        kind = message["type"]
        if kind == "presence-state":
            self.members = {m["user"]: m for m in message["members"]}
            self.sessions = {s["session"]: s for s in message["sessions"]}
            if self._state is not None and not self._state.called:
                self._state.callback(message)
            return
        if kind == "member-online":
            self.members[message["user"]] = message
        elif kind == "member-offline":
            self.members.pop(message["user"], None)
        elif kind in ("session-started", "session-updated"):
            self.sessions[message["session"]] = message
        elif kind == "session-ended":
            self.sessions.pop(message["session"], None)
        elif kind == "error":
            self.error = message
        self.events.put(message)

    def _closed(self, proto, code, reason):
        self._proto = None
        if self._state is not None and not self._state.called:
            why = self.error or {"code": "closed", "message": f"closed with {code}"}
            self._state.errback(ConnectionError(f"{why['code']}: {why['message']}"))
        if not self.closed.called:
            self.closed.callback(code)


class TeamPresence:
    """Presence that follows the team: asks the locator for the team's edge, and when that
    connection drops, asks again and reconnects (the locator moves teams off dead edges).

    ``states`` receives every ``presence-state`` (one per (re)connection); ``events`` the
    events of whichever connection is current.
    """

    def __init__(self, reactor, locator_url: str, team: str, token: str, user: str,
                 retry_delays=(0.2, 0.5, 1.0, 2.0, 5.0), **kw):
        from ct.client.locator import LocatorClient

        self.reactor = reactor
        self.locator = LocatorClient(reactor, locator_url)
        self.team, self.token, self.user = team, token, user
        self.retry_delays = retry_delays
        self.kw = kw
        self.current: PresenceClient | None = None
        self.edge: str | None = None
        self.states: DeferredQueue = DeferredQueue()
        self.events: DeferredQueue = DeferredQueue()
        self.reconnects = 0
        self._stopped = False
        self._attempt = 0

    @inlineCallbacks
    def start(self):
        where = yield self.locator.team_edge(self.team)
        member = PresenceClient(self.reactor, where["server"], self.team, self.token,
                                self.user, **self.kw)
        member.events = self.events
        state = yield member.connect()
        self.current, self.edge = member, where["edge"]
        self._attempt = 0
        self.states.put({**state, "edge": where["edge"]})
        member.closed.addCallback(self._lost, member)
        return state

    def _lost(self, code, member):
        if self._stopped or member is not self.current:
            return
        self.current = None
        self._retry()

    def _retry(self):
        delay = self.retry_delays[min(self._attempt, len(self.retry_delays) - 1)]
        self._attempt += 1

        def again():
            if self._stopped:
                return
            self.reconnects += 1
            self.start().addErrback(lambda _: self._retry())

        self.reactor.callLater(delay, again)

    def stop(self) -> Deferred:
        self._stopped = True
        if self.current is not None:
            return self.current.close()
        from twisted.internet.defer import succeed

        return succeed(None)
