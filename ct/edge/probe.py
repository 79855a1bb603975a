"""Self-probe of the relay path: health that reflects delivery, not just a live process.

Every ``interval`` seconds the edge hosts a session on its own HTTP port over loopback,
joins it with a second client, relays one frame and checks it arrives. ``/health`` fails
when the last probe failed or none succeeded for three intervals. Probe sessions carry a
per-process secret so they stay out of the audit trail, presence and metrics.
"""

from __future__ import annotations

import secrets

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

_log = Logger()


class RelayProbe:
    def __init__(self, reactor, edge, url, interval: float = 15.0, timeout: float = 5.0):
        self.reactor = reactor
        self.edge = edge
        self.url = url  # callable -> base http URL of this process, or None
        self.interval = interval
        self.timeout = timeout
        self.token = secrets.token_urlsafe(16)
        edge.relay.probe_token = self.token
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.runs = 0
        self._loop = LoopingCall(self.run)
        self._loop.clock = reactor
        self._running: defer.Deferred | None = None
        self.started_at = reactor.seconds()

    def start(self) -> None:
        self.started_at = self.reactor.seconds()
        self._loop.start(self.interval, now=False)
        self.reactor.callLater(0.2, self.run)  # a first answer soon after start-up

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def status(self) -> tuple[bool, str]:
        now = self.reactor.seconds()
        if self.last_error is not None:
            return False, f"probe failed: {self.last_error}"
        if self.last_ok is None:
            if now - self.started_at > 3 * self.interval:
                return False, "no successful probe since start-up"
            return True, "starting"
        age = now - self.last_ok
        if age > 3 * self.interval:
            return False, f"last successful probe {age:.0f} s ago"
        return True, f"ok ({age:.1f} s ago)"

    def run(self) -> defer.Deferred:
        if self._running is not None:
            return self._running
        self._running = d = self._probe()
        d.addBoth(self._done)
        return d

    def _done(self, result):
        self._running = None
        self.runs += 1
        if isinstance(result, Exception) or hasattr(result, "getErrorMessage"):
            message = result.getErrorMessage() if hasattr(result, "getErrorMessage") else str(result)
            if self.last_error != message:
                _log.warn("relay self-probe failed: {error}", error=message)
            self.last_error = message
        else:
            if self.last_error is not None:
                _log.info("relay self-probe recovered")
            self.last_error = None
            self.last_ok = self.reactor.seconds()
        return None

    @defer.inlineCallbacks
    def _probe(self):
        from ct.client.session import SessionClient

        url = self.url()
        if url is None:
            raise RuntimeError("no plain HTTP port to probe")
        host = SessionClient(self.reactor, url, "ct-probe", client="ct-probe",
                             auto_resume=False)
        guest = None
        try:
            yield host.host(probe=self.token).addTimeout(self.timeout, self.reactor)
            guest = SessionClient(self.reactor, url, "ct-probe", key=host.key,
                                  auto_resume=False)
            yield guest.join(host.session, host.join_token).addTimeout(self.timeout, self.reactor)
            marker = secrets.token_bytes(8)
            host.send(marker)
            frame = yield guest.next_frame(timeout=self.timeout)
            if frame.data != marker:
                raise RuntimeError("probe frame arrived altered")
        finally:
            if guest is not None:
                guest.leave()
            host.leave()
