"""Error codes and websocket close codes of client protocol v1 (see ``docs/protocol.md``).

An error is a value on the wire: the edge sends ``{"type": "error", "code", "message"}``
and, when the error is fatal for the connection, closes it with the matching close code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    name: str
    close_code: int | None  # None: the connection stays open
    meaning: str


BAD_MESSAGE = ErrorCode("bad-message", 4000, "malformed JSON, unknown type, missing or bad field, "
                        "bad binary header")
UNSUPPORTED_VERSION = ErrorCode("unsupported-version", 4001, "the client speaks a protocol "
                                "version this edge does not")
HANDSHAKE_TIMEOUT = ErrorCode("handshake-timeout", 4002, "no first message within the "
                              "handshake timeout")
FORBIDDEN = ErrorCode("forbidden", 4003, "wrong join token, resume token, host secret or team token")
NOT_FOUND = ErrorCode("not-found", 4004, "unknown (or already ended) session or participant")
CLIENT_TOO_OLD = ErrorCode("client-too-old", 4005, "the client version is below the minimum "
                           "allowed to host")
SUPERSEDED = ErrorCode("superseded", 4009, "the same participant resumed on another connection")
SESSION_ENDED = ErrorCode("session-ended", 4010, "the session ended (host left, timed out, "
                          "or an administrator ended it)")
REMOVED = ErrorCode("removed", 4011, "the host or an administrator removed this participant")
RESUME_EXPIRED = ErrorCode("resume-expired", 4012, "the resume window passed; the participant "
                           "was dropped")
SESSION_FULL = ErrorCode("session-full", 4013, "the session has its maximum of participants")
EDGE_FULL = ErrorCode("edge-full", 4014, "this edge has its maximum of people in sessions "
                      "(CT_MAXCONNECTIONS)")
TOO_MANY_SESSIONS = ErrorCode("too-many-sessions", 4015, "this client address hosts its "
                              "maximum of sessions")
NOT_ALLOWED = ErrorCode("not-allowed", None, "the action needs the host role; the connection "
                        "stays open")
UNKNOWN_TARGET = ErrorCode("unknown-target", None, "a frame or a kick named a participant not "
                           "(or no longer) in the session; nothing happens, the connection "
                           "stays open")
PRESENCE_DISABLED = ErrorCode("presence-disabled", 4016, "team presence is not configured on "
                              "this edge (CT_TEAM_SECRET)")
RATE_LIMITED = ErrorCode("rate-limited", 4029, "the connection sent more messages than the "
                         "rate limit allows")
SHUTTING_DOWN = ErrorCode("shutting-down", 4017, "the edge is stopping: no new sessions; "
                          "host on another edge")
SIGN_IN_REQUIRED = ErrorCode("sign-in-required", 4018, "the edge requires hosts and team "
                            "members (CT_HOST_AUTH=sso) or guests (CT_GUEST_AUTH=sso, the "
                            "host's guestSignIn) to sign in: the host token is missing, "
                            "expired, for another audience or not valid")

ALL_CODES = [
    BAD_MESSAGE, UNSUPPORTED_VERSION, HANDSHAKE_TIMEOUT, FORBIDDEN, NOT_FOUND, CLIENT_TOO_OLD,
    SUPERSEDED, SESSION_ENDED, REMOVED, RESUME_EXPIRED, SESSION_FULL, EDGE_FULL,
    TOO_MANY_SESSIONS, NOT_ALLOWED, UNKNOWN_TARGET, PRESENCE_DISABLED, RATE_LIMITED,
    SHUTTING_DOWN, SIGN_IN_REQUIRED,
]
BY_NAME = {c.name: c for c in ALL_CODES}


class ProtocolError(Exception):
    """Raised by pure protocol code; adapters turn it into an error frame (and a close)."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def fatal(self) -> bool:
        return self.code.close_code is not None
