"""The edge servers: their state and load, and suspending or resuming one (multi-server);
a lone edge shows itself without actions."""

from __future__ import annotations

from twisted.internet import defer
from twisted.web.template import Tag

from ct.dashboard.backend import NotAvailable
from ct.dashboard.format import ago, number
from ct.dashboard.frame import PageGroup, csrf_field
from ct.dashboard.html import tags

COLUMNS = ["Edge", "Status", "Region", "Version", "Load", "Lag", "Connections", "Sessions",
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
                       "them; their running sessions go on.", class_="hint"),
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
            load = e.get("load")
            last = e.get("lastSeenAgo")
            if last is None and e.get("lastReport"):
                last = self.clock.seconds() - float(e["lastReport"])
            body(tags.tr(
                tags.td(tags.strong(e["edge"]), tags.div(e.get("url") or "", class_="muted")),
                tags.td(tags.span(state, class_=f"badge badge-{state}",
                                  id=f"state-{e['edge']}")),
                tags.td(e.get("region") or "—"), tags.td(e.get("version") or "—"),
                tags.td("—" if load is None else f"{float(load) * 100:.0f} %"),
                tags.td(number(e.get("lagMs"), 1, " ms")),
                tags.td(number(e.get("connections"))), tags.td(number(e.get("sessions"))),
                tags.td(ago(last)),
                tags.td(self._suspend_form(e, session) if actions else "", class_="actions"),
                id=f"edge-{e['edge']}"))
        return table(body)

    @staticmethod
    def _suspend_form(edge, session) -> Tag:
        suspended = bool(edge.get("suspended"))
        verb = "resume" if suspended else "suspend"
        return tags.form(
            csrf_field(session),
            tags.button("Resume" if suspended else "Suspend", type="submit",
                        class_="small" if suspended else "small warn",
                        id=f"{verb}-{edge['edge']}"),
            method="post", action=f"/dashboard/edges/{edge['edge']}/{verb}",
            **({"data-confirm": f"Suspend edge {edge['edge']}? New sessions will go "
                                "to other edges."} if not suspended else {}))

    def suspend(self, edge_id: str, suspended: bool, request, session):
        done = "suspended" if suspended else "resumed"
        return self.backend.suspend(edge_id, suspended, session.user).addCallback(
            lambda _: f"Edge {edge_id} {done}.")
