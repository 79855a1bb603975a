"""The audit log: a filtered, paged table, and the same entries exported as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer

from ct.dashboard.backend import audit_entry_dict
from ct.dashboard.format import csv_cell, parse_utc, utc
from ct.dashboard.frame import PageGroup
from ct.dashboard.html import tags
from ct.dashboard.responses import arg, set_headers
from ct.storage.store import AUDIT_KINDS

PAGE_SIZE = 50
EXPORT_MAX = 50_000
EXPORT_BATCH = 1000
FILTERS = ("since", "until", "kind", "user", "edge", "session")
KINDS = sorted(AUDIT_KINDS | {"session_ended_by_admin", "dashboard_logout",
                              "api_token_created", "api_token_revoked", "host_signed_in"})


def audit_query(request) -> dict[str, Any]:
    """The backend query the filter arguments ask for."""
    query: dict[str, Any] = {}
    since = parse_utc(arg(request, "since"))
    until = parse_utc(arg(request, "until"))
    if since is not None:
        query["since"] = since
    if until is not None:
        query["until"] = until
    for name in ("kind", "user", "edge", "session"):
        value = (arg(request, name) or "").strip()
        if value:
            query[name] = value[:255]
    return query


def team_scope(session) -> dict[str, Any]:
    """What a team viewer may see: entries of its teams' sessions (an admin: all)."""
    return {} if session.is_admin else {"teams": tuple(session.teams)}


def given_filters(request) -> dict[str, str]:
    """The filter arguments as given, to carry over into links."""
    return {k: arg(request, k) for k in FILTERS if arg(request, k)}


def details_text(entry) -> str:
    details = ", ".join(f"{k}={v}" for k, v in sorted(dict(entry.details).items())
                        if v is not None and k != "value")
    if "value" in entry.details:
        details = (details + ", " if details else "") + "value=" + json.dumps(
            entry.details["value"], sort_keys=True)[:300]
    return details


class AuditPages(PageGroup):
    @defer.inlineCallbacks
    def audit(self, request, session):
        try:
            page = max(1, int(arg(request, "page") or 1))
        except ValueError:
            page = 1
        entries = yield self.backend.audit(**audit_query(request), **team_scope(session),
                                           limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        more = len(entries) > PAGE_SIZE
        entries = entries[:PAGE_SIZE]
        filters = given_filters(request)
        kind_select = tags.select(tags.option("any kind", value=""), name="kind", id="kind")
        for kind in KINDS:
            kind_select(tags.option(kind, value=kind, **({"selected": "selected"}
                                                         if filters.get("kind") == kind
                                                         else {})))
        form = tags.form(
            tags.label("From (UTC)", tags.input(type="datetime-local", name="since",
                                                value=filters.get("since", ""))),
            tags.label("To (UTC)", tags.input(type="datetime-local", name="until",
                                              value=filters.get("until", ""))),
            tags.label("Kind", kind_select),
            tags.label("User", tags.input(name="user", value=filters.get("user", ""))),
            tags.label("Edge", tags.input(name="edge", value=filters.get("edge", ""))),
            tags.label("Session", tags.input(name="session",
                                             value=filters.get("session", ""))),
            tags.button("Filter", type="submit", class_="primary"),
            method="get", action="/dashboard/audit", class_="filters")
        qs = urlencode(filters)
        exports = tags.div(
            tags.span("Export what matches: ", class_="muted"),
            tags.a("CSV", href="/dashboard/audit.csv" + (f"?{qs}" if qs else ""),
                   id="export-csv", class_="button small", download="download"),
            tags.a("JSON", href="/dashboard/audit.json" + (f"?{qs}" if qs else ""),
                   id="export-json", class_="button small", download="download"),
            class_="exports")
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in (
            "Time (UTC)", "Kind", "User", "Edge", "Session", "Details")])), class_="grid",
            id="audit")
        body = tags.tbody()
        for e in entries:
            body(tags.tr(tags.td(utc(e.at), class_="nowrap"),
                         tags.td(tags.span(e.kind, class_=f"kind kind-{e.kind}")),
                         tags.td(e.user or ""), tags.td(e.edge_id or ""),
                         tags.td(tags.code(e.session_id) if e.session_id else ""),
                         tags.td(details_text(e), class_="details")))
        if not entries:
            body(tags.tr(tags.td("No entries match.", colspan="6", class_="muted")))
        pager = tags.div(class_="pager")
        if page > 1:
            pager(tags.a("← Newer", href="/dashboard/audit?" + urlencode(
                {**filters, "page": page - 1}), id="newer"))
        pager(tags.span(f"Page {page}", class_="muted"))
        if more:
            pager(tags.a("Older →", href="/dashboard/audit?" + urlencode(
                {**filters, "page": page + 1}), id="older"))
        if not session.is_admin:
            form(tags.p(f"Entries of the sessions of team {', '.join(session.teams)}.",
                        class_="hint", id="team-scope"))
        note = ("" if self.backend.mode == "multi-server" else
                tags.p("Single-server mode: the newest entries are kept in memory only "
                       "(lost on restart).", class_="hint"))
        return [form, exports, note, table(body), pager]

    @defer.inlineCallbacks
    def _matching(self, request, session):
        query = {**audit_query(request), **team_scope(session)}
        out = []
        while len(out) < EXPORT_MAX:
            batch = yield self.backend.audit(**query, limit=EXPORT_BATCH, offset=len(out))
            out.extend(batch)
            if len(batch) < EXPORT_BATCH:
                break
        return out

    @defer.inlineCallbacks
    def export(self, fmt: str, request, session):
        """``fmt``: ``csv`` or ``json``; a download of every matching entry."""
        entries = yield self._matching(request, session)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.clock.seconds()))
        if fmt == "json":
            set_headers(request, b"application/json")
            body = json.dumps({"entries": [audit_entry_dict(e) for e in entries]},
                              indent=1, sort_keys=True).encode() + b"\n"
        else:
            set_headers(request, b"text/csv; charset=utf-8")
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["time_utc", "time", "kind", "user", "edge", "session",
                             "details"])
            for e in entries:
                writer.writerow([csv_cell(utc(e.at)), f"{e.at:.3f}", csv_cell(e.kind),
                                 csv_cell(e.user), csv_cell(e.edge_id),
                                 csv_cell(e.session_id),
                                 csv_cell(json.dumps(dict(e.details), sort_keys=True))])
            body = buf.getvalue().encode("utf-8")
        request.setHeader(b"content-disposition",
                          f'attachment; filename="ct-audit-{stamp}.{fmt}"'.encode())
        return body
