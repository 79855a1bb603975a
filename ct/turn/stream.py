"""TCP and TLS clients of the relay: STUN messages and padded ChannelData on a stream."""

from __future__ import annotations

from typing import Callable, Sequence

from OpenSSL.SSL import NO_OVERLAPPING_PROTOCOLS
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from ct.turn import stun

_log = Logger()

TURN_ALPN = b"stun.turn"  # RFC 7443


def select_alpn(connection, offered: Sequence[bytes]):
    """The TLS listener's ALPN choice: ``stun.turn`` when offered; for any other offer no
    protocol, and the handshake goes on (an empty answer would be a fatal alert)."""
    return TURN_ALPN if TURN_ALPN in offered else NO_OVERLAPPING_PROTOCOLS


class RecordPerWriteTLSFactory(TLSMemoryBIOFactory):
    """The relay's TLS: each ``transport.write`` (one STUN or ChannelData message) goes
    out at once as its own TLS record.

    Twisted's default TLS transport gathers the writes of a reactor turn into one record
    at the next turn: two messages relayed in the same turn then arrive in one record, and
    clients that read one message per record (coturn's ``turnutils_uclient``) lose one;
    the next-turn flush also delays every message. Messages above 16 KiB (the record limit)
    still span records."""

    protocol = TLSMemoryBIOProtocol


def tls_factory(context_factory, factory: Factory) -> RecordPerWriteTLSFactory:
    """``factory`` behind the relay's TLS (listen on TCP with what this returns)."""
    return RecordPerWriteTLSFactory(context_factory, False, factory)


class TurnStreamProtocol(Protocol):
    """One TCP or TLS client: STUN messages and padded ChannelData on a stream."""

    stream = True

    def __init__(self, server):
        self.server = server
        self.stats = server.stats
        self.datapath = server.datapath
        self.allocations = server.table.by_key
        self._buffer = b""
        self.peer: tuple[str, int] | None = None
        self.active = False  # received something since the last idle check
        self.idle_since = 0.0

    def __repr__(self) -> str:
        return f"tcp:{self.peer[0]}:{self.peer[1]}" if self.peer else "tcp:?"

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.peer = (address.host, address.port)
        self.idle_since = self.server.clock.seconds()
        if not self.server.stream_opened(self):
            self.abort()
            return
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass

    def abort(self) -> None:
        """Close at once (an idle or refused connection has nothing worth flushing)."""
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def sink_for(self, addr) -> Callable:
        return self.transport.write

    def connectionLost(self, reason=None) -> None:
        self.server.client_gone(self)

    def dataReceived(self, data: bytes) -> None:
        self.active = True
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        pos = 0
        server = self.server
        while size - pos >= 4:
            first = buffer[pos]
            length = (buffer[pos + 2] << 8) | buffer[pos + 3]
            if first < 0x40:
                end = pos + stun.HEADER_LENGTH + length
                if end > size:
                    break
                try:
                    reply = server.handle_stun(buffer[pos:end], self.peer, self, self)
                except Exception:
                    _log.failure("turn: error handling a message from {client}", client=self)
                    reply = None
                if reply is not None:
                    self.transport.write(reply)
            elif first <= 0x7F:  # stun.CHANNEL_FIRST_MAX
                end = pos + 4 + ((length + 3) & ~3)
                if end > size:
                    break
                self._channel_data(buffer, pos, length)
            else:
                _log.info("turn: closing {client}: bytes that are neither STUN nor "
                          "ChannelData", client=self)
                self.stats.refused("unframeable stream data")
                self._buffer = b""
                self.transport.loseConnection()
                return
            pos = end
            if getattr(self.transport, "disconnecting", False):
                break
        self._buffer = buffer[pos:] if pos < size else b""

    def _channel_data(self, buffer: bytes, pos: int, length: int) -> None:
        self.datapath.channel_to_peer(self.allocations.get(self),
                                      (buffer[pos] << 8) | buffer[pos + 1],
                                      buffer[pos + 4:pos + 4 + length], length)


class TurnStreamFactory(Factory):
    """Builds a :class:`TurnStreamProtocol` per connection to one server."""

    def __init__(self, server):
        self.server = server

    def buildProtocol(self, addr):
        protocol = TurnStreamProtocol(self.server)
        protocol.factory = self
        return protocol
