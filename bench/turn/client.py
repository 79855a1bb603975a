"""The one TURN client the benchmark uses against both relays (ours and coturn).

Plain non-blocking UDP sockets and epoll, the codec from ``ct.turn.stun``; every session
allocates with REST API credentials and either binds channel 0x4000 to the echo peer
(``mode="channel"``: ChannelData both ways) or only creates a permission for it
(``mode="indication"``: Send indications out, Data indications back, as browsers do before
they bind channels).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

from ct.turn import auth, stun

CHANNEL = 0x4000
SEND_TID = b"bench-send!!"
_HDR = struct.Struct("!HH")
_STAMP = struct.Struct("!4sdI")
_MAGIC = b"RTT!"


class Session:
    """One client socket with an allocation and a channel to the peer."""

    __slots__ = ("sock", "fd", "state", "key", "nonce", "realm", "relayed", "sent", "received",
                 "next_at", "tid")

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.fd = self.sock.fileno()
        self.state = "new"
        self.key = None
        self.nonce = None
        self.realm = None
        self.relayed = None
        self.sent = 0
        self.received = 0
        self.next_at = 0.0
        self.tid = b""


class Client:
    def __init__(self, server: tuple[str, int], peer: tuple[str, int], secret: str,
                 mode: str = "channel"):
        assert mode in ("channel", "indication")
        self.server = server
        self.peer = peer
        self.mode = mode
        self.username, self.password = auth.rest_credentials(secret, "bench", 3600, time.time())
        self.sessions: list[Session] = []
        self.by_fd: dict[int, Session] = {}
        self.poll = select.epoll()

    def close(self):
        for s in self.sessions:
            s.sock.close()
        self.poll.close()

    # ------------------------------------------------------------ set-up state machine

    def _request(self, s: Session, method: int, attrs):
        s.tid = os.urandom(12)
        body = list(attrs(s.tid) if callable(attrs) else attrs)
        key = None
        if s.nonce is not None:
            body += [(stun.USERNAME, self.username.encode()), (stun.REALM, s.realm),
                     (stun.NONCE, s.nonce)]
            key = s.key
        s.sock.sendto(stun.encode_message(method, stun.REQUEST, s.tid, body, key=key),
                      self.server)

    def _allocate(self, s):
        self._request(s, stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, b"\x11\0\0\0"),
                                         (stun.LIFETIME, stun.encode_u32(3600))])

    def _bind(self, s):
        self._request(s, stun.CHANNEL_BIND, lambda tid: [
            (stun.CHANNEL_NUMBER, stun.encode_channel_number(CHANNEL)),
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(self.peer[0], self.peer[1], tid))])

    def _permit(self, s):
        self._request(s, stun.CREATE_PERMISSION, lambda tid: [
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(self.peer[0], 0, tid))])

    def frame(self, payload: bytes) -> bytes:
        """``payload`` to the peer: ChannelData, or a Send indication."""
        if self.mode == "channel":
            return _HDR.pack(CHANNEL, len(payload)) + payload
        return stun.encode_message(stun.SEND, stun.INDICATION, SEND_TID, [
            (stun.XOR_PEER_ADDRESS,
             stun.encode_xor_address(self.peer[0], self.peer[1], SEND_TID)),
            (stun.DATA_ATTR, payload)], add_fingerprint=False)

    @staticmethod
    def payload_at(data: bytes) -> int:
        """Where the payload starts in what the relay sent: after the ChannelData header,
        or in the DATA attribute of a Data indication (wherever the relay put it)."""
        if data[0] & 0xC0 == 0x40:
            return 4
        pos = stun.HEADER_LENGTH
        while pos + 4 <= len(data):
            kind, length = _HDR.unpack_from(data, pos)
            if kind == stun.DATA_ATTR:
                return pos + 4
            pos += 4 + stun.padded(length)
        return len(data)

    def _on_setup_reply(self, s: Session, data: bytes) -> None:
        try:
            m = stun.parse_message(data)
        except stun.StunError:
            return
        if m.transaction_id != s.tid:
            return
        if m.cls == stun.ERROR:
            code, reason = stun.decode_error(m.get(stun.ERROR_CODE))
            if code in (401, 438) and s.state in ("allocating", "binding", "permitting"):
                s.nonce, s.realm = m.get(stun.NONCE), m.get(stun.REALM)
                s.key = stun.long_term_key(self.username, s.realm.decode(), self.password)
                {"allocating": self._allocate, "binding": self._bind,
                 "permitting": self._permit}[s.state](s)
                return
            raise RuntimeError(f"TURN error {code} {reason} in state {s.state}")
        if s.state == "allocating":
            s.relayed = stun.decode_xor_address(m.get(stun.XOR_RELAYED_ADDRESS), m.transaction_id)
            s.state = "allocated"
        elif s.state in ("binding", "permitting"):
            s.state = "ready"

    def open(self, count: int, bind: bool = True, timeout: float = 60.0) -> float:
        """Create ``count`` allocations (and channels); returns the seconds the allocations took."""
        new = [Session() for _ in range(count)]
        for s in new:
            self.sessions.append(s)
            self.by_fd[s.fd] = s
            self.poll.register(s.fd, select.EPOLLIN)
        started = time.perf_counter()
        window = 64
        pending = list(reversed(new))
        inflight = set()
        deadline = time.monotonic() + timeout
        allocated_at = None
        while pending or inflight:
            while pending and len(inflight) < window:
                s = pending.pop()
                s.state = "allocating"
                self._allocate(s)
                inflight.add(s)
            for fd, _ in self.poll.poll(0.2):
                s = self.by_fd[fd]
                try:
                    data = s.sock.recv(65536)
                except BlockingIOError:
                    continue
                self._on_setup_reply(s, data)
                if s.state == "allocated":
                    if not bind:
                        s.state = "ready"
                    elif self.mode == "channel":
                        s.state = "binding"
                        self._bind(s)
                    else:
                        s.state = "permitting"
                        self._permit(s)
                if s.state == "ready":
                    inflight.discard(s)
            if time.monotonic() > deadline:
                raise RuntimeError(f"set-up timed out with {len(inflight)} sessions pending")
        allocated_at = time.perf_counter() - started
        return allocated_at

    def delete_all(self):
        for s in self.sessions:
            if s.relayed is not None:
                self._request(s, stun.REFRESH, [(stun.LIFETIME, b"\0\0\0\0")])
        time.sleep(0.5)

    # ------------------------------------------------------------ traffic

    def _drain(self, s: Session, on_payload) -> None:
        recv = s.sock.recv
        while True:
            try:
                data = recv(65536)
            except BlockingIOError:
                return
            on_payload(s, data)

    def flood(self, seconds: float, window: int = 8, size: int = 160) -> dict:
        """Keep about ``window`` messages in flight per session; count echoes.

        A session that saw no echo for 50 ms is primed again, so losses (a full socket
        buffer at the peer or the client) cannot stall the flood.
        """
        frame = self.frame(b"\x00" * size)
        server = self.server
        echoes = 0
        reprimed = 0
        for s in self.sessions:
            s.received = 0
            for _ in range(window):
                s.sock.sendto(frame, server)
        seen = {s.fd: 0 for s in self.sessions}
        end = time.monotonic() + seconds
        check_at = time.monotonic() + 0.05
        poll = self.poll.poll
        by_fd = self.by_fd
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= check_at:
                check_at = now + 0.05
                for s in self.sessions:
                    if s.received == seen[s.fd]:
                        reprimed += 1
                        for _ in range(window):
                            try:
                                s.sock.sendto(frame, server)
                            except BlockingIOError:
                                break
                    seen[s.fd] = s.received
            for fd, _ in poll(0.01):
                s = by_fd[fd]
                sock = s.sock
                while True:
                    try:
                        sock.recv(65536)
                    except BlockingIOError:
                        break
                    echoes += 1
                    s.received += 1
                    try:
                        sock.sendto(frame, server)
                    except BlockingIOError:
                        pass
        return {"echoes": echoes, "reprimed": reprimed}

    def paced(self, seconds: float, count: int | None = None, rate: float = 50.0,
              size: int = 160, grace: float = 1.0) -> dict:
        """The first ``count`` sessions send ``rate`` packets/s each; sent, received, loss."""
        interval = 1.0 / rate
        frame = self.frame(b"\x00" * size)
        server = self.server
        now = time.monotonic()
        sessions = self.sessions[:count] if count else self.sessions
        n = len(sessions)
        for i, s in enumerate(sessions):
            s.sent = s.received = 0
            s.next_at = now + interval * i / n  # spread the sessions over one interval
        end = now + seconds
        poll = self.poll.poll
        by_fd = self.by_fd
        late = 0.0
        skipped = 0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            for s in sessions:
                if s.next_at <= now:
                    late = max(late, now - s.next_at)
                    s.sock.sendto(frame, server)
                    s.sent += 1
                    s.next_at += interval
                    if s.next_at < now:  # the client was descheduled: skip, do not burst
                        skipped += int((now - s.next_at) / interval) + 1
                        s.next_at = now + interval
            for fd, _ in poll(0.001):
                s = by_fd[fd]
                while True:
                    try:
                        s.sock.recv(65536)
                    except BlockingIOError:
                        break
                    s.received += 1
        stop = time.monotonic() + grace
        while time.monotonic() < stop:
            for fd, _ in poll(0.05):
                s = by_fd[fd]
                while True:
                    try:
                        s.sock.recv(65536)
                    except BlockingIOError:
                        break
                    s.received += 1
        sent = sum(s.sent for s in sessions)
        received = sum(s.received for s in sessions)
        return {"sent": sent, "received": received,
                "loss": (sent - received) / sent if sent else 0.0, "client_max_late_s": late,
                "client_skipped": skipped}

    def rtt(self, count: int = 2000, interval: float = 0.002, size: int = 160) -> dict:
        """Round trips of one session, one message at a time, in microseconds."""
        s = self.sessions[0]
        server = self.server
        samples = []
        for t in self.sessions:  # forget echoes of earlier steps
            self._drain(t, lambda *_: None)
        pad = b"\x00" * (size - _STAMP.size)
        for i in range(count):
            frame = self.frame(_STAMP.pack(_MAGIC, time.perf_counter(), i) + pad)
            s.sock.sendto(frame, server)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                events = self.poll.poll(0.1)
                got = False
                for fd, _ in events:
                    t = self.by_fd[fd]
                    while True:
                        try:
                            data = t.sock.recv(65536)
                        except BlockingIOError:
                            break
                        at = self.payload_at(data)
                        if t is s and len(data) >= at + _STAMP.size:
                            magic, sent_at, seq = _STAMP.unpack_from(data, at)
                            if magic == _MAGIC and seq == i:
                                samples.append((time.perf_counter() - sent_at) * 1e6)
                                got = True
                if got:
                    break
            time.sleep(interval)
        samples.sort()
        if not samples:
            return {"p50_us": None, "p99_us": None, "lost": count}

        def pct(p):
            return samples[min(len(samples) - 1, int(p * len(samples)))]
        return {"p50_us": pct(0.50), "p99_us": pct(0.99), "lost": count - len(samples)}
