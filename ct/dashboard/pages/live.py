"""What is happening now: the overview (numbers and charts) and the active sessions, with
the actions that end a session or remove a participant."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.web.template import Tag

from ct.dashboard.charts import line_chart
from ct.dashboard.format import ago, number, utc
from ct.dashboard.frame import PageGroup, post_button
from ct.dashboard.html import tags
from ct.dashboard.responses import arg

RANGES = {"hour": (3600.0, 60.0), "day": (86400.0, 1200.0), "week": (7 * 86400.0, 7200.0)}
CLIENT_NAMES = {"intellij": "IntelliJ", "vscode": "VS Code", "eclipse": "Eclipse"}
SERIES = [("Users online", lambda b: b.users_online),
          ("Active sessions", lambda b: b.sessions),
          ("Connections", lambda b: b.connections),
          ("Lag (ms, highest edge mean)", lambda b: b.lag_ms),
          ("Sessions hosted (total)", lambda b: b.sessions_hosted_total),
          ("Downloads (total)", lambda b: b.downloads_total)]


def card(label: str, value: str, key: str, extra: Any = "") -> Tag:
    return tags.div(tags.div(label, class_="label"),
                    tags.div(value, class_="value", id=f"stat-{key}"), extra,
                    class_="card")


def visible_sessions(sessions, session) -> list:
    """The sessions ``session``'s user may see: all for an admin, its teams' otherwise."""
    if session.is_admin:
        return list(sessions)
    return [s for s in sessions if s.get("team") in session.teams]


class LivePages(PageGroup):
    @defer.inlineCallbacks
    def team_overview(self, request, session):
        """A team viewer's overview: its teams' live sessions and people only."""
        sessions = visible_sessions((yield self.backend.sessions()), session)
        people = [p for s in sessions for p in s.get("participants") or []]
        cards = tags.div(
            card("Active sessions", number(len(sessions)), "sessions"),
            card("Participants", number(len(people)), "participants"),
            card("Connected", number(sum(1 for p in people if p.get("connected"))),
                 "connections"), class_="cards")
        return [tags.p(f"Team {', '.join(session.teams)}: ",
                       tags.a("sessions", href="/dashboard/sessions"), ", ",
                       tags.a("usage", href="/dashboard/usage"), " and ",
                       tags.a("audit log", href="/dashboard/audit"), ".", class_="summary",
                       id="team-scope"), cards]

    @defer.inlineCallbacks
    def overview(self, request, session):
        if not session.is_admin:
            body = yield self.team_overview(request, session)
            return body
        now = yield self.backend.overview()
        which = arg(request, "range") or "hour"
        if which not in RANGES:
            which = "hour"
        span, bucket = RANGES[which]
        until = self.clock.seconds()
        since = until - span
        history = yield self.backend.history(since, until, bucket)
        downloads = now["downloads"]
        dl_detail = tags.div(class_="detail")
        for kind in ("intellij", "vscode", "eclipse"):
            dl_detail(tags.span(CLIENT_NAMES[kind], " ",
                                tags.strong(str(downloads.get(kind, 0)), id=f"dl-{kind}"),
                                class_="pill"))
        cards = tags.div(
            card("Users online", number(now["users_online"]), "users-online"),
            card("Active sessions", number(now["sessions"]), "sessions"),
            card("Connections", number(now["connections"]), "connections"),
            card("Average lag", number(now["lag_ms"], 1, " ms"), "lag"),
            card("Sessions hosted", number(now["sessions_hosted"]), "sessions-hosted"),
            card("Downloads", number(sum(downloads.values())), "downloads", dl_detail),
            class_="cards")
        parts = [cards]
        if now.get("edges") is not None:
            e = now["edges"]
            parts.append(tags.p(
                tags.a(f"{e['online']} edges online", href="/dashboard/edges"),
                f", {e['suspended']} suspended, {e.get('draining', 0)} stopping, "
                f"{e['link-lost']} with a lost link, "
                f"{e['unavailable']} unavailable.", class_="summary", id="edge-summary"))
        ranges = tags.div(tags.span("Charts for the last ", class_="muted"),
                          class_="ranges")
        for key in RANGES:
            ranges(tags.a(key, href=f"/dashboard?range={key}",
                          class_="active" if key == which else ""))
        charts = tags.div(class_="charts")
        for label, get in SERIES:
            points = [(b.start + bucket / 2, get(b)) for b in history]
            charts(line_chart(points, since, until, label))
        parts += [tags.h2("Over time"), ranges, charts,
                  tags.p("Charts come from snapshots every CT_METRICS_INTERVAL seconds; "
                         "per edge the peak in each interval, summed over edges. Times UTC.",
                         class_="hint")]
        return parts

    @defer.inlineCallbacks
    def sessions(self, request, session):
        sessions = visible_sessions((yield self.backend.sessions()), session)
        intro = tags.p("Who is in which session. The server never sees what they edit "
                       "(sessions are end-to-end encrypted).", class_="hint")
        if not sessions:
            return [intro, tags.p("No active sessions.", class_="note", id="no-sessions")]
        now = self.clock.seconds()
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in (
            "Session", "Edge", "Since", "Participants", "")])), class_="grid", id="sessions")
        body = tags.tbody()
        for s in sessions:
            sid = s["session"]
            people = tags.ul(class_="people")
            if s.get("participants") is None:
                people(tags.li("unknown: the edge does not answer", class_="muted"))
            for p in s.get("participants") or []:
                remove = ""
                if p.get("role") != "host" and session.is_admin:
                    remove = post_button(
                        session, f"/dashboard/sessions/{sid}/participants/{p['id']}/remove",
                        "Remove", f"remove-{sid}-{p['id']}",
                        f"Remove {p.get('name')} from this session?")
                people(tags.li(
                    tags.span(class_="dot on" if p.get("connected") else "dot off",
                              title="connected" if p.get("connected") else "away"),
                    tags.strong(p.get("name") or "?"), " ",
                    tags.span(p.get("role") or "", class_="muted"), " ",
                    tags.span(p.get("client") or "", class_="muted"), remove))
            end = post_button(session, f"/dashboard/sessions/{sid}/end", "End session",
                              f"end-{sid}", "End this session for everyone?", "warn") \
                if session.is_admin else ""
            started = s.get("started")
            body(tags.tr(
                tags.td(tags.code(sid), tags.div(s.get("team") and f"team {s['team']}" or "",
                                                 class_="muted")),
                tags.td(s.get("edge") or "this edge"),
                tags.td(ago(now - started if started else None),
                        tags.div(utc(started), class_="muted")),
                tags.td(people), tags.td(end, class_="actions"), id=f"session-{sid}"))
        return [intro, table(body)]

    def end_session(self, sid: str, request, session):
        return self.backend.end_session(sid, session.user).addCallback(
            lambda _: f"Session {sid} ended.")

    def remove_participant(self, sid: str, pid: int, request, session):
        return self.backend.remove_participant(sid, pid, session.user).addCallback(
            lambda _: f"Participant #{pid} removed from {sid}.")
