"""Finding 10, pure part: the edges picked for unreported teams are kept in bounded memory."""

from __future__ import annotations

import unittest

from ct.locator.service import MAX_RECENT_TEAMS, RecentTeams


class RecentTeamsTests(unittest.TestCase):
    def test_finding_10_recent_teams_are_bounded_least_recently_asked_out(self):
        teams = RecentTeams(limit=3)
        for name in ("a", "b", "c"):
            teams.put(name, "e1")
        self.assertEqual(teams.get("a"), "e1")  # asked again: kept longest
        teams.put("d", "e2")
        self.assertEqual(len(teams), 3)
        self.assertIsNone(teams.get("b"))
        self.assertEqual([teams.get(n) for n in ("a", "c", "d")], ["e1", "e1", "e2"])

    def test_finding_10_default_bound(self):
        teams = RecentTeams()
        for i in range(MAX_RECENT_TEAMS + 500):
            teams.put(f"team-{i}", "e1")
        self.assertEqual(len(teams), MAX_RECENT_TEAMS)
        self.assertIsNone(teams.get("team-0"))
        self.assertEqual(teams.get(f"team-{MAX_RECENT_TEAMS + 499}"), "e1")
