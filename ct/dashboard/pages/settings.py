"""Deployment settings: regions (client networks per region), the minimum client version,
and the metric integrations pushed to every edge."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer

from ct.dashboard.backend import ActionError
from ct.dashboard.format import form_lines
from ct.dashboard.frame import PageGroup, csrf_field
from ct.dashboard.html import tags
from ct.dashboard.responses import arg
from ct.edge.integrations import STATSD_PORT, Integrations

VERSION_RE = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}([-.][0-9A-Za-z]{1,20})?$")
HOST_RE = re.compile(r"^[A-Za-z0-9.:\-\[\]_]{1,253}$")


def _selected(on: bool) -> dict[str, str]:
    return {"selected": "selected"} if on else {}


class SettingsPages(PageGroup):
    @property
    def multi_server(self) -> bool:
        return self.backend.mode == "multi-server"

    # ------------------------------------------------------------------ regions

    @defer.inlineCallbacks
    def regions(self, request, session):
        stored = yield self.backend.regions()
        reported = self.backend.reported_regions()
        names = sorted(set(stored) | set(reported))
        form = tags.form(csrf_field(session), method="post", action="/dashboard/regions",
                         id="regions-form")
        table = tags.table(tags.thead(tags.tr(tags.th("Region"), tags.th("Edges"),
                                              tags.th("Client networks (CIDR, one a line)"))),
                           class_="grid")
        body = tags.tbody()
        for name in names:
            spec = stored.get(name, [])
            cidrs = spec.get("cidrs", []) if isinstance(spec, dict) else spec
            body(tags.tr(tags.td(tags.strong(name)),
                         tags.td(", ".join(sorted(reported.get(name, []))) or "none"),
                         tags.td(tags.textarea("\n".join(cidrs), name=f"region:{name}",
                                               rows="3", id=f"region-{name}"))))
        body(tags.tr(tags.td(tags.input(name="new_region", placeholder="new region",
                                        id="new-region")),
                     tags.td("—"), tags.td(tags.textarea("", name="new_cidrs", rows="2",
                                                         id="new-cidrs"))))
        form(table(body), tags.div(tags.button("Save regions", type="submit",
                                               class_="primary", id="save-regions"),
                                   class_="buttons"))
        return [tags.p("A client's address picks its region (longest matching CIDR); new "
                       "sessions go to an edge of that region when one can take them. Edges "
                       "name their region with CT_REGION. Empty a region's list to remove it.",
                       class_="hint"), form]

    @defer.inlineCallbacks
    def save_regions(self, request, session):
        stored = yield self.backend.regions()
        value: dict[str, Any] = {}
        for key, values in request.args.items():
            key = key.decode("utf-8", "replace")
            if not key.startswith("region:"):
                continue
            name = key[len("region:"):]
            cidrs = form_lines(values[0].decode("utf-8", "replace"))
            old = stored.get(name)
            if isinstance(old, dict):
                if cidrs or old.get("countries") or old.get("continents"):
                    value[name] = {**old, "cidrs": cidrs}
            elif cidrs:
                value[name] = cidrs
        new = (arg(request, "new_region") or "").strip()
        if new:
            value[new] = form_lines(arg(request, "new_cidrs") or "")
        yield self.backend.set_regions(value, session.user)
        return "Regions saved."

    # ------------------------------------------------------------------ advanced

    @defer.inlineCallbacks
    def advanced(self, request, session):
        value = yield self.backend.advanced()
        form = tags.form(
            csrf_field(session),
            tags.label("Minimum client version to host a session",
                       tags.input(name="min_client_version", id="min-client-version",
                                  value=value.get("minClientVersion") or "",
                                  placeholder="any version, e.g. 2024.2.0")),
            tags.p("Hosts with an older IDE plugin are refused with 'client-too-old'; "
                   "joining is not affected. Empty: any version.", class_="hint"),
            tags.div(tags.button("Save", type="submit", class_="primary", id="save-advanced"),
                     class_="buttons"),
            method="post", action="/dashboard/advanced", class_="stack")
        where = ("Stored by the locator and applied by every edge at once."
                 if self.multi_server else
                 "Applies to this edge until it restarts (single-server mode keeps no "
                 "stored configuration).")
        return [tags.p(where, class_="hint"), form]

    def save_advanced(self, request, session):
        version = (arg(request, "min_client_version") or "").strip()
        if version and not VERSION_RE.match(version):
            raise ActionError(f"not a version number: {version!r} (e.g. 2024.2.0)")
        d = self.backend.set_advanced({"minClientVersion": version or None}, session.user)
        return d.addCallback(lambda _: "Minimum client version: " + (version or "any") + ".")

    # ------------------------------------------------------------------ integrations

    @defer.inlineCallbacks
    def integrations(self, request, session):
        value = yield self.backend.integrations()
        multi = self.multi_server
        v = value or {}
        disabled = {} if multi else {"disabled": "disabled"}
        protocol = tags.select(name="statsd_protocol", id="statsd-protocol", **disabled)
        for p in ("UDP", "TCP"):
            protocol(tags.option(p, value=p,
                                 **_selected((v.get("statsdProtocol") or "UDP") == p)))
        fields = tags.fieldset(
            tags.legend("Prometheus"),
            tags.label(tags.input(type="checkbox", name="prometheus", value="on",
                                  id="prometheus",
                                  **({"checked": "checked"} if v.get("prometheus") else {}),
                                  **disabled),
                       " Serve /metrics on every edge", class_="check"),
            **disabled)
        statsd = tags.fieldset(
            tags.legend("StatsD"),
            tags.label("Host (empty: no StatsD)", tags.input(
                name="statsd_host", id="statsd-host", value=v.get("statsdHost") or "",
                **disabled)),
            tags.label("Port", tags.input(name="statsd_port", id="statsd-port", type="number",
                                          min="1", max="65535",
                                          value=str(v.get("statsdPort") or STATSD_PORT),
                                          **disabled)),
            tags.label("Protocol", protocol), **disabled)
        if not multi:
            return [tags.div(tags.p("Single-server mode: these settings come from the "
                                    "environment (CT_PROMETHEUS_ENABLED, "
                                    "CT_METRICS_STATSD_HOST, _PORT, _PROTOCOL); change them "
                                    "there and restart."), class_="note"),
                    tags.form(fields, statsd, class_="stack")]
        state = ("Edges use their own environment settings (CT_PROMETHEUS_ENABLED, "
                 "CT_METRICS_STATSD_*) until settings are saved here."
                 if value is None else
                 "These settings are stored by the locator and pushed to every edge; they "
                 "replace the edges' own environment settings.")
        form = tags.form(
            csrf_field(session), fields, statsd,
            tags.div(tags.button("Save and push to edges", type="submit", class_="primary",
                                 id="save-integrations"),
                     tags.button("Use the edges' environment", type="submit", name="reset",
                                 value="1", class_="secondary", id="reset-integrations"),
                     class_="buttons"),
            method="post", action="/dashboard/integrations", class_="stack")
        return [tags.p(state, class_="hint", id="integrations-state"), form]

    def save_integrations(self, request, session):
        if arg(request, "reset"):
            return self.backend.set_integrations(None, session.user).addCallback(
                lambda _: "Edges use their own environment settings again.")
        host = (arg(request, "statsd_host") or "").strip()
        if host and not HOST_RE.match(host):
            raise ActionError(f"not a host name or address: {host!r}")
        try:
            port = int(arg(request, "statsd_port") or STATSD_PORT)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise ActionError("the StatsD port must be 1-65535") from None
        protocol = arg(request, "statsd_protocol") or "UDP"
        if protocol not in ("UDP", "TCP"):
            raise ActionError("the StatsD protocol is UDP or TCP")
        value = Integrations(prometheus=arg(request, "prometheus") == "on",
                             statsd_host=host or None, statsd_port=port,
                             statsd_protocol=protocol)
        return self.backend.set_integrations(value.to_json(), session.user).addCallback(
            lambda _: "Integrations saved and pushed to the edges.")
