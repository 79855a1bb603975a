"""Usage over days: what operators of the product we replace look at (unique users, sessions
and peak concurrent users per day, average session size, host IDE and joining client, and
A/V use: people in calls, calls, and how many peer connections needed a TURN relay)."""

from __future__ import annotations

import time

from twisted.internet import defer

from ct.dashboard.charts import line_chart
from ct.dashboard.format import number
from ct.dashboard.frame import PageGroup
from ct.dashboard.html import tags
from ct.dashboard.memory import AUDIT_CAPACITY
from ct.dashboard.pages.live import card
from ct.dashboard.responses import arg
from ct.storage.store import DAY

DAY_CHOICES = (7, 30, 90)
DEFAULT_DAYS = 30
DAILY = [("Sessions started per day", "sessions", lambda d: d.sessions),
         ("Peak concurrent users per day", "peak-users", lambda d: d.peak_users),
         ("Peak concurrent sessions per day", "peak-sessions", lambda d: d.peak_sessions),
         ("People in sessions per day", "users", lambda d: d.users),
         ("Peak people in calls per day", "peak-in-calls", lambda d: d.peak_in_calls),
         ("Peak concurrent calls per day", "peak-calls", lambda d: d.peak_calls)]
TEAM_DAILY = ("sessions", "users")  # what can be counted per team (from the audit log)
NO_CALLS = "No calls recorded in this period."
TEAM_OMITTED = ("Peak concurrent users and sessions and A/V use are left out: the edges "
                "measure them for the whole server, not per team.")


def av_section(av):
    """A/V use over the period (:class:`~ct.storage.store.AvUsage`)."""
    section = tags.div(tags.h2("A/V use"), id="av-use")
    if not av.peak_in_calls:
        return section(tags.p(NO_CALLS, class_="muted", id="no-calls"))
    share = av.relayed_share
    return section(tags.div(
        card("Peak people in calls", number(av.peak_in_calls), "av-peak-in-calls"),
        card("Peak concurrent calls", number(av.peak_calls or 0), "av-peak-calls"),
        card("Connections relayed (TURN)", "–" if share is None else f"{100 * share:.0f} %",
             "av-relayed-share"),
        class_="cards"))


def requested_days(value: str | None) -> int:
    """One of :data:`DAY_CHOICES` (the default for anything else)."""
    try:
        days = int(value or DEFAULT_DAYS)
    except ValueError:
        return DEFAULT_DAYS
    return days if days in DAY_CHOICES else DEFAULT_DAYS


def breakdown_table(title: str, counts, ident: str, what: str):
    total = sum(counts.values())
    table = tags.table(tags.thead(tags.tr(tags.th("Client"), tags.th(what), tags.th("Share"))),
                       class_="grid", id=ident)
    body = tags.tbody()
    for name, n in counts.items():
        body(tags.tr(tags.td(name), tags.td(str(n)), tags.td(f"{100 * n / total:.0f} %")))
    if not counts:
        body(tags.tr(tags.td("none yet", colspan="3", class_="muted")))
    return tags.div(tags.h2(title), table(body))


class UsagePages(PageGroup):
    @defer.inlineCallbacks
    def usage(self, request, session):
        days = requested_days(arg(request, "days"))
        teams = None if session.is_admin else tuple(session.teams)
        report = yield self.backend.usage(days, teams)
        parts = []
        if teams is not None:
            parts.append(tags.p(f"Usage of the sessions of team {', '.join(teams)}. ",
                                TEAM_OMITTED, class_="note", id="team-scope"))
        if self.backend.mode == "single-server":
            parts.append(tags.p(
                "Single-server mode: these numbers come from this edge's memory, so they "
                f"cover only the time since it started (its newest {AUDIT_CAPACITY:,} audit "
                "entries, a week of history). A locator keeps them in its database for as "
                "long as the retention settings say.", class_="note", id="memory-only"))
        size = report.average_session_size
        parts.append(tags.div(
            card(f"Unique users, {days} days", number(report.unique_users), "unique-users"),
            card("Sessions started", number(report.sessions), "sessions-started"),
            card("Average session size", "–" if size is None else f"{size:.2f}",
                 "session-size"),
            class_="cards"))
        ranges = tags.div(tags.span("Last ", class_="muted"), class_="ranges")
        for n in DAY_CHOICES:
            ranges(tags.a(f"{n} days", href=f"/dashboard/usage?days={n}",
                          class_="active" if n == days else ""))
        charts = tags.div(class_="charts")
        for label, key, get in DAILY:
            if teams is not None and key not in TEAM_DAILY:
                continue
            points = [(d.start + DAY / 2, get(d)) for d in report.days]
            charts(line_chart(points, report.since, report.since + len(report.days) * DAY,
                              label))
        parts += [ranges, charts, self._daily_table(report),
                  breakdown_table("IDE used to host", report.host_clients, "host-clients",
                                  "Sessions"),
                  breakdown_table("Client used to join", report.join_clients,
                                  "join-clients", "Joins"),
                  "" if teams is not None else av_section(report.av),
                  tags.p(*self._footnote(teams is not None), class_="hint")]
        return parts

    @staticmethod
    def _footnote(team_scoped: bool):
        """How the numbers are counted (without the whole-server figures a team viewer
        does not get)."""
        lines = ["Days are UTC. People are counted by the name they gave; a session's size "
                 "is how many different people hosted or joined it. "]
        if not team_scoped:
            lines.append("Peak concurrent users (online: in sessions and team presence) and "
                         "sessions are per minute, summed over edges; so are people in calls "
                         "and calls (a call: two or more people of a session in its call). "
                         "Connections relayed: the share of the calls' peer connections that "
                         "went through a TURN relay, over the period, as the browsers "
                         "reported them. ")
        lines.append("The same numbers as JSON: GET /api/v1/usage?days=N on the locator "
                     "(a team viewer's API token gets its teams' numbers).")
        return lines

    @staticmethod
    def _daily_table(report):
        heads = ["Day (UTC)", "Sessions", "People"]
        if report.teams is None:
            heads += ["Peak concurrent users", "Peak concurrent sessions",
                      "Peak people in calls", "Peak calls"]
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in heads])),
                           class_="grid", id="usage-days")
        body = tags.tbody()
        for d in reversed(report.days):
            row = tags.tr(tags.td(time.strftime("%Y-%m-%d", time.gmtime(d.start))),
                          tags.td(str(d.sessions)), tags.td(str(d.users)))
            if report.teams is None:
                row(*[tags.td("–" if n is None else str(n)) for n in (
                    d.peak_users, d.peak_sessions, d.peak_in_calls, d.peak_calls)])
            body(row)
        return tags.details(tags.summary("Per day"), table(body))
