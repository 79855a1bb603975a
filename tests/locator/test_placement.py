"""Placement rules: examples and hypothesis properties."""

from __future__ import annotations

import collections
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.locator.edges import EdgeDirectory
from ct.locator.placement import (
    DEFAULT_WEIGHTS,
    EdgeSnapshot,
    EdgeState,
    Weights,
    assign_team,
    pick_edge,
    rank,
    route_join,
    score,
)
from ct.protocol import link

ON, SUSP, LOST, DOWN, DRAIN = (EdgeState.ONLINE, EdgeState.SUSPENDED, EdgeState.LINK_LOST,
                               EdgeState.UNAVAILABLE, EdgeState.DRAINING)


def edge(edge_id, region="eu", state=ON, **kw):
    return EdgeSnapshot(edge_id=edge_id, region=region, state=state, **kw)


class ScoreTests(unittest.SynchronousTestCase):
    def test_formula(self):
        e = edge("a", cpu=0.55, lag_ms=150, connections=50, sessions=10, max_connections=100)
        # 1.0*50/100 + 0.5*10/100 + 1.0*(0.55-0.1)/0.9 + 0.5*(150-50)/200
        self.assertEqual(score(e), 0.5 + 0.05 + 0.5 + 0.25)

    def test_an_idle_edge_is_idle(self):
        # Timers and noise (up to 0.1 core, 50 ms) make no edge busier than another.
        self.assertEqual(score(edge("a", cpu=0.1, lag_ms=50)), 0.0)
        self.assertEqual(score(edge("a", cpu=0.03, lag_ms=20)), score(edge("b", cpu=0.0)))
        self.assertEqual(score(edge("a", cpu=1.0, lag_ms=50)), 1.0)

    def test_nominal_capacity_unknown_load_and_lag(self):
        e = edge("a", connections=125, sessions=25)
        # capacity 250; unknown load counts as the connection ratio; unknown lag as 0
        self.assertEqual(score(e), 0.5 + 0.05 + 0.5)

    def test_clamps(self):
        e = edge("a", cpu=7.0, lag_ms=1e9)
        self.assertEqual(score(e), 1.0 + 0.5 * 5.0)
        self.assertEqual(score(edge("a", cpu=float("nan"), lag_ms=-5)), 0.0)

    def test_custom_weights(self):
        e = edge("a", cpu=0.5, lag_ms=250)
        self.assertEqual(score(e, Weights(cpu=0.0, lag=1.0)), 1.0)
        self.assertEqual(score(e, Weights(cpu_idle=0.0, lag_idle_ms=0.0)), 0.5 + 0.625)


class PickTests(unittest.SynchronousTestCase):
    def test_least_busy_in_region(self):
        edges = [edge("a", cpu=0.9), edge("b", cpu=0.2), edge("c", "us", cpu=0.0)]
        p = pick_edge(edges, "eu")
        self.assertEqual((p.edge_id, p.in_region, p.state), ("b", True, ON))

    def test_falls_back_to_other_regions(self):
        edges = [edge("a", state=DOWN), edge("b", state=SUSP), edge("c", "us", cpu=0.9)]
        p = pick_edge(edges, "eu")
        self.assertEqual((p.edge_id, p.in_region), ("c", False))

    def test_suspended_only_when_nothing_else(self):
        self.assertEqual(pick_edge([edge("a", state=SUSP), edge("b", state=DOWN)]).edge_id, "a")
        self.assertEqual(pick_edge([edge("a", state=SUSP), edge("b", cpu=1.0,
                                                                 lag_ms=9999)]).edge_id, "b")

    def test_a_draining_edge_gets_no_new_session_even_as_a_last_resort(self):
        # It refuses new hosts (shutting-down): unlike a suspended edge, never worth a try.
        idle_draining = edge("a", state=DRAIN, cpu=0.0)
        self.assertEqual(pick_edge([idle_draining, edge("b", cpu=1.0, lag_ms=9999)]).edge_id,
                         "b")
        self.assertEqual(pick_edge([idle_draining, edge("b", state=SUSP)]).edge_id, "b")
        self.assertEqual(pick_edge([idle_draining, edge("b", "us")], "eu").edge_id, "b")
        self.assertIsNone(pick_edge([idle_draining, edge("b", state=LOST)]))
        self.assertEqual(rank([idle_draining]), [])

    def test_finding_28_link_lost_edge_gets_no_new_session(self):
        edges = [edge("a", state=LOST), edge("b", state=SUSP, cpu=1.0)]
        self.assertEqual(pick_edge(edges).edge_id, "b")
        self.assertIsNone(pick_edge([edge("a", state=LOST)]))
        self.assertEqual(route_join("a", [edge("a", state=LOST)]), "a")  # its sessions: yes

    def test_finding_4_pending_placements_weigh_but_never_fill(self):
        capped = edge("a", connections=4, max_connections=5, pending=50)
        self.assertFalse(capped.full)
        self.assertEqual(pick_edge([capped]).edge_id, "a")
        # ... yet they spread a burst: an edge with pending placements scores as busier.
        self.assertEqual(score(edge("a", cpu=0.0, pending=10)),
                         score(edge("a", cpu=0.0, connections=10, sessions=10)))
        # (without a CPU figure, the stand-in counts reported connections only)
        self.assertLess(score(edge("a", pending=10)), score(edge("a", connections=10,
                                                                 sessions=10)))
        self.assertEqual(pick_edge([edge("a", pending=1), edge("b")]).edge_id, "b")

    def test_never_unavailable_nor_full(self):
        self.assertIsNone(pick_edge([edge("a", state=DOWN)]))
        self.assertIsNone(pick_edge([edge("a", connections=10, max_connections=10)]))
        self.assertIsNone(pick_edge([]))
        full_here = [edge("a", connections=10, max_connections=10), edge("b", "us")]
        self.assertEqual(pick_edge(full_here, "eu").edge_id, "b")

    def test_no_client_region_means_no_preference(self):
        edges = [edge("a", "eu", cpu=0.5), edge("b", "us", cpu=0.1)]
        p = pick_edge(edges, None)
        self.assertEqual((p.edge_id, p.in_region), ("b", True))

    def test_tie_break(self):
        edges = [edge("b", cpu=0.5, connections=3), edge("a", cpu=0.5, connections=3),
                 edge("c", cpu=0.5, connections=3)]
        self.assertEqual([p.edge_id for p in rank(edges)], ["a", "b", "c"])

    def test_new_edge_is_used_at_once(self):
        edges = [edge("old", cpu=0.4, connections=100, sessions=20, lag_ms=30), edge("new")]
        self.assertEqual(pick_edge(edges).edge_id, "new")


class ReportedLoadTests(unittest.SynchronousTestCase):
    """CPU and lag as edges report them (``link.Report``), through the locator's directory
    with a Clock, decide placement (issue 15, item 4)."""

    def setUp(self):
        self.clock = Clock()
        self.directory = EdgeDirectory(self.clock, dead_after=15.0)
        for name in ("busy", "idle"):
            self.directory.connected(name, f"http://{name}", "eu", "1", object(), False)

    def report(self, name, **figures):
        self.directory.reported(name, link.Report.from_json(
            link.Report(**figures).to_json()).to_json())

    def picks(self, n=1):
        chosen = []
        for _ in range(n):
            p = pick_edge(self.directory.snapshots(), "eu")
            self.directory.placed(p.edge_id)
            chosen.append(p.edge_id)
        return collections.Counter(chosen)

    def test_a_busy_cpu_loses_placements_to_an_idle_one(self):
        self.report("busy", cpu=0.95, lag_ms=4.0, connections=10, sessions=3)
        self.report("idle", cpu=0.02, lag_ms=1.0, connections=10, sessions=3)
        self.assertEqual(self.picks(20), {"idle": 20})
        # Until pending placements weigh as much as the CPU gap (0.944 / 0.006 ≈ 157).
        self.assertEqual(self.picks(200)["busy"] > 0, True)

    def test_two_idle_edges_share_a_burst_whatever_their_noise(self):
        self.report("busy", cpu=0.08, lag_ms=15.0)
        self.report("idle", cpu=0.01, lag_ms=0.5)
        self.assertEqual(self.picks(6), {"idle": 3, "busy": 3})

    def test_an_edge_not_measured_yet_shares_a_burst_evenly(self):
        for name in ("busy", "idle"):  # capacity 5: each placement weighs 0.3
            self.directory.connected(name, f"http://{name}", "eu", "1", object(), False, 5)
        self.report("busy", cpu=0.01, lag_ms=1.0)  # "idle" has no figures yet
        self.assertEqual(self.picks(12), {"busy": 6, "idle": 6})

    def test_lag_counts_half_a_saturated_cpu_per_200_ms(self):
        self.report("busy", cpu=0.1, lag_ms=500.0)  # 0 + 0.5 * 450 / 200 = 1.125
        self.report("idle", cpu=1.0, lag_ms=0.0)    # 1.0
        self.assertEqual(self.picks(), {"idle": 1})
        self.report("busy", cpu=0.1, lag_ms=300.0)  # 0.625
        self.clock.advance(11)  # the first pick is no longer pending; both still online
        self.assertEqual(self.picks(), {"busy": 1})

    def test_more_than_one_core_counts_as_one(self):
        self.report("busy", cpu=3.5)
        self.report("idle", cpu=1.0, connections=1)
        [busy, idle] = sorted(self.directory.snapshots(), key=lambda e: e.edge_id)
        self.assertEqual((busy.cpu, score(busy)), (3.5, 1.0))
        self.assertEqual(self.picks(), {"busy": 1})  # equal CPU: fewer connections win

    def test_before_a_cpu_figure_the_connections_stand_in(self):
        self.report("busy", connections=125, sessions=10)  # cpu None: 0.5 + 0.02 + 0.5
        self.report("idle", cpu=0.6)
        self.assertEqual(score(next(e for e in self.directory.snapshots()
                                    if e.edge_id == "busy")), 1.02)
        self.assertEqual(self.picks(), {"idle": 1})

    def test_a_silent_edge_gets_nothing_whatever_its_figures(self):
        self.report("busy", cpu=0.9)
        self.report("idle", cpu=0.0)
        self.clock.advance(10)
        self.report("busy", cpu=0.9)  # idle stops reporting
        self.clock.advance(10)
        self.assertEqual(self.picks(3), {"busy": 3})


class TeamAndJoinTests(unittest.SynchronousTestCase):
    def test_team_stays_on_its_edge_while_available(self):
        edges = [edge("a", cpu=0.9), edge("b", cpu=0.0)]
        self.assertEqual(assign_team("a", edges, "eu").edge_id, "a")
        for state in (SUSP, LOST):
            self.assertEqual(assign_team("a", [edge("a", state=state), edge("b")]).edge_id, "a")
        full = [edge("a", connections=5, max_connections=5), edge("b")]
        self.assertEqual(assign_team("a", full).edge_id, "a")

    def test_team_moves_when_its_edge_is_gone(self):
        edges = [edge("a", state=DOWN), edge("b", cpu=0.5), edge("c", cpu=0.1)]
        self.assertEqual(assign_team("a", edges).edge_id, "c")
        self.assertEqual(assign_team("zzz", edges).edge_id, "c")
        self.assertEqual(assign_team(None, edges).edge_id, "c")
        self.assertIsNone(assign_team("a", [edge("a", state=DOWN)]))

    def test_team_moves_off_a_draining_edge(self):
        # Its new sessions could not start there; members still on it reconnect when it stops.
        edges = [edge("a", state=DRAIN, cpu=0.0), edge("b", cpu=0.9)]
        self.assertEqual(assign_team("a", edges).edge_id, "b")
        self.assertEqual(assign_team("new", edges).edge_id, "b")
        self.assertIsNone(assign_team("a", [edge("a", state=DRAIN)]))

    def test_joins_still_reach_a_draining_edge(self):
        # Its sessions go on until they end or the drain time is up.
        self.assertEqual(route_join("a", [edge("a", state=DRAIN), edge("b")]), "a")

    def test_route_join(self):
        edges = [edge("a", state=LOST), edge("b", state=DOWN), edge("c", state=SUSP)]
        self.assertEqual(route_join("a", edges), "a")
        self.assertEqual(route_join("c", edges), "c")
        self.assertIsNone(route_join("b", edges))
        self.assertIsNone(route_join("x", edges))


# ------------------------------------------------------------------ properties

REGIONS = ["eu", "us", "ap"]

snapshots = st.builds(
    EdgeSnapshot,
    edge_id=st.text("abcdefgh", min_size=1, max_size=3),
    region=st.sampled_from(REGIONS),
    state=st.sampled_from(list(EdgeState)),
    cpu=st.one_of(st.none(), st.floats(-1, 2), st.just(float("nan"))),
    lag_ms=st.one_of(st.none(), st.floats(-10, 5000)),
    connections=st.integers(0, 400),
    sessions=st.integers(0, 100),
    max_connections=st.sampled_from([0, 50, 250]),
    pending=st.integers(0, 20),
)
edge_lists = st.lists(snapshots, max_size=12, unique_by=lambda e: e.edge_id)
client_regions = st.one_of(st.none(), st.sampled_from(REGIONS + ["mars"]))


class PlacementProperties(unittest.SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(edge_lists, client_regions)
    def test_never_unavailable_or_full_and_none_only_when_nothing_fits(self, edges, region):
        p = pick_edge(edges, region)
        eligible = [e for e in edges if e.state in (ON, SUSP) and not e.full]
        if not eligible:
            self.assertIsNone(p)
            return
        chosen = next(e for e in edges if e.edge_id == p.edge_id)
        self.assertIn(chosen.state, (ON, SUSP))  # never draining, link-lost, unavailable
        self.assertFalse(chosen.full)

    @settings(max_examples=300, deadline=None)
    @given(edge_lists, client_regions)
    def test_prefers_online_then_suspended(self, edges, region):
        p = pick_edge(edges, region)
        eligible = [e for e in edges if e.eligible]
        if any(e.state == ON for e in eligible):
            self.assertEqual(p.state, ON)
        elif any(e.state == SUSP for e in eligible):
            self.assertEqual(p.state, SUSP)

    @settings(max_examples=300, deadline=None)
    @given(edge_lists, st.sampled_from(REGIONS))
    def test_prefers_in_region_within_a_tier(self, edges, region):
        p = pick_edge(edges, region)
        if p is None:
            return
        same_tier = [e for e in edges if e.eligible and e.state == p.state]
        if any(e.region == region for e in same_tier):
            self.assertTrue(p.in_region)
            self.assertEqual(next(e for e in edges if e.edge_id == p.edge_id).region, region)

    @settings(max_examples=300, deadline=None)
    @given(edge_lists, client_regions)
    def test_lowest_score_of_its_group(self, edges, region):
        p = pick_edge(edges, region)
        if p is None:
            return
        group = [e for e in edges if e.eligible and e.state == p.state
                 and (region is None or (e.region == region) == p.in_region)]
        self.assertEqual(p.score, min(score(e, DEFAULT_WEIGHTS) for e in group))

    @settings(max_examples=200, deadline=None)
    @given(edge_lists, client_regions, st.randoms(use_true_random=False))
    def test_deterministic_whatever_the_order(self, edges, region, rnd: random.Random):
        shuffled = list(edges)
        rnd.shuffle(shuffled)
        self.assertEqual(rank(edges, region), rank(shuffled, region))

    @settings(max_examples=200, deadline=None)
    @given(edge_lists, client_regions, st.text("abcdefgh", min_size=1, max_size=3))
    def test_team_kept_while_its_edge_is_available(self, edges, region, current):
        p = assign_team(current, edges, region)
        mine = [e for e in edges if e.edge_id == current]
        if mine and mine[0].state not in (DOWN, DRAIN):
            self.assertEqual(p.edge_id, current)
        else:
            self.assertEqual(p, pick_edge(edges, region))


class PendingPlacementTests(unittest.TestCase):
    """Placements count towards an edge until its reports show them (EdgeDirectory)."""

    def test_burst_of_placements_spreads_despite_stale_reports(self):
        from twisted.internet.task import Clock

        from ct.locator.edges import EdgeDirectory
        from ct.locator.placement import pick_edge

        clock = Clock()
        directory = EdgeDirectory(clock)
        for name in ("a", "b", "c"):
            directory.connected(name, f"http://{name}", "default", "1", object(), False)
            directory.reported(name, {"sessions": 0, "connections": 0, "sessionsHosted": 0})
        picks = []
        for _ in range(6):
            choice = pick_edge(directory.snapshots()).edge_id
            directory.placed(choice)
            picks.append(choice)
            # a stale report (the session is not up yet) must not erase the placement
            directory.reported(choice, {"sessions": 0, "connections": 0, "sessionsHosted": 0})
        self.assertEqual(sorted(picks), ["a", "a", "b", "b", "c", "c"])
        # once the edge reports the hosted sessions, the pending ones are gone
        directory.reported("a", {"sessions": 2, "connections": 2, "sessionsHosted": 2})
        self.assertEqual(directory.edges["a"].pending, collections.deque())
        # placements that never became sessions expire
        clock.advance(11)
        snap = {s.edge_id: s.sessions for s in directory.snapshots()}
        self.assertEqual(snap, {"a": 2, "b": 0, "c": 0})
