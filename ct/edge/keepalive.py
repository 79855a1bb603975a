"""One timer that pings every open websocket connection of a factory and drops silent ones.

Transport-free: a connection is anything with ``keepalive_quiet``, ``send_ping()`` and
``drop_silent()``; time comes from the ``clock`` given.
"""

from __future__ import annotations

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

_log = Logger(namespace="ct.edge.ws")  # the namespace these lines always had


class KeepAlive:
    """Websocket pings for every open connection of a factory, from one timer.

    The connections are spread over ``slices`` groups; each tick of the timer visits one
    group, so each connection is visited once per ``interval``. A visit drops a connection
    still marked quiet (nothing received since the previous visit's ping, a whole
    ``interval`` ago); otherwise it pings it and marks it quiet. Anything received from the
    peer clears the mark (``conn.keepalive_quiet = False``). So every connection gets a ping
    per ``interval``, has ``interval`` to answer it, and a silent peer is dropped at most
    ``2 * interval`` (plus one tick) after the last thing it sent.

    A connection provides ``keepalive_quiet``, ``send_ping()`` and ``drop_silent()``.
    """

    def __init__(self, clock, interval: float, slices: int = 40):
        self.clock = clock
        self.interval = interval
        self.slices = max(1, int(slices))
        self._groups: list[set] = [set() for _ in range(self.slices)]
        self._next = 0
        self._count = 0
        self._loop: LoopingCall | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def tick(self) -> float:
        return self.interval / self.slices

    def add(self, conn) -> None:
        """Start keeping ``conn`` alive (it has just opened); a no-op when interval is 0."""
        if self.interval <= 0:
            return
        group = self._groups[hash(conn) % self.slices]
        if conn in group:
            return
        group.add(conn)
        self._count += 1
        if self._loop is None:
            self._loop = LoopingCall(self._visit_next_group)
            self._loop.clock = self.clock
            self._loop.start(self.tick, now=False)

    def discard(self, conn) -> None:
        """Forget ``conn`` (it has closed); the timer stops with the last connection."""
        group = self._groups[hash(conn) % self.slices]
        if conn not in group:
            return
        group.remove(conn)
        self._count -= 1
        if not self._count and self._loop is not None:
            loop, self._loop = self._loop, None
            if loop.running:
                loop.stop()

    def _visit_next_group(self) -> None:
        # One group per tick, however late the tick: after a stall of the reactor, the
        # answers to earlier pings may still be unread, so nobody is judged early.
        group = self._groups[self._next]
        self._next = (self._next + 1) % self.slices
        for conn in list(group):
            if conn.keepalive_quiet:
                self.discard(conn)
                try:
                    conn.drop_silent()
                except Exception:
                    _log.failure("error dropping a silent connection")
            else:
                conn.keepalive_quiet = True
                try:
                    conn.send_ping()
                except Exception:
                    _log.failure("error sending a websocket ping")
