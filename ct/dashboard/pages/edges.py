"""The edge servers: their state and load, suspending or resuming one, and an edge's recent
log fetched over its link (multi-server); a lone edge shows itself without actions."""

from __future__ import annotations

from urllib.parse import quote

from twisted.internet import defer
from twisted.web.template import Tag

from ct.dashboard.backend import ActionError, NotAvailable
from ct.dashboard.format import ago, number
from ct.dashboard.frame import PageGroup, csrf_field
from ct.dashboard.html import tags

COLUMNS = ["Edge", "Status", "Region", "Version", "CPU", "Lag", "Connections", "Sessions",
           "Last seen", ""]


class EdgePages(PageGroup):
    @defer.inlineCallbacks
    def edges(self, request, session):
        try:
            edges = yield self.backend.edges()
        except NotAvailable:
            own = self.backend.this_edge()
            return [tags.div(tags.p("Single-server mode: this edge serves the dashboard "
                                    "itself and there is no locator, so edges cannot be "
                                    "suspended."), class_="note", id="needs-locator"),
                    self._table([own], session, actions=False)]
        if not edges:
            return [tags.p("No edge has connected to this locator yet. Edges connect with "
                           "CT_LOCATOR and CT_EDGE_SECRET.", class_="note")]
        return [self._table(edges, session, actions=True),
                tags.p("Suspended edges get no new sessions while another edge can take "
                       "them; their running sessions go on. Draining edges are stopping "
                       "(CT_DRAIN_TIMEOUT): they get no new sessions at all, and end the "
                       "sessions still running when their drain time is up.", class_="hint"),
                *self._locators(getattr(self.backend, "locators", list)())]

    @staticmethod
    def _locators(locators) -> list:
        """Several locators on one database: each one's state and latencies; a latency
        above 10 ms is marked."""
        if len(locators) < 2:
            return []
        body = tags.tbody()
        for loc in locators:
            state = "online" if loc["alive"] else "unavailable"
            slow = tags.span("slow", class_="badge badge-suspended",
                             title="above 10 ms: locators and their database should be "
                                   "close") if loc.get("slow") else ""
            body(tags.tr(
                tags.td(tags.strong(loc["locator"]), " (this one)" if loc.get("self") else "",
                        tags.div(loc.get("url") or "", class_="muted")),
                tags.td(tags.span("alive" if loc["alive"] else "dead",
                                  class_=f"badge badge-{state}")),
                tags.td(loc.get("version") or "—"),
                tags.td(number(loc.get("heartbeatAgo"), 1, " s")),
                tags.td(number(loc.get("databaseLatencyMs"), 1, " ms")),
                tags.td(number(loc.get("latencyMs"), 1, " ms"), " ", slow),
                id=f"locator-{loc['locator']}"))
        head = tags.thead(tags.tr(*[tags.th(h) for h in (
            "Locator", "Status", "Version", "Heartbeat", "Database latency",
            "Latency from here")]))
        return [tags.h2("Locators"), tags.table(head, body, class_="grid", id="locators")]

    def _table(self, edges, session, actions: bool) -> Tag:
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in COLUMNS])),
                           class_="grid", id="edges")
        body = tags.tbody()
        for e in sorted(edges, key=lambda e: e["edge"]):
            state = e.get("state", "unavailable")
            cpu = e.get("cpu")
            last = e.get("lastSeenAgo")
            if last is None and e.get("lastReport"):
                last = self.clock.seconds() - float(e["lastReport"])
            body(tags.tr(
                tags.td(tags.strong(e["edge"]), tags.div(e.get("url") or "", class_="muted")),
                tags.td(tags.span(state, class_=f"badge badge-{state}",
                                  id=f"state-{e['edge']}", **self._state_title(e))),
                tags.td(e.get("region") or "—"), tags.td(e.get("version") or "—"),
                tags.td("—" if cpu is None else f"{float(cpu) * 100:.0f} %",
                        id=f"cpu-{e['edge']}", title="of one core, over the last report"),
                tags.td(number(e.get("lagMs"), 1, " ms")),
                tags.td(number(e.get("connections"))), tags.td(number(e.get("sessions"))),
                tags.td(ago(last)),
                tags.td(*((self._log_link(e), " ", self._suspend_form(e, session)) if actions
                          else ()), class_="actions"),
                id=f"edge-{e['edge']}"))
        return table(body)

    def _state_title(self, edge) -> dict:
        """A draining edge's badge says when its remaining sessions end."""
        until = edge.get("drainingUntil")
        if edge.get("state") != "draining" or until is None:
            return {}
        left = max(0.0, float(until) - self.clock.seconds())
        return {"title": f"stopping: sessions still running end in {left:.0f} s"}

    @staticmethod
    def _log_link(edge) -> Tag:
        return tags.a("Log", href=f"/dashboard/edges/{quote(edge['edge'], safe='')}/log",
                      class_="button small", id=f"log-{edge['edge']}")

    @defer.inlineCallbacks
    def edge_log(self, edge_id: str, request, session):
        """The edge's recent log lines, asked of it over its link just now."""
        try:
            log = yield self.backend.edge_log(edge_id)
        except ActionError as e:
            return [tags.div(tags.p(f"The log of edge {edge_id} could not be fetched: {e}"),
                             class_="note", id="edge-log-error"),
                    tags.p(tags.a("Back to the edge servers", href="/dashboard/edges"))]
        where = "kept in memory since start-up" if log.source == "memory" \
            else f"file {log.source}"
        cut = " (older lines and the ends of very long ones left out)" if log.truncated else ""
        return [tags.p(f"The last {len(log.lines)} lines of edge {edge_id}'s log ({where}), "
                       f"fetched over its link to this locator{cut}. Times are the edge's "
                       "local time.", class_="hint"),
                tags.pre("\n".join(log.lines), class_="log", id="log")]

    @staticmethod
    def _suspend_form(edge, session) -> Tag:
        suspended = bool(edge.get("suspended"))
        verb = "resume" if suspended else "suspend"
        return tags.form(
            csrf_field(session),
            tags.button("Resume" if suspended else "Suspend", type="submit",
                        class_="small" if suspended else "small warn",
                        id=f"{verb}-{edge['edge']}"),
            method="post", action=f"/dashboard/edges/{edge['edge']}/{verb}", class_="inline",
            **({"data-confirm": f"Suspend edge {edge['edge']}? New sessions will go "
                                "to other edges."} if not suspended else {}))

    def suspend(self, edge_id: str, suspended: bool, request, session):
        done = "suspended" if suspended else "resumed"
        return self.backend.suspend(edge_id, suspended, session.user).addCallback(
            lambda _: f"Edge {edge_id} {done}.")
