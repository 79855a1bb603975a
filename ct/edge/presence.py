"""Team presence: who of a team is online and which of its sessions run. No I/O.

Members subscribe with a connection; every change is pushed at once to every member of
the team. Sessions appear in a team when their host named the team (and proved it with
the team token) in its ``host`` message.
"""

from __future__ import annotations

from typing import Any, Protocol

from ct.protocol.wire import encode_control


class Member(Protocol):
    user: str
    client: str | None

    def send_raw(self, payload: bytes) -> None: ...


class Team:
    __slots__ = ("name", "members", "sessions")

    def __init__(self, name: str):
        self.name = name
        self.members: dict[str, list[Member]] = {}  # user -> their open connections
        self.sessions: dict[str, dict[str, Any]] = {}


class PresenceHub:
    def __init__(self, clock):
        self.clock = clock
        self.teams: dict[str, Team] = {}

    def subscribe(self, team_name: str, member: Member) -> None:
        team = self.teams.get(team_name)
        if team is None:
            team = self.teams[team_name] = Team(team_name)
        first = member.user not in team.members
        team.members.setdefault(member.user, []).append(member)
        member.send_raw(encode_control(self._state(team)))
        if first:
            self._broadcast(team, {"type": "member-online", "user": member.user,
                                   "client": member.client}, skip=member)

    def unsubscribe(self, team_name: str, member: Member) -> None:
        team = self.teams.get(team_name)
        if team is None:
            return
        conns = team.members.get(member.user)
        if not conns or member not in conns:
            return
        conns.remove(member)
        if not conns:
            del team.members[member.user]
            self._broadcast(team, {"type": "member-offline", "user": member.user})
        self._forget_if_empty(team)

    def session_started(self, team_name: str, summary: dict[str, Any]) -> None:
        team = self.teams.get(team_name)
        if team is None:
            team = self.teams[team_name] = Team(team_name)
        team.sessions[summary["session"]] = summary
        self._broadcast(team, {"type": "session-started", **summary})

    def session_updated(self, team_name: str, summary: dict[str, Any]) -> None:
        team = self.teams.get(team_name)
        if team is None or summary["session"] not in team.sessions:
            return
        team.sessions[summary["session"]] = summary
        self._broadcast(team, {"type": "session-updated", **summary})

    def session_ended(self, team_name: str, sid: str, reason: str | None) -> None:
        team = self.teams.get(team_name)
        if team is None or team.sessions.pop(sid, None) is None:
            return
        self._broadcast(team, {"type": "session-ended", "session": sid, "reason": reason})
        self._forget_if_empty(team)

    def online_users(self) -> int:
        return sum(len(t.members) for t in self.teams.values())

    def connections(self) -> int:
        return sum(len(c) for t in self.teams.values() for c in t.members.values())

    def _state(self, team: Team) -> dict[str, Any]:
        return {
            "type": "presence-state", "team": team.name,
            "members": [{"user": u, "connections": len(c), "client": c[0].client}
                        for u, c in sorted(team.members.items())],
            "sessions": sorted(team.sessions.values(), key=lambda s: s["started"]),
        }

    def _broadcast(self, team: Team, body: dict[str, Any], skip: Member | None = None) -> None:
        payload = encode_control(body)
        for conns in team.members.values():
            for m in conns:
                if m is not skip:
                    m.send_raw(payload)

    def _forget_if_empty(self, team: Team) -> None:
        if not team.members and not team.sessions:
            self.teams.pop(team.name, None)
