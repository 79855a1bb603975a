"""Placement rules: examples and hypothesis properties."""

from __future__ import annotations

import collections
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

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

ON, SUSP, LOST, DOWN = (EdgeState.ONLINE, EdgeState.SUSPENDED, EdgeState.LINK_LOST,
                        EdgeState.UNAVAILABLE)


def edge(edge_id, region="eu", state=ON, **kw):
    return EdgeSnapshot(edge_id=edge_id, region=region, state=state, **kw)


class ScoreTests(unittest.SynchronousTestCase):
    def test_formula(self):
        e = edge("a", load=0.5, lag_ms=100, connections=50, sessions=10, max_connections=100)
        # 1.0*50/100 + 0.5*10/100 + 1.0*0.5 + 0.5*100/200
        self.assertEqual(score(e), 0.5 + 0.05 + 0.5 + 0.25)

    def test_nominal_capacity_unknown_load_and_lag(self):
        e = edge("a", connections=125, sessions=25)
        # capacity 250; unknown load counts as the connection ratio; unknown lag as 0
        self.assertEqual(score(e), 0.5 + 0.05 + 0.5)

    def test_clamps(self):
        e = edge("a", load=7.0, lag_ms=1e9)
        self.assertEqual(score(e), 1.0 + 0.5 * 5.0)
        self.assertEqual(score(edge("a", load=float("nan"), lag_ms=-5)), 0.0)

    def test_custom_weights(self):
        e = edge("a", load=0.5, lag_ms=200)
        self.assertEqual(score(e, Weights(load=0.0, lag=1.0)), 1.0)


class PickTests(unittest.SynchronousTestCase):
    def test_least_busy_in_region(self):
        edges = [edge("a", load=0.9), edge("b", load=0.2), edge("c", "us", load=0.0)]
        p = pick_edge(edges, "eu")
        self.assertEqual((p.edge_id, p.in_region, p.state), ("b", True, ON))

    def test_falls_back_to_other_regions(self):
        edges = [edge("a", state=DOWN), edge("b", state=SUSP), edge("c", "us", load=0.9)]
        p = pick_edge(edges, "eu")
        self.assertEqual((p.edge_id, p.in_region), ("c", False))

    def test_suspended_only_when_nothing_else(self):
        self.assertEqual(pick_edge([edge("a", state=SUSP), edge("b", state=DOWN)]).edge_id, "a")
        self.assertEqual(pick_edge([edge("a", state=SUSP), edge("b", load=1.0,
                                                                 lag_ms=9999)]).edge_id, "b")

    def test_finding_28_link_lost_edge_gets_no_new_session(self):
        edges = [edge("a", state=LOST), edge("b", state=SUSP, load=1.0)]
        self.assertEqual(pick_edge(edges).edge_id, "b")
        self.assertIsNone(pick_edge([edge("a", state=LOST)]))
        self.assertEqual(route_join("a", [edge("a", state=LOST)]), "a")  # its sessions: yes

    def test_finding_4_pending_placements_weigh_but_never_fill(self):
        capped = edge("a", connections=4, max_connections=5, pending=50)
        self.assertFalse(capped.full)
        self.assertEqual(pick_edge([capped]).edge_id, "a")
        # ... yet they spread a burst: an edge with pending placements scores as busier.
        self.assertEqual(score(edge("a", pending=10)), score(edge("a", connections=10,
                                                                 sessions=10)))
        self.assertEqual(pick_edge([edge("a", pending=1), edge("b")]).edge_id, "b")

    def test_never_unavailable_nor_full(self):
        self.assertIsNone(pick_edge([edge("a", state=DOWN)]))
        self.assertIsNone(pick_edge([edge("a", connections=10, max_connections=10)]))
        self.assertIsNone(pick_edge([]))
        full_here = [edge("a", connections=10, max_connections=10), edge("b", "us")]
        self.assertEqual(pick_edge(full_here, "eu").edge_id, "b")

    def test_no_client_region_means_no_preference(self):
        edges = [edge("a", "eu", load=0.5), edge("b", "us", load=0.1)]
        p = pick_edge(edges, None)
        self.assertEqual((p.edge_id, p.in_region), ("b", True))

    def test_tie_break(self):
        edges = [edge("b", load=0.5, connections=3), edge("a", load=0.5, connections=3),
                 edge("c", load=0.5, connections=3)]
        self.assertEqual([p.edge_id for p in rank(edges)], ["a", "b", "c"])

    def test_new_edge_is_used_at_once(self):
        edges = [edge("old", load=0.4, connections=100, sessions=20, lag_ms=30), edge("new")]
        self.assertEqual(pick_edge(edges).edge_id, "new")


class TeamAndJoinTests(unittest.SynchronousTestCase):
    def test_team_stays_on_its_edge_while_available(self):
        edges = [edge("a", load=0.9), edge("b", load=0.0)]
        self.assertEqual(assign_team("a", edges, "eu").edge_id, "a")
        for state in (SUSP, LOST):
            self.assertEqual(assign_team("a", [edge("a", state=state), edge("b")]).edge_id, "a")
        full = [edge("a", connections=5, max_connections=5), edge("b")]
        self.assertEqual(assign_team("a", full).edge_id, "a")

    def test_team_moves_when_its_edge_is_gone(self):
        edges = [edge("a", state=DOWN), edge("b", load=0.5), edge("c", load=0.1)]
        self.assertEqual(assign_team("a", edges).edge_id, "c")
        self.assertEqual(assign_team("zzz", edges).edge_id, "c")
        self.assertEqual(assign_team(None, edges).edge_id, "c")
        self.assertIsNone(assign_team("a", [edge("a", state=DOWN)]))

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
    load=st.one_of(st.none(), st.floats(-1, 2), st.just(float("nan"))),
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
        self.assertIn(chosen.state, (ON, SUSP))
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
        if mine and mine[0].state != DOWN:
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
