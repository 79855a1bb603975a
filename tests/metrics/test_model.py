"""Pure parts: metric table evaluation, StatsD line formatting and datagram packing."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from ct.metrics.definitions import (DOWNLOAD_METRICS, EDGE_LINK_METRICS, EDGE_METRICS,
                                    LOCATOR_METRICS, TURN_METRICS, AV_METRICS)
from ct.metrics.model import COUNTER, GAUGE, INFO, MetricDef, MetricSet, evaluate
from ct.metrics.prometheus import make_registry
from ct.metrics.statsd import format_lines, pack_datagrams
from ct.turn.metrics import TurnStats


def parse(metrics: MetricSet) -> dict:
    text = generate_latest(make_registry(metrics)).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


class DefinitionTests(unittest.TestCase):
    def test_counter_names_end_in_total_and_only_counters_do(self):
        with self.assertRaises(ValueError):
            MetricDef("sessions_hosted", COUNTER, "x", "k")
        with self.assertRaises(ValueError):
            MetricDef("sessions_total", GAUGE, "x", "k")
        with self.assertRaises(ValueError):
            MetricDef("Bad-Name", GAUGE, "x", "k")

    def test_published_names_are_unique_and_follow_conventions(self):
        names = [d.name for table in (EDGE_METRICS, DOWNLOAD_METRICS, TURN_METRICS,
                                      LOCATOR_METRICS, EDGE_LINK_METRICS) for d in table]
        self.assertEqual(len(names), len(set(names)))
        bases = [n[:-len("_total")] if n.endswith("_total") else n for n in names]
        self.assertEqual(len(bases), len(set(bases)))  # no gauge shadows a counter family
        for name in names:
            self.assertNotIn("_ms", name)  # base units (seconds, bytes)

    def test_missing_keys_are_skipped_and_mappings_become_labels(self):
        defs = [MetricDef("a", GAUGE, "a", "a"), MetricDef("b", GAUGE, "b", "missing"),
                MetricDef("c_total", COUNTER, "c", {"x": "cx", "y": "cy"}, label="dir"),
                MetricDef("d_total", COUNTER, "d", "by_code", label="code"),
                MetricDef("lag_seconds", GAUGE, "l", "lag_ms", scale=0.001),
                MetricDef("info", INFO, "i", info_keys=("edge",))]
        fams = evaluate(defs, {"a": 2, "cx": 3, "cy": 4, "by_code": {"E2": 1, "E1": 5},
                               "lag_ms": 250, "edge": "e1", "flag": True}, "ns")
        got = {f.name: (f.label_names, f.samples) for f in fams}
        self.assertEqual(got, {
            "ns_a": ((), (((), 2),)),
            "ns_c_total": (("dir",), ((("x",), 3), (("y",), 4))),
            "ns_d_total": (("code",), ((("E1",), 5), (("E2",), 1))),
            "ns_lag_seconds": ((), (((), 0.25),)),
            "ns_info": (("edge",), ((("e1",), 1),)),
        })

    def test_a_failing_source_is_left_out_and_logged_once(self):
        metrics = MetricSet()
        calls = []

        def broken():
            calls.append(1)
            raise RuntimeError("boom")

        metrics.add_source("ok", lambda: {"users_online": 4}, EDGE_METRICS)
        metrics.add_source("broken", broken, LOCATOR_METRICS)
        for _ in range(3):
            fams = metrics.read()
        self.assertEqual([f.name for f in fams], ["codetogether_users_online"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(calls), 3)


class PrometheusRenderingTests(unittest.TestCase):
    def test_turn_and_hooks_render_as_parseable_families(self):
        stats = TurnStats()
        stats.allocations_active, stats.allocations_total = 2, 9
        stats.bytes_to_peer, stats.bytes_to_client = 100, 250
        stats.refused("quota")
        metrics = MetricSet()
        metrics.add_source("turn", stats.snapshot, TURN_METRICS)
        metrics.add_source("locator", lambda: {"placements": {"session": 3, "presence": 5},
                                               "edges_online": 2}, LOCATOR_METRICS)
        metrics.add_source("link", lambda: {"connected": False, "outbox_depth": 17},
                           EDGE_LINK_METRICS)
        fams = parse(metrics)
        self.assertEqual(fams["codetogether_turn_allocations_active"].type, "gauge")
        self.assertEqual(fams["codetogether_turn_allocations"].type, "counter")
        self.assertEqual(fams["codetogether_turn_allocations"].samples[0].value, 9)
        relayed = {s.labels["direction"]: s.value
                   for s in fams["codetogether_turn_relayed_bytes"].samples}
        self.assertEqual(relayed, {"to_peer": 100, "to_client": 250})
        self.assertEqual(fams["codetogether_turn_refusals"].samples[0].labels, {"reason": "quota"})
        placements = {s.labels["kind"]: s.value
                      for s in fams["codetogether_locator_placements"].samples}
        self.assertEqual(placements, {"session": 3, "presence": 5})
        self.assertEqual(fams["codetogether_edge_link_outbox_entries"].samples[0].value, 17)
        self.assertEqual(fams["codetogether_edge_link_connected"].samples[0].value, 0)

    def test_values_are_read_live_at_each_scrape(self):
        state = {"users_online": 1}
        metrics = MetricSet()
        metrics.add_source("edge", lambda: dict(state), EDGE_METRICS)
        registry = make_registry(metrics)
        first = generate_latest(registry).decode()
        state["users_online"] = 5
        second = generate_latest(registry).decode()
        self.assertIn("codetogether_users_online 1.0", first)
        self.assertIn("codetogether_users_online 5.0", second)


class StatsdFormatTests(unittest.TestCase):
    def families(self, snap):
        metrics = MetricSet()
        metrics.add_source("edge", lambda: snap, EDGE_METRICS)
        return metrics.read()

    def test_gauges_as_g_counters_as_deltas_since_last_push(self):
        snap = {"sessions": 3, "lag_ms": 12.5, "sessions_hosted_total": 10,
                "errors": {"bad-frame": 2}, "edge": "e", "region": "r", "version": "1"}
        lines, totals = format_lines(self.families(snap), "ct.", {})
        self.assertEqual(lines, ["ct.sessions_active:3|g", "ct.server_lag_seconds:0.0125|g",
                                 "ct.sessions_hosted:10|c", "ct.protocol_errors.bad-frame:2|c"])
        snap.update(sessions_hosted_total=14, errors={"bad-frame": 2, "too.big": 1})
        lines, totals = format_lines(self.families(snap), "ct.", totals)
        self.assertIn("ct.sessions_hosted:4|c", lines)
        self.assertIn("ct.protocol_errors.bad-frame:0|c", lines)
        self.assertIn("ct.protocol_errors.too_big:1|c", lines)  # label made dot-free
        snap.update(sessions_hosted_total=2)  # the process restarted: counters start over
        lines, totals = format_lines(self.families(snap), "ct.", totals)
        self.assertIn("ct.sessions_hosted:2|c", lines)

    def test_negative_gauge_is_reset_first(self):
        defs = [MetricDef("drift_seconds", GAUGE, "d", "drift")]
        lines, _ = format_lines(evaluate(defs, {"drift": -1.5}), "p.", {})
        self.assertEqual(lines, ["p.drift_seconds:0|g", "p.drift_seconds:-1.5|g"])

    def test_datagrams_hold_whole_lines_within_the_size(self):
        lines = [f"codetogether.metric_{i}:{i}|g" for i in range(200)]
        packets = pack_datagrams(lines, 512)
        self.assertGreater(len(packets), 1)
        self.assertTrue(all(len(p) <= 512 for p in packets))
        self.assertEqual(b"\n".join(packets).decode().split("\n"), lines)


class DocumentationTests(unittest.TestCase):
    def test_every_metric_is_documented(self):
        from pathlib import Path

        doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
        for table in (EDGE_METRICS, DOWNLOAD_METRICS, TURN_METRICS, LOCATOR_METRICS,
                      EDGE_LINK_METRICS, AV_METRICS):
            for d in table:
                self.assertIn(f"`codetogether_{d.name}`", doc)
                if d.kind != INFO:
                    self.assertIn(f"`codetogether.{d.statsd_name}", doc)
