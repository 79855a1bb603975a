"""Administrator actions on an edge's relay, shared by the locator link and the lone edge.

No content is ever listed: the edge only knows who is in a session, never what they edit.
"""

from __future__ import annotations

from typing import Any

from ct.protocol.errors import ProtocolError

REMOVED_WHY = "removed by an administrator"
ENDED_REASON = "ended-by-admin"


class AdminError(Exception):
    """An action that cannot be done; ``code`` is ``not-found`` or ``not-allowed``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def list_sessions(relay) -> list[dict[str, Any]]:
    """Every session (internal probes excluded) with its participants."""
    out = []
    for session in relay.sessions.values():
        if session.internal or session.ended:
            continue
        host = session.host
        out.append({
            "session": session.id, "team": session.team, "title": session.title,
            "started": session.created_at, "host": host.name if host else None,
            "client": session.host_client,
            "participants": [
                {**p.describe(), "joined": p.joined_at}
                for p in sorted(session.participants.values(), key=lambda p: p.id)],
        })
    out.sort(key=lambda s: s["started"])
    return out


def _session(relay, session_id: Any):
    session = relay.sessions.get(session_id) if isinstance(session_id, str) else None
    if session is None or session.internal or session.ended:
        raise AdminError("not-found", f"no session {session_id!r} on this edge")
    return session


def remove_participant(relay, session_id: Any, participant: Any) -> dict[str, Any]:
    """Remove a guest; returns what it was (``id``, ``name``, ``role``)."""
    session = _session(relay, session_id)
    try:
        pid = int(participant)
    except (TypeError, ValueError):
        raise AdminError("not-found", f"no participant {participant!r}") from None
    target = session.participants.get(pid)
    if target is None:
        raise AdminError("not-found", f"no participant {pid} in session {session_id}")
    described = target.describe()
    try:
        relay.remove(session, pid, REMOVED_WHY)
    except ProtocolError as e:
        raise AdminError("not-allowed", e.message) from None
    return described


def end_session(relay, session_id: Any) -> dict[str, Any]:
    session = _session(relay, session_id)
    host = session.host
    summary = {"session": session.id, "host": host.name if host else None,
               "participants": len(session.participants)}
    relay.end(session, ENDED_REASON)
    return summary
