"""The relay's UDP sockets: the server's listener, one relay socket per allocation, the poller.

Every socket here is a bare non-blocking ``IReadDescriptor`` read through one
:class:`SocketPoller` (an epoll set behind a single reactor reader). Client -> peer
ChannelData goes through :class:`~ct.turn.datapath.DataPath`; peer -> client datagrams are
framed in place in one shared buffer (:meth:`RelaySocket.read_one`); STUN messages go to
:meth:`~ct.turn.server.TurnServer.handle_stun`.

With the compiled fast path (``ct/turn/_fastpath.c``, :data:`FAST_PATH`; off with
``CT_TURN_FAST_PATH=false``) the same rules run in C over the same tables: the listener is
drained with ``recvmmsg`` (ChannelData and Send indications relayed there, other STUN
messages handed back here), and each round of the poller reads the ready relay sockets of
UDP clients and sends to the clients with ``sendmmsg``. Relay sockets of TCP/TLS clients
stay on the Python path.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from typing import Any, Callable

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from ct.turn import stun
from ct.turn.allocation import Allocation
from ct.turn.datapath import DataPath

try:
    from ct.turn import _fastpath as FAST_PATH
except ImportError:  # not built (no compiler at install time): the Python data path
    FAST_PATH = None

_log = Logger()

MAX_DATAGRAM = 65535
MAX_FRAMED = MAX_DATAGRAM - 48  # a peer's datagram with room for a Data indication's header
_READ_IGNORE = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_PADS = (b"", b"\0\0\0", b"\0\0", b"\0")  # ChannelData on a stream: to 4 bytes


def set_socket_buffers(sock: socket.socket, size: int, send: bool = True) -> int:
    """Ask for ``size`` bytes of receive (and send) buffer; return the receive buffer got.

    Beyond ``net.core.rmem_max`` the kernel caps the request; with CAP_NET_ADMIN the cap
    is lifted (``SO_RCVBUFFORCE``). Linux reports twice the usable size.
    """
    options = [(socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None))]
    if send:
        options.append((socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None)))
    for option, force in options:
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            if force is not None and sock.getsockopt(socket.SOL_SOCKET, option) < size:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            pass
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0



def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)``; OSError if taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _udp_sender(sock: socket.socket, addr: tuple[str, int], stats) -> Callable:
    """A callable sending one datagram to ``addr``; a full buffer drops it."""
    sendto = sock.sendto

    def send(data: bytes) -> None:
        try:
            sendto(data, addr)
        except OSError:
            stats.dropped_packets += 1

    return send


@implementer(IReadDescriptor)
class SocketPoller:
    """The relay's UDP sockets behind one reactor reader: an epoll set of their own.

    The reactor sees a single descriptor (the inner epoll); one wake-up serves every
    socket that is ready, which saves the reactor's per-descriptor dispatch cost.
    Registered with the reactor only while it watches some socket.

    With a ``hold`` (seconds), a relay measured busy serves in batches: when a wake-up
    found at least ``busy`` ready sockets (with the fast path: relayed ``busy`` datagrams,
    see :meth:`_serve_fast`), the poller leaves the reactor for ``hold`` and
    then serves everything that arrived meanwhile in one round, and keeps serving on that
    timer while its rounds stay that full. A wake-up that finds fewer (a quiet relay, a
    lone datagram) never holds: the next datagram is served on arrival.
    """

    rounds = 64
    busy = 16

    def __init__(self, reactor, hold: float = 0.0, fast=None, datapath: DataPath | None = None):
        self.reactor = reactor
        self.hold = hold
        self.fast = fast  # the compiled fast path module, or None
        self.datapath = datapath
        self.epoll = select.epoll()
        self.readers: dict[int, Any] = {}
        self.handlers: dict[int, Callable] = {}  # fd -> what serves one readiness
        self.fast_relays: dict[int, Any] = {}  # fd -> relay socket the fast path serves
        self.registered = False  # watching some socket
        self.timer = None  # holding: the DelayedCall of the next round
        self.holds = 0  # times it switched to serving on a timer

    def add(self, reader, batch: int | None = 1) -> None:
        if batch is not None:
            reader.batch = batch
        fd = reader.fileno()
        self.epoll.register(fd, select.EPOLLIN)
        self.readers[fd] = reader
        one = getattr(reader, "read_one", None) if reader.batch == 1 else None
        self.handlers[fd] = one if one is not None else reader.doRead
        if self.fast is not None and getattr(reader, "client_fd", -1) >= 0:
            self.fast_relays[fd] = reader
        if not self.registered:
            self.registered = True
            if self.timer is None:
                self.reactor.addReader(self)

    def remove(self, reader) -> None:
        fd = reader.fileno()
        if self.readers.pop(fd, None) is not None:
            del self.handlers[fd]
            self.fast_relays.pop(fd, None)
            self.epoll.unregister(fd)
        if not self.readers and self.registered:
            self.registered = False
            if self.timer is not None:
                timer, self.timer = self.timer, None
                if timer.active():
                    timer.cancel()
            else:
                self.reactor.removeReader(self)

    def fileno(self) -> int:
        return self.epoll.fileno()

    def logPrefix(self) -> str:
        return "turn-sockets"

    def connectionLost(self, reason) -> None:
        self.registered = False

    def doRead(self) -> None:
        if self.serve() >= self.busy and self.hold and self.registered:
            self.holds += 1
            self.reactor.removeReader(self)
            self.timer = self.reactor.callLater(self.hold, self._round)

    def _round(self) -> None:
        """The timed round of a hold: again after ``hold`` while busy, else back to
        waiting for readiness."""
        self.timer = None
        try:
            served = self.serve()
        except Exception:
            _log.failure("turn: error serving sockets")
            served = 0
        if not self.registered:
            return
        if served >= self.busy:
            self.timer = self.reactor.callLater(self.hold, self._round)
        else:
            self.reactor.addReader(self)

    def serve(self) -> int:
        """Serve ready sockets one datagram at a time, re-polling until none is ready.

        Quiet readers watched here read a single datagram per call (``batch`` 1, their
        ``read_one`` when they have one): asking the inner epoll again is cheaper than the
        failing read that ends a batch. Returns how many readiness events were served.
        """
        if self.fast is not None:
            return self._serve_fast()
        poll = self.epoll.poll
        served = 0
        for _ in range(self.rounds):
            events = poll(0, 512)
            if not events:
                break
            served += len(events)
            self._serve_ready(fd for fd, _ in events)
        return served

    def _serve_ready(self, fds) -> None:
        """Call the read handler of each ready descriptor (one failing does not stop the
        others)."""
        handlers = self.handlers
        for fd in fds:
            handler = handlers.get(fd)
            if handler is None:
                continue
            try:
                handler()
            except Exception:
                _log.failure("turn: error reading {reader}", reader=self.readers.get(fd))

    def _serve_fast(self) -> int:
        """:meth:`serve` through the fast path: each round reads every ready relay socket
        of a UDP client in C; the other ready sockets (the listener) are served here.

        Returns the datagrams relayed (both ways) plus the other readiness events served:
        a few clients flooding make few ready sockets but many datagrams, and that is busy
        too."""
        serve_round = self.fast.serve_round
        epfd = self.epoll.fileno()
        relays = self.fast_relays
        datapath = self.datapath
        drop = datapath.drop_once
        stats = datapath.stats
        served = -(stats.packets_to_client + stats.packets_to_peer)
        for _ in range(self.rounds):
            try:
                events, others, packets, size, dropped = serve_round(epfd, relays, drop, 512)
            except Exception:
                _log.failure("turn: error relaying to clients")
                break
            stats.packets_to_client += packets
            stats.bytes_to_client += size
            stats.dropped_packets += dropped
            if not events:
                break
            served += len(others)
            to_peer = stats.packets_to_peer
            self._serve_ready(others)
            if events == 1 and packets + stats.packets_to_peer - to_peer <= 1:
                break  # a lone datagram: the next one wakes the reactor, no need to ask
        return served + stats.packets_to_client + stats.packets_to_peer


# One receive buffer for every relay socket: the reactor reads one socket at a time and
# each datagram leaves (copied by sendto) before the next is read.
_RELAY_BUFFER = bytearray(4 + MAX_DATAGRAM + 4)
_RELAY_VIEW = memoryview(_RELAY_BUFFER)
_RELAY_PAYLOAD = _RELAY_VIEW[4:4 + MAX_DATAGRAM]


class UdpSockets:
    """Opens relay sockets and has every socket of the relay read (a
    :class:`~ct.turn.server.RelaySockets`): through one :class:`SocketPoller` where epoll
    exists, else by the reactor itself."""

    def __init__(self, reactor: Any, datapath: DataPath, relay_host: str,
                 relay_buffer: int = 0, hold: float = 0.0, fast_path: bool = True):
        self.reactor = reactor
        self.datapath = datapath
        self.relay_host = relay_host
        self.relay_buffer = relay_buffer  # receive buffer of each relay socket; 0: default
        epoll = hasattr(select, "epoll")
        # the compiled data path when built and wanted (it needs the epoll poller)
        self.fast = FAST_PATH if fast_path and epoll else None
        self.poller = SocketPoller(reactor, hold, self.fast, datapath) if epoll else None

    def watch(self, reader, busy: bool = False) -> None:
        """Have ``reader.doRead`` called when its socket is readable.

        A ``busy`` reader (the server's own socket) keeps reading in batches; the many
        quiet relay sockets read one datagram per readiness.
        """
        if self.poller is not None:
            self.poller.add(reader, None if busy else 1)
        else:
            self.reactor.addReader(reader)

    def unwatch(self, reader) -> None:
        if self.poller is not None:
            self.poller.remove(reader)
        else:
            self.reactor.removeReader(reader)

    def bind_relay(self, port: int) -> socket.socket:
        """A relay socket bound to ``port`` of the relay address; OSError if taken."""
        sock = bind_udp(self.relay_host, port)
        if self.relay_buffer:
            set_socket_buffers(sock, self.relay_buffer, send=False)
        return sock

    def open_relay(self, allocation: Allocation, port: int, link: Any,
                   client: tuple[str, int], dont_fragment: bool) -> RelaySocket:
        sock = self.bind_relay(port)
        if dont_fragment and hasattr(socket, "IP_MTU_DISCOVER"):
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MTU_DISCOVER, 2)
            except OSError:
                pass
        return RelaySocket(self, allocation, sock, port, link, client)


@implementer(IReadDescriptor)
class _WatchedSocket:
    """A non-blocking socket read through :class:`UdpSockets` (relay and listener alike)."""

    __slots__ = ()
    log_prefix = "turn"

    def fileno(self) -> int:
        return -1 if self.closed else self._fileno

    def logPrefix(self) -> str:
        return self.log_prefix

    def close(self) -> None:
        if not self.closed:
            self.sockets.unwatch(self)
            self.closed = True
            self._forget()
            self.sock.close()

    def _forget(self) -> None:
        """Hook: drop references when closing."""

    def connectionLost(self, reason) -> None:
        self.close()


class RelaySocket(_WatchedSocket):
    """The relay socket of one allocation: peer data goes to the client.

    A bare ``IReadDescriptor`` rather than a ``udp.Port``: less memory per allocation and
    no per-socket log lines.
    """

    __slots__ = ("sockets", "datapath", "stats", "allocation", "stream", "sock", "port",
                 "closed", "_fileno", "_recvfrom", "send_to_peer", "batch", "client_sendto",
                 "client_addr", "client_fd", "__weakref__")
    log_prefix = "turn-relay"

    def __init__(self, sockets: UdpSockets, allocation: Allocation, sock: socket.socket,
                 port: int, link: Any, client: tuple[str, int]):
        self.sockets = sockets
        self.datapath = sockets.datapath
        self.stats = self.datapath.stats
        self.allocation: Allocation | None = allocation
        self.stream = link.stream
        self.sock = sock
        self.port = port
        self.closed = False
        self.batch = 64
        self._fileno = sock.fileno()
        self._recvfrom = sock.recvfrom_into
        self.send_to_peer = sock.sendto  # OSError when the socket's buffer is full
        # A UDP client's socket and address, for sending without the sink's extra call.
        udp_target = getattr(link, "udp_target", None)
        self.client_sendto, self.client_addr = (udp_target(client) if udp_target is not None
                                                else (None, None))
        # the fast path sends to a UDP client on this descriptor (-1: a stream client)
        self.client_fd = link.fileno() if udp_target is not None else -1
        allocation.relay_fd = self._fileno
        sockets.watch(self)

    def _forget(self) -> None:
        if self.allocation is not None:
            self.allocation.relay_fd = -1
        self.allocation = None

    def doRead(self) -> None:
        """Relay up to ``batch`` waiting datagrams."""
        read_one = self.read_one
        for _ in range(self.batch):
            if not read_one():
                return

    def read_one(self) -> bool:
        """Relay one waiting datagram: permission, budget, frame, send, count.

        ChannelData is framed in place in the shared buffer (no copy over UDP); without a
        channel the client gets a Data indication. False when nothing is waiting or the
        socket is done with.
        """
        try:
            size, addr = self._recvfrom(_RELAY_PAYLOAD)
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                return True
            if e.errno in _READ_IGNORE:
                return False
            raise
        allocation = self.allocation
        if allocation is None:
            return False
        if len(addr) > 2:
            addr = addr[:2]
        if addr[0] not in allocation.permissions:
            self.datapath.drop_once(allocation, "data from a peer without permission", addr[0])
            return not self.closed
        allocation.budget -= size
        if allocation.budget < 0:
            self.datapath.drop_once(allocation, "bandwidth limit")
            return not self.closed
        channel = allocation.peer_channels.get(addr)
        if size > MAX_FRAMED:  # no room for the header in a datagram: cannot be relayed
            self.stats.dropped_packets += 1
            return not self.closed
        if channel is None:
            tid = os.urandom(12)
            message = stun.encode_message(
                stun.DATA, stun.INDICATION, tid,
                [(stun.XOR_PEER_ADDRESS, stun.encode_xor_address(addr[0], addr[1], tid)),
                 (stun.DATA_ATTR, bytes(_RELAY_PAYLOAD[:size]))], add_fingerprint=False)
        else:
            buffer = _RELAY_BUFFER
            buffer[0] = channel >> 8
            buffer[1] = channel & 0xFF
            buffer[2] = size >> 8
            buffer[3] = size & 0xFF
            if self.stream:  # padded, and copied: a transport keeps what it is given
                pad = _PADS[size & 3]
                end = 4 + size + len(pad)
                buffer[4 + size:end] = pad
                message = bytes(_RELAY_VIEW[:end])
            else:
                message = _RELAY_VIEW[:4 + size]
        stats = self.stats
        sendto = self.client_sendto
        if sendto is None:
            allocation.sink(message)
        else:
            try:
                sendto(message, self.client_addr)
            except OSError:
                stats.dropped_packets += 1
        stats.packets_to_client += 1
        stats.bytes_to_client += size
        return not self.closed


class UdpServerSocket(_WatchedSocket):
    """The server's UDP socket: STUN requests and ChannelData from clients.

    It is also the ``link`` of its clients' allocations (``stream``, ``sink_for``,
    ``udp_target``).
    """

    batch = 256
    stream = False
    log_prefix = "turn-udp"

    def __init__(self, server: Any, host: str, port: int, sock: socket.socket | None = None):
        if sock is None:
            sock = bind_udp(host, port)
        self.server = server
        self.sockets = server.sockets
        self.datapath = server.datapath
        self.stats = server.stats
        self.allocations = server.table.by_key
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.closed = False
        self._fileno = sock.fileno()
        self._sendto = sock.sendto
        self._fast = getattr(self.sockets, "fast", None)
        self._buffer = bytearray(MAX_DATAGRAM + 4)
        self._view = memoryview(self._buffer)
        wanted = server.config.socket_buffer
        got = set_socket_buffers(sock, wanted)
        if got < wanted:
            _log.warn("turn: the UDP listener got a receive buffer of {got} bytes, not the "
                      "{wanted} of CT_TURN_SOCKET_BUFFER: raise net.core.rmem_max (sysctl) "
                      "so bursts and short stalls do not drop datagrams", got=got,
                      wanted=wanted)
        self.sockets.watch(self, busy=True)

    def sink_for(self, addr: tuple[str, int]) -> Callable:
        return _udp_sender(self.sock, addr, self.stats)

    def udp_target(self, addr: tuple[str, int]) -> tuple[Callable, tuple[str, int]]:
        """What a relay socket sends to this client with: ``sendto`` and ``addr``."""
        return self._sendto, addr

    def _forget(self) -> None:
        poller = getattr(self.sockets, "poller", None)
        if poller is not None:  # relay sockets must not send on a reused descriptor
            for relay in poller.fast_relays.values():
                if relay.client_fd == self._fileno:
                    relay.client_fd = -1

    def doRead(self) -> None:
        fast = self._fast
        if fast is not None:
            packets, size, dropped = fast.drain_listener(
                self._fileno, self.allocations, self._on_stun, self.datapath.drop_once,
                self.batch)
            stats = self.stats
            stats.packets_to_peer += packets
            stats.bytes_to_peer += size
            stats.dropped_packets += dropped
            return
        recv_into = self.sock.recvfrom_into
        buffer, view = self._buffer, self._view
        allocations = self.allocations
        channel_to_peer = self.datapath.channel_to_peer
        for _ in range(self.batch):
            try:
                size, addr = recv_into(buffer)
            except OSError as e:
                if e.errno in _READ_IGNORE:
                    return
                if e.errno == errno.ECONNREFUSED:
                    continue
                raise
            if size < 4:
                continue
            if len(addr) > 2:
                addr = addr[:2]
            first = buffer[0]
            if 0x40 <= first <= 0x7F:  # ChannelData (stun.CHANNEL_FIRST_MAX)
                length = (buffer[2] << 8) | buffer[3]
                end = 4 + length
                channel_to_peer(allocations.get(addr), (first << 8) | buffer[1],
                                view[4:end if end <= size else size], length)
            elif first < 0x40:
                self._answer(bytes(view[:size]), addr)
                if self.closed:
                    return
            else:
                self.stats.dropped_packets += 1

    def _on_stun(self, data: bytes, addr: tuple[str, int]) -> bool:
        """A STUN message the fast path leaves to Python; False once the socket closed."""
        self._answer(data, addr)
        return not self.closed

    def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self.server.handle_stun(data, addr, addr, self)
        except Exception:
            _log.failure("turn: error handling a UDP message from {addr}", addr=addr)
            return
        if reply is not None:
            try:
                self._sendto(reply, addr)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNREFUSED):
                    _log.warn("turn: cannot answer {addr}: {e}", addr=addr, e=e)
