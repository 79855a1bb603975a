"""The session relay: sessions, participants, sequence numbers and the replay log. No I/O.

Every message the edge sends inside a session (payload frames and events alike) gets the
next number of the session's sequence and goes into the session's bounded replay log.
A participant acknowledges what it has received; one whose connection drops resumes
with the last number it saw and receives the rest of the log addressed to it. Frames
are encoded once and shared by all receivers and the log (see :class:`Outgoing`).

The adapters in ``ct.edge.ws`` feed this module; it talks back to them only through
the small :class:`Connection` protocol, so tests drive it with fakes and a ``Clock``.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ct.protocol import errors
from ct.protocol.errors import ProtocolError
from ct.protocol.wire import (
    BROADCAST,
    DOWNSTREAM_HEADER,
    KNOWN_FLAGS,
    MAX_PARTICIPANT_ID,
    MAX_NAME,
    MAX_TITLE,
    MAX_TOKEN,
    UPSTREAM_HEADER,
    UPSTREAM_HEADER_SIZE,
    encode_control,
    field_int,
    field_str,
)

EDGE_SENDER = 0
HOST = "host"
GUEST = "guest"


@dataclass(frozen=True)
class Limits:
    """Per-edge limits (from the ``CT_*`` settings of the same names)."""

    max_participants: int = 50
    max_sessions_per_host: int = 20
    max_people: int = 0  # CT_MAXCONNECTIONS; 0 = no cap
    resume_window: float = 60.0
    replay_max_frames: int = 4096
    replay_max_bytes: int = 8 * 1024 * 1024
    ack_every: int = 256  # the edge acknowledges a participant's frames this often


class Outgoing:
    """One message from the edge: encoded once, sent to many, kept in the replay log.

    ``prepared`` is a cache slot for the adapter (a framed websocket message).
    """

    __slots__ = ("payload", "is_binary", "seq", "sender", "target", "prepared")

    def __init__(self, payload: bytes, is_binary: bool, seq: int, sender: int, target: int):
        self.payload = payload
        self.is_binary = is_binary
        self.seq = seq
        self.sender = sender
        self.target = target
        self.prepared = None

    def for_participant(self, pid: int) -> bool:
        return self.sender != pid and (self.target == BROADCAST or self.target == pid)


class Connection(Protocol):
    """What the relay needs from a participant's connection."""

    peer_host: str
    stickiness: str | None  # the request's ctstickiness value, echoed in ``hosted``

    def send(self, message: Outgoing) -> None: ...

    def send_control(self, message: dict[str, Any]) -> None: ...

    def close(self, code: errors.ErrorCode, message: str) -> None: ...


class Participant:
    __slots__ = ("id", "name", "role", "client", "token", "conn", "acked", "received",
                 "joined_at", "away_timer", "session", "lost")

    def __init__(self, session: "Session", pid: int, name: str, role: str, client: str | None,
                 token: str, conn: Connection, now: float):
        self.session = session
        self.id = pid
        self.name = name
        self.role = role
        self.client = client
        self.token = token
        self.conn: Connection | None = conn
        self.acked = session.seq  # everything before joining counts as seen
        self.received = 0  # data frames accepted from this participant
        self.joined_at = now
        self.away_timer = None
        self.lost = 0  # seq of the newest frame sent to this participant alone that overflowed

    def recoverable(self, last_seq: int) -> bool:
        """Whether the log still holds every message addressed to this participant after
        ``last_seq``: nothing for it (directed, or a broadcast by someone else) overflowed."""
        session = self.session
        if session.lost_broadcast_sender == self.id:
            broadcast = session.lost_broadcast_other
        else:
            broadcast = session.lost_broadcast
        return last_seq >= self.lost and last_seq >= broadcast

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "client": self.client,
                "connected": self.conn is not None}


class Session:
    __slots__ = ("id", "join_token", "host_peer", "team", "title", "created_at", "participants",
                 "next_pid", "seq", "log", "log_bytes", "lost_broadcast", "lost_broadcast_sender",
                 "lost_broadcast_other", "ended", "host_client", "frames", "internal", "timed_out",
                 "guests_sign_in")

    def __init__(self, sid: str, join_token: str, host_peer: str, team: str | None,
                 title: str | None, now: float):
        self.id = sid
        self.join_token = join_token
        self.host_peer = host_peer
        self.team = team
        self.title = title
        self.created_at = now
        self.participants: dict[int, Participant] = {}
        self.next_pid = 1
        self.seq = 0
        self.log: deque[Outgoing] = deque()
        self.log_bytes = 0
        # What overflowed the log, for deciding ``recovered`` per participant in O(1): the
        # newest broadcast that overflowed, its sender, and the newest overflowed broadcast
        # of any other sender (a broadcast is not addressed to its own sender). Frames sent
        # to one participant are tracked on that participant (``Participant.lost``).
        self.lost_broadcast = 0
        self.lost_broadcast_sender = -1
        self.lost_broadcast_other = 0
        self.ended = False
        self.host_client: str | None = None
        self.frames = 0
        self.internal = False  # the edge's own self-probe: kept out of audit and metrics
        self.timed_out: set[int] = set()  # guests dropped after their resume window
        self.guests_sign_in = False  # the host asked that guests sign in (``guestSignIn``)

    @property
    def host(self) -> Participant | None:
        for p in self.participants.values():
            if p.role == HOST:
                return p
        return None

    def summary(self) -> dict[str, Any]:
        host = self.host
        return {"session": self.id, "host": host.name if host else None, "title": self.title,
                "participants": len(self.participants), "started": self.created_at}


class RelayStats:
    """Counters read by ``/health``, ``/metrics`` and the locator link."""

    __slots__ = ("frames_in", "bytes_in", "deliveries", "bytes_out", "sessions_hosted",
                 "resumes", "resumes_unrecovered", "errors")

    def __init__(self):
        self.frames_in = 0
        self.bytes_in = 0
        self.deliveries = 0
        self.bytes_out = 0
        self.sessions_hosted = 0
        self.resumes = 0
        self.resumes_unrecovered = 0
        self.errors: dict[str, int] = {}


Listener = Callable[[str, Session, Participant | None, str | None], None]


class Relay:
    """All sessions of one edge."""

    def __init__(self, clock, limits: Limits = Limits(), token: Callable[[int], str] = None):
        self.clock = clock
        self.limits = limits
        self.sessions: dict[str, Session] = {}
        self.people = 0  # participants in sessions, connected or within their resume window
        self.stats = RelayStats()
        self.listeners: list[Listener] = []
        self._token = token or secrets.token_urlsafe
        self._hosted_by_peer: dict[str, int] = {}
        self.host_check: Callable[[dict[str, Any]], str | None] | None = None
        # Guests' sign-in (CT_GUEST_AUTH=sso or the host's ``guestSignIn``): may raise;
        # returns the signed-in name to show, or None when the session needs no sign-in.
        self.guest_check: Callable[[Session, dict[str, Any]], str | None] | None = None
        self.probe_token: str | None = None
        self.draining = False  # stopping: existing sessions go on, no new ones

    # ------------------------------------------------------------ handshakes

    def host(self, conn: Connection, message: dict[str, Any]) -> Participant:
        """Create a session for ``conn``; reply ``hosted``."""
        name = field_str(message, "name", MAX_NAME)
        client = field_str(message, "client", MAX_NAME, required=False)
        title = field_str(message, "title", MAX_TITLE, required=False)
        team = field_str(message, "team", MAX_NAME, required=False)
        guests_sign_in = message.get("guestSignIn", False)
        if not isinstance(guests_sign_in, bool):
            raise ProtocolError(errors.BAD_MESSAGE, "'guestSignIn' must be true or false")
        probe = message.get("probe")
        internal = (self.probe_token is not None and isinstance(probe, str)
                    and hmac.compare_digest(probe.encode(), self.probe_token.encode()))
        if self.draining:
            raise ProtocolError(errors.SHUTTING_DOWN, "this edge is stopping; host the "
                                "session elsewhere")
        if self.host_check is not None and not internal:
            # May raise (sign-in, team token, minimum client version); a name returned is
            # the signed-in identity's, shown instead of the one the client sent.
            name = self.host_check(message) or name
        if self._hosted_by_peer.get(conn.peer_host, 0) >= self.limits.max_sessions_per_host:
            raise ProtocolError(errors.TOO_MANY_SESSIONS,
                                f"{conn.peer_host} already hosts "
                                f"{self.limits.max_sessions_per_host} sessions")
        self._check_edge_capacity()
        sid = self._new_session_id()
        session = Session(sid, self._token(18), conn.peer_host, team, title, self.clock.seconds())
        session.host_client = client
        session.internal = internal
        session.guests_sign_in = guests_sign_in
        host_secret = self._token(24)
        host = self._add(session, name, HOST, client, host_secret, conn)
        self.sessions[sid] = session
        self._hosted_by_peer[conn.peer_host] = self._hosted_by_peer.get(conn.peer_host, 0) + 1
        if not internal:
            self.stats.sessions_hosted += 1
        conn.send_control({
            "type": "hosted", "session": sid, "participant": host.id, "hostSecret": host_secret,
            "joinToken": session.join_token, "seq": session.seq, "limits": self._limits_view(),
            "stickiness": getattr(conn, "stickiness", None),
        })
        self._notify("session-started", session, host)
        return host

    def join(self, conn: Connection, message: dict[str, Any]) -> Participant:
        """Add ``conn`` to a session as a guest; reply ``joined``; tell the others."""
        session = self._session(message)
        token = field_str(message, "token", MAX_TOKEN)
        name = field_str(message, "name", MAX_NAME)
        client = field_str(message, "client", MAX_NAME, required=False)
        if not hmac.compare_digest(token.encode(), session.join_token.encode()):
            raise ProtocolError(errors.FORBIDDEN, "wrong join token for this session")
        if self.guest_check is not None:
            name = self.guest_check(session, message) or name
        if len(session.participants) >= self.limits.max_participants:
            raise ProtocolError(errors.SESSION_FULL, f"session has its maximum of "
                                f"{self.limits.max_participants} participants")
        self._check_edge_capacity()
        guest = self._add(session, name, GUEST, client, self._token(24), conn)
        conn.send_control({
            "type": "joined", "session": session.id, "participant": guest.id,
            "resumeToken": guest.token, "seq": session.seq, "title": session.title,
            "participants": [p.describe() for p in session.participants.values()],
            "limits": self._limits_view(),
        })
        self._event(session, {"type": "participant-joined", "participant": guest.describe()},
                    sender=guest.id)
        self._notify("participant-joined", session, guest)
        return guest

    def resume(self, conn: Connection, message: dict[str, Any]) -> Participant:
        """Reattach a participant; replay what it missed; tell the others it is back."""
        session = self._session(message)
        pid = field_int(message, "participant", 1, MAX_PARTICIPANT_ID)
        token = field_str(message, "token", MAX_TOKEN)
        last_seq = field_int(message, "lastSeq", 0)
        p = session.participants.get(pid)
        if p is None:
            if pid in session.timed_out:
                raise ProtocolError(errors.RESUME_EXPIRED, f"participant {pid} was dropped "
                                    f"after the {self.limits.resume_window:g} s resume window")
            raise ProtocolError(errors.NOT_FOUND, f"no participant {pid} in this session")
        if not hmac.compare_digest(token.encode(), p.token.encode()):
            raise ProtocolError(errors.FORBIDDEN, "wrong resume token")
        if last_seq > session.seq:
            raise ProtocolError(errors.BAD_MESSAGE, f"lastSeq {last_seq} is ahead of the "
                                f"session ({session.seq})")
        if p.conn is not None:
            old, p.conn = p.conn, None
            old.close(errors.SUPERSEDED, "this participant resumed on another connection")
        if p.away_timer is not None:
            if p.away_timer.active():
                p.away_timer.cancel()
            p.away_timer = None
        p.conn = conn
        recovered = p.recoverable(last_seq)
        missed = [m for m in session.log if m.seq > last_seq and m.for_participant(p.id)]
        self.stats.resumes += 1
        if not recovered:
            self.stats.resumes_unrecovered += 1
        p.acked = max(p.acked, last_seq)
        conn.send_control({
            "type": "resumed", "session": session.id, "participant": p.id,
            "received": p.received, "recovered": recovered, "missed": len(missed),
            "seq": session.seq,
            "participants": [q.describe() for q in session.participants.values()],
        })
        for m in missed:
            conn.send(m)
        self.stats.deliveries += len(missed)
        self._event(session, {"type": "participant-back", "participant": p.id}, sender=p.id)
        self._notify("participant-back", session, p)
        return p

    # ------------------------------------------------------------ traffic

    def data(self, p: Participant, frame: bytes) -> None:
        """Relay one binary frame from ``p`` to its addressees (the hot path)."""
        if len(frame) < UPSTREAM_HEADER_SIZE:
            raise ProtocolError(errors.BAD_MESSAGE, "data frame shorter than its 5-byte header")
        flags, to = UPSTREAM_HEADER.unpack_from(frame)
        if flags & ~KNOWN_FLAGS:
            raise ProtocolError(errors.BAD_MESSAGE, f"unknown flags 0x{flags:02x}")
        session = p.session
        if to != BROADCAST and to not in session.participants or to == p.id:
            self.count_error(errors.UNKNOWN_TARGET)
            p.received += 1  # consumed, so a resume does not resend it
            p.conn.send_control({"type": "error", "code": errors.UNKNOWN_TARGET.name,
                                 "message": f"no participant {to} in this session; frame dropped",
                                 "received": p.received})
            return
        p.received += 1
        session.seq += 1
        session.frames += 1
        seq = session.seq
        out = Outgoing(DOWNSTREAM_HEADER.pack(flags, seq, p.id) + frame[UPSTREAM_HEADER_SIZE:],
                       True, seq, p.id, to)
        stats = self.stats
        stats.frames_in += 1
        stats.bytes_in += len(frame)
        sent = 0
        if to == BROADCAST:
            for q in session.participants.values():
                if q is not p and q.conn is not None:
                    q.conn.send(out)
                    sent += 1
        else:
            q = session.participants[to]
            if q.conn is not None:
                q.conn.send(out)
                sent = 1
        stats.deliveries += sent
        stats.bytes_out += sent * len(out.payload)
        self._log(session, out)
        if p.received % self.limits.ack_every == 0:
            p.conn.send_control({"type": "ack", "received": p.received})

    def ack(self, p: Participant, message: dict[str, Any]) -> None:
        """The participant has everything up to ``seq``: the log may forget it."""
        seq = field_int(message, "seq", 0)
        session = p.session
        if seq > session.seq:
            raise ProtocolError(errors.BAD_MESSAGE, f"ack of seq {seq} ahead of the session")
        if seq > p.acked:
            p.acked = seq
            self._trim_acked(session)

    # ------------------------------------------------------------ departures

    def leave(self, p: Participant) -> None:
        """A participant leaves on purpose; a leaving host ends the session.

        The leaving connection is detached first: it closes normally, not with an error.
        """
        p.conn = None
        if p.role == HOST:
            self.end(p.session, "host-left")
        else:
            self._drop(p, "left")

    def kick(self, p: Participant, message: dict[str, Any]) -> None:
        """The host removes a guest. A guest already gone is a harmless error reply
        (``unknown-target``, the host's connection stays open): it may have just left."""
        if p.role != HOST:
            raise ProtocolError(errors.NOT_ALLOWED, "only the host can remove participants")
        pid = field_int(message, "participant", 1, MAX_PARTICIPANT_ID)
        if pid not in p.session.participants:
            raise ProtocolError(errors.UNKNOWN_TARGET, f"no participant {pid} in this session "
                                "(already gone); nobody was removed")
        self.remove(p.session, pid, "removed by the host")

    def remove(self, session: Session, pid: int, why: str = "removed") -> None:
        """Remove a guest (host or administrator action)."""
        target = session.participants.get(pid)
        if target is None:
            raise ProtocolError(errors.NOT_FOUND, f"no participant {pid} in this session")
        if target.role == HOST:
            raise ProtocolError(errors.NOT_ALLOWED, "the host cannot be removed; end the session")
        conn = target.conn
        self._drop(target, "removed")
        if conn is not None:
            conn.close(errors.REMOVED, why)

    def connection_lost(self, p: Participant, conn: Connection) -> None:
        """``conn`` closed without ``leave``: keep ``p`` for the resume window."""
        if p.conn is not conn or p.session.ended or p.id not in p.session.participants:
            return  # superseded, already gone, or session over
        p.conn = None
        window = self.limits.resume_window
        if window <= 0:
            self._expire(p)
            return
        p.away_timer = self.clock.callLater(window, self._expire, p)
        self._event(p.session, {"type": "participant-away", "participant": p.id,
                                "resumeWindow": window}, sender=p.id)
        self._notify("participant-away", p.session, p)

    def end(self, session: Session, reason: str) -> None:
        """End a session: tell everyone, close their connections, forget it."""
        if session.ended:
            return
        self._event(session, {"type": "session-ended", "reason": reason})
        session.ended = True
        for p in list(session.participants.values()):
            if p.away_timer is not None and p.away_timer.active():
                p.away_timer.cancel()
            if p.conn is not None:
                conn, p.conn = p.conn, None
                conn.close(errors.SESSION_ENDED, f"session ended: {reason}")
        self.people -= len(session.participants)
        self.sessions.pop(session.id, None)
        n = self._hosted_by_peer.get(session.host_peer, 1) - 1
        if n > 0:
            self._hosted_by_peer[session.host_peer] = n
        else:
            self._hosted_by_peer.pop(session.host_peer, None)
        session.log.clear()
        session.log_bytes = 0
        self._notify("session-ended", session, None, reason)

    def shutdown(self) -> None:
        """End every session (the edge is stopping and its memory goes with it)."""
        for session in list(self.sessions.values()):
            self.end(session, "edge-shutdown")

    # ------------------------------------------------------------ views

    @property
    def connected(self) -> int:
        return sum(1 for s in self.sessions.values() for p in s.participants.values()
                   if p.conn is not None)

    def users(self) -> set[str]:
        return {p.name for s in self.sessions.values() if not s.internal
                for p in s.participants.values()}

    # ------------------------------------------------------------ internals

    def _session(self, message: dict[str, Any]) -> Session:
        sid = field_str(message, "session", 64)
        session = self.sessions.get(sid)
        if session is None:
            raise ProtocolError(errors.NOT_FOUND, f"no session {sid!r} on this edge")
        return session

    def _new_session_id(self) -> str:
        """A free id that never starts with ``-``, so no command line (``ctctl kick ID``)
        takes it for an option."""
        for _ in range(100):
            sid = self._token(9)
            if sid not in self.sessions and not sid.startswith("-"):
                return sid
        raise RuntimeError("could not find a free session id")  # pragma: no cover

    def _check_edge_capacity(self) -> None:
        cap = self.limits.max_people
        if cap and self.people >= cap:
            raise ProtocolError(errors.EDGE_FULL, f"this edge has its maximum of {cap} people "
                                "in sessions")

    def _add(self, session: Session, name: str, role: str, client: str | None, token: str,
             conn: Connection) -> Participant:
        p = Participant(session, session.next_pid, name, role, client, token, conn,
                        self.clock.seconds())
        session.next_pid += 1
        session.participants[p.id] = p
        self.people += 1
        return p

    def _drop(self, p: Participant, reason: str) -> None:
        session = p.session
        if session.participants.pop(p.id, None) is None:
            return
        self.people -= 1
        if p.away_timer is not None and p.away_timer.active():
            p.away_timer.cancel()
        p.away_timer = None
        p.conn = None
        self._event(session, {"type": "participant-left", "participant": p.id,
                              "name": p.name, "reason": reason}, sender=p.id)
        self._notify("participant-left", session, p, reason)
        self._trim_acked(session)

    def _expire(self, p: Participant) -> None:
        p.away_timer = None
        if p.conn is not None or p.session.ended:
            return
        if p.role == HOST:
            self.end(p.session, "host-timeout")
        else:
            p.session.timed_out.add(p.id)
            self._drop(p, "timeout")

    def _event(self, session: Session, body: dict[str, Any], sender: int = EDGE_SENDER) -> None:
        """Number an event, send it to everyone it concerns, and log it."""
        session.seq += 1
        body["seq"] = session.seq
        out = Outgoing(encode_control(body), False, session.seq, sender, BROADCAST)
        for q in session.participants.values():
            if q.id != sender and q.conn is not None:
                q.conn.send(out)
        self._log(session, out)

    def _log(self, session: Session, out: Outgoing) -> None:
        log = session.log
        log.append(out)
        session.log_bytes += len(out.payload)
        limits = self.limits
        while len(log) > limits.replay_max_frames or session.log_bytes > limits.replay_max_bytes:
            old = log.popleft()
            session.log_bytes -= len(old.payload)
            # ``old`` overflowed before everyone it was for had it: remember for whom.
            if old.target != BROADCAST:
                q = session.participants.get(old.target)
                if q is not None:
                    q.lost = old.seq
            elif old.sender == session.lost_broadcast_sender:
                session.lost_broadcast = old.seq
            else:
                # Overflow goes in seq order: the previous newest is the newest by a sender
                # other than this one.
                session.lost_broadcast_other = session.lost_broadcast
                session.lost_broadcast = old.seq
                session.lost_broadcast_sender = old.sender

    def _trim_acked(self, session: Session) -> None:
        if not session.participants:
            return
        low = min(p.acked for p in session.participants.values())
        log = session.log
        while log and log[0].seq <= low:
            old = log.popleft()
            session.log_bytes -= len(old.payload)
        # Not an overflow: entries everyone acknowledged are never asked for again.

    def _limits_view(self) -> dict[str, Any]:
        return {"maxParticipants": self.limits.max_participants,
                "resumeWindow": self.limits.resume_window,
                "replayMaxFrames": self.limits.replay_max_frames,
                "ackEvery": self.limits.ack_every}

    def count_error(self, code: errors.ErrorCode) -> None:
        self.stats.errors[code.name] = self.stats.errors.get(code.name, 0) + 1

    def _notify(self, kind: str, session: Session, p: Participant | None,
                reason: str | None = None) -> None:
        for listener in self.listeners:
            listener(kind, session, p, reason)

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)
