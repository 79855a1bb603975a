"""Every route of the locator's operator API against a team viewer's API token: allowed
and filtered to its teams, or 403; and the audit log names the token that acted.

A real locator service and API in this process on a loopback port, over a real SQLite
database through the migrations; API tokens made by the token store as the dashboard
makes them; HTTP by treq."""

from __future__ import annotations

import json

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.client import HTTPConnectionPool

from ct.common.credentials import Credentials
from ct.locator.api import LocatorAPI
from ct.locator.edges import EdgeDirectory
from ct.locator.service import Locator
from ct.storage.apitokens import ApiTokenStore
from ct.storage.database import Database
from ct.storage.migrations import prepare_database
from ct.storage.store import AuditEntry, LocatorStore
from tests.storage import dbs

# Every operator and client route, as a viewer of team red meets it: ``public`` (client
# calls, no credentials), ``team`` (allowed, red's data only) or 403. A route missing
# here fails the test.
VIEWER_ROUTES = {
    "ping": ("GET", "/api/v1/locator/ping", "public"),
    "start_session": ("POST", "/api/v1/sessions", "public"),
    "find_session": ("GET", "/api/v1/sessions/s-red", "public"),
    "team_edge": ("GET", "/api/v1/teams/red/edge", "public"),
    "sessions": ("GET", "/api/v1/sessions", "team"),
    "get_audit": ("GET", "/api/v1/audit", "team"),
    "usage": ("GET", "/api/v1/usage?days=7", "team"),
    "edges": ("GET", "/api/v1/edges", 403),
    "suspend": ("POST", "/api/v1/edges/e-gone/suspend", 403),
    "resume": ("POST", "/api/v1/edges/e-gone/resume", 403),
    "get_regions": ("GET", "/api/v1/regions", 403),
    "put_regions": ("PUT", "/api/v1/regions", 403),
    "end_session": ("POST", "/api/v1/sessions/s-red/end", 403),
    "remove_participant": ("POST", "/api/v1/sessions/s-red/participants/2/remove", 403),
}
REGIONS = {"regions": {"eu": ["10.0.0.0/8"]}}


class OperatorApiRoleTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(dbs.fresh_database(self, "sqlite"), reactor)
        self.addCleanup(self.db.close)
        yield prepare_database(self.db, reactor)
        self.store = LocatorStore(self.db, reactor)
        self.tokens = ApiTokenStore(self.db, reactor)
        self.locator = Locator(reactor, self.store, EdgeDirectory(reactor),
                               "operator-api-roles-secret-0123")
        root = resource.Resource()
        LocatorAPI(self.locator, Credentials("ctuser", "operator-pw"),
                   tokens=self.tokens).mount(root)
        port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        now = reactor.seconds()
        entries = []
        for n, (sid, team, host, guest) in enumerate((("s-red", "red", "alice", "bob"),
                                                      ("s-blue", "blue", "carol", "dave"))):
            # On an edge that is gone: listed from the directory, without participants.
            yield self.store.session_started(sid, "e-gone", team, now - 60)
            entries += [AuditEntry(f"{sid}-1", now - 60, "session_started", "e-gone", sid,
                                   host, {"team": team, "client": "vscode/1.9"}),
                        AuditEntry(f"{sid}-2", now - 59, "participant_joined", "e-gone", sid,
                                   guest, {"client": "Browser"})]
        yield self.store.insert_audit_batch(entries)
        _, self.viewer = yield self.tokens.create("red-board", "team-viewer", ("red",), "ada")
        _, self.admin = yield self.tokens.create("ops", "admin", (), "ada")

    @defer.inlineCallbacks
    def call(self, method: str, path: str, token: str, body: bytes | None = None):
        response = yield treq.request(method, self.base + path, data=body,
                                      headers={"Authorization": f"Bearer {token}"},
                                      pool=HTTPConnectionPool(reactor, persistent=False))
        text = yield response.text()
        return response.code, text

    @defer.inlineCallbacks
    def test_every_route_is_allowed_and_filtered_or_refused(self):
        rules = {rule.endpoint for rule in LocatorAPI.app.url_map.iter_rules()}
        self.assertEqual(rules, set(VIEWER_ROUTES))  # no route without a verdict
        for endpoint, (method, path, verdict) in sorted(VIEWER_ROUTES.items()):
            body = json.dumps(REGIONS).encode() if method == "PUT" else None
            code, text = yield self.call(method, path, self.viewer, body)
            if verdict == 403:
                self.assertEqual(code, 403, endpoint)
                self.assertIn("needs the admin role", json.loads(text)["message"], endpoint)
            elif verdict == "team":
                self.assertEqual(code, 200, f"{endpoint}: {text}")
                self.assertNotIn("blue", text, endpoint)
                self.assertNotIn("carol", text, endpoint)
            else:
                self.assertNotIn(code, (401, 403), endpoint)
        # Nothing the viewer was refused happened.
        self.assertEqual((yield self.store.get_config("regions", {})), {})
        refused = yield self.store.query_audit(kind="config_changed")
        self.assertEqual(refused, [])

        code, text = yield self.call("GET", "/api/v1/sessions", self.viewer)
        self.assertEqual([s["session"] for s in json.loads(text)["sessions"]], ["s-red"])
        code, text = yield self.call("GET", "/api/v1/audit", self.viewer)
        self.assertEqual(sorted(e["id"] for e in json.loads(text)["entries"]),
                         ["s-red-1", "s-red-2"])
        code, text = yield self.call("GET", "/api/v1/usage?days=7", self.viewer)
        usage = json.loads(text)
        self.assertEqual((usage["teams"], usage["uniqueUsers"], usage["sessions"],
                          usage["averageSessionSize"]), (["red"], 2, 1, 2.0))
        self.assertNotIn("av", usage)  # measured per edge, not per team
        self.assertNotIn("peakUsers", usage["days"][-1])

    @defer.inlineCallbacks
    def test_the_administrator_sees_everything_and_is_audited(self):
        code, text = yield self.call("GET", "/api/v1/usage?days=7", self.admin)
        usage = json.loads(text)
        self.assertEqual((code, usage["uniqueUsers"], usage["sessions"]), (200, 4, 2))
        self.assertNotIn("teams", usage)
        self.assertIn("av", usage)
        self.assertIn("peakUsers", usage["days"][-1])
        code, text = yield self.call("GET", "/api/v1/sessions", self.admin)
        self.assertEqual(sorted(s["session"] for s in json.loads(text)["sessions"]),
                         ["s-blue", "s-red"])
        code, text = yield self.call("PUT", "/api/v1/regions", self.admin,
                                     json.dumps(REGIONS).encode())
        self.assertEqual(code, 200, text)
        changed = yield self.store.query_audit(kind="config_changed")
        self.assertEqual([(e.user, e.details["key"], e.details["value"]) for e in changed],
                         [("token:ops", "regions", REGIONS["regions"])])
