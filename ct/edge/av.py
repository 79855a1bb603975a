"""Call metrics from the clients' ``av-report`` control messages (docs/av.md).

Clients in a call (js/core/av.js) report counters only: whether they are in the call and
how many of their peer connections run through a TURN relay or directly. No names, no
addresses, no media. The edge keeps each participant's newest report while it is in the
session and sums them for the metrics. Pure logic: the reactor's clock is passed in.
"""

from __future__ import annotations

from typing import Any, Callable

from ct.protocol import errors
from ct.protocol.errors import ProtocolError

MAX_PEERS = 15  # a mesh call has at most 5 others (docs/av.md); a little room for later
REPORT_INTERVAL = 2.0  # seconds: a client reports at most this often (more are ignored)
REPORT_FIELDS = ("inCall", "peers", "relayed", "direct")


def parse_av_report(message: dict[str, Any]) -> dict[str, Any]:
    """The checked counters of one ``av-report``; ProtocolError for a malformed one."""
    unknown = set(message) - {"type", *REPORT_FIELDS}
    if unknown:
        raise ProtocolError(errors.BAD_MESSAGE, f"av-report: unknown field {sorted(unknown)[0]!r}")
    in_call = message.get("inCall", False)
    if not isinstance(in_call, bool):
        raise ProtocolError(errors.BAD_MESSAGE, "av-report: inCall must be true or false")
    counts = {}
    for field in ("peers", "relayed", "direct"):
        value = message.get(field, 0)
        if type(value) is not int or not 0 <= value <= MAX_PEERS:
            raise ProtocolError(errors.BAD_MESSAGE,
                                f"av-report: {field} must be a whole number 0..{MAX_PEERS}")
        counts[field] = value
    if counts["relayed"] + counts["direct"] > counts["peers"]:
        raise ProtocolError(errors.BAD_MESSAGE, "av-report: relayed + direct exceed peers")
    if not in_call and counts["peers"]:
        raise ProtocolError(errors.BAD_MESSAGE, "av-report: peers while not in the call")
    return {"in_call": in_call, **counts}


class AvReports:
    """Each participant's newest report, by (session id, participant id)."""

    def __init__(self, seconds: Callable[[], float], interval: float = REPORT_INTERVAL):
        self._seconds = seconds
        self._interval = interval
        self._reports: dict[tuple[str, int], dict[str, Any]] = {}
        self._last: dict[tuple[str, int], float] = {}
        self.reports_total = 0
        self.reports_ignored = 0

    def report(self, session_id: str, participant_id: int, message: dict[str, Any]) -> bool:
        """Takes one ``av-report`` (checked first); False when it came too soon and was
        ignored."""
        counts = parse_av_report(message)
        key = (session_id, participant_id)
        now = self._seconds()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self.reports_ignored += 1
            return False
        self._last[key] = now
        self.reports_total += 1
        if counts["in_call"]:
            self._reports[key] = counts
        else:
            self._reports.pop(key, None)
        return True

    def forget(self, session_id: str, participant_id: int | None = None) -> None:
        """A participant left (or, with None, the session ended): its reports go."""
        for key in [k for k in self._reports if k[0] == session_id
                    and (participant_id is None or k[1] == participant_id)]:
            del self._reports[key]
        for key in [k for k in self._last if k[0] == session_id
                    and (participant_id is None or k[1] == participant_id)]:
            del self._last[key]

    def on_relay_event(self, kind: str, session: Any, participant: Any, reason: Any) -> None:
        """An edge relay listener (``Relay.add_listener``)."""
        if kind == "session-ended":
            self.forget(session.id)
        elif kind == "participant-left" and participant is not None:
            self.forget(session.id, participant.id)

    def snapshot(self) -> dict[str, Any]:
        """Calls (sessions with two or more participants in the call), participants in
        calls, and their peer connections by path (each connection counted by both ends)."""
        per_session: dict[str, int] = {}
        relayed = direct = 0
        for (session_id, _), counts in self._reports.items():
            per_session[session_id] = per_session.get(session_id, 0) + 1
            relayed += counts["relayed"]
            direct += counts["direct"]
        return {
            "calls": sum(1 for n in per_session.values() if n >= 2),
            "participants_in_calls": sum(per_session.values()),
            "peer_connections": {"relayed": relayed, "direct": direct},
            "reports_total": self.reports_total,
            "reports_ignored": self.reports_ignored,
        }
