"""Paths operators rely on in incidents, end to end with real processes (issue 15, item 7):

* an edge whose link is up but whose reports stopped is unavailable after
  ``CT_EDGE_DEAD_AFTER`` (the hung-edge test covers the link-lost path);
* a lost link whose edge still answers ``/health``: joins go there for ``CT_LINK_GRACE``,
  then the edge is unavailable; its sessions go on, and on reconnect what it recorded
  meanwhile reaches the locator;
* the older ``CT_LOGS_USER``/``CT_LOGS_PASSWORD`` as dashboard and operator credentials;
* drain on stop: SIGTERM to a twistd edge with sessions; under a locator, the edge says
  so over its link and every placement made meanwhile goes to another edge.

Bounds are those of docs/locator.md and docs/install.md, with slack for a loaded machine.
"""

from __future__ import annotations

import base64
import json
import signal
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from ct.client.locator import LocatorRefused
from ct.client.session import SessionClient
from tests.dashboard.util import DashboardClient
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import close_all, sleep
from tests.locator.tcpproxy import CuttableProxy
from tests.procutil import Daemon

SLACK = 2.0
CHECK_TICK = 1.0  # the locator acts on state changes every second


@defer.inlineCallbacks
def edge_states(d: Deployment):
    listing = yield d.client().edges(OPERATOR)
    return {e["edge"]: e for e in listing["edges"]}


@defer.inlineCallbacks
def http_get(url: str, user: str | None = None, password: str | None = None):
    headers = Headers()
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers.addRawHeader(b"authorization", f"Basic {token}".encode())
    d = Agent(reactor).request(b"GET", url.encode(), headers)
    d.addTimeout(10, reactor)
    response = yield d
    body = yield readBody(response)
    return response.code, body


def wait_process_exit(daemon: Daemon, timeout: float):
    """Fires with the exit status once the process ended (polled; the reactor runs)."""
    deadline = time.monotonic() + timeout

    @defer.inlineCallbacks
    def poll():
        while daemon.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{daemon.plugin} still running {timeout} s after "
                                     f"SIGTERM:\n{daemon.log()[-3000:]}")
            yield sleep(0.05)
        return daemon.proc.returncode

    return poll()


class StuckReportsTests(unittest.TestCase):
    """CT_EDGE_DEAD_AFTER's own path: the link answers pings, the reports stopped."""

    timeout = 120
    DEAD_AFTER = 4.0

    @defer.inlineCallbacks
    def test_edge_without_reports_is_unavailable_after_dead_after(self):
        d = Deployment(self, locator_env={"CT_EDGE_DEAD_AFTER": str(self.DEAD_AFTER),
                                          "CT_PLACEMENT_RATE": "0"})
        d.start_locator()
        d.start_edge("e2")
        yield d.wait_online(["e2"])
        # e1 reports once, as it registers, and then not for ten minutes.
        d.start_edge("e1", CT_REPORT_INTERVAL="600")
        d.edges["e1"].wait_for_log("registered with the locator")
        registered = time.monotonic()
        clients = []
        self.addCleanup(lambda: close_all(clients))
        host = SessionClient(reactor, d.edge_urls["e1"], "alice", auto_resume=False)
        yield host.host()
        clients.append(host)
        seen: dict[str, float] = {}
        while "unavailable" not in seen:
            elapsed = time.monotonic() - registered
            self.assertLess(elapsed, self.DEAD_AFTER + CHECK_TICK + SLACK + 5, seen)
            states = yield edge_states(d)
            seen.setdefault(states["e1"]["state"], time.monotonic() - registered)
            self.assertEqual(states["e2"]["state"], "online")
            if states["e1"]["state"] == "unavailable":
                self.assertTrue(states["e1"]["linkUp"])  # the link itself is fine
            yield sleep(0.1)
        self.assertIn("online", seen)
        self.assertGreater(seen["unavailable"], self.DEAD_AFTER - 0.5)
        self.assertLess(seen["unavailable"], self.DEAD_AFTER + CHECK_TICK + SLACK)
        # New sessions go elsewhere, and its sessions are over in the directory.
        for _ in range(3):
            answer = yield d.client().start_session()
            self.assertEqual(answer["edge"], "e2")
        yield sleep(CHECK_TICK + 0.5)
        with self.assertRaises(LocatorRefused) as caught:
            yield d.client().find_session(host.session, retries=0)
        self.assertIn(caught.exception.status, (404, 410))
        rows = d.audit_rows("SELECT edge_id FROM audit_entries WHERE kind = 'edge_unavailable'")
        self.assertEqual([r[0] for r in rows], ["e1"])
        self.assertIn("edge e1 is unavailable", d.locator.log())
        # The session itself lives on at the edge: the locator only stopped routing to it.
        self.assertFalse(host.ended.called)


class LinkGraceTests(unittest.TestCase):
    """The link is cut between an edge and the locator; the edge itself is fine."""

    timeout = 180
    GRACE = 5.0

    @defer.inlineCallbacks
    def test_grace_expires_then_the_edge_relinks_and_relays_what_it_recorded(self):
        d = Deployment(self, locator_env={"CT_LINK_GRACE": str(self.GRACE),
                                          "CT_EDGE_DEAD_AFTER": "60",
                                          "CT_PLACEMENT_RATE": "0"})
        d.start_locator()
        proxy = CuttableProxy("127.0.0.1", d.locator_port)
        self.addCleanup(proxy.stop)
        d.start_edge("e1", CT_LOCATOR=f"http://127.0.0.1:{proxy.port}")
        d.start_edge("e2")
        yield d.wait_online(["e1", "e2"])
        clients = []
        self.addCleanup(lambda: close_all(clients))
        host = SessionClient(reactor, d.edge_urls["e1"], "alice")
        yield host.host()
        clients.append(host)
        found = yield d.client().find_session(host.session)
        self.assertEqual(found["edge"], "e1")

        proxy.cut()
        cut_at = time.monotonic()
        seen: dict[str, float] = {}
        joins = []
        while "unavailable" not in seen:
            elapsed = time.monotonic() - cut_at
            self.assertLess(elapsed, self.GRACE + CHECK_TICK + SLACK + 5, seen)
            states = yield edge_states(d)
            state = states["e1"]["state"]
            seen.setdefault(state, time.monotonic() - cut_at)
            if state == "link-lost":
                try:
                    joined = yield d.client().find_session(host.session, retries=0)
                    joins.append((time.monotonic() - cut_at, joined["edge"]))
                except LocatorRefused as e:  # turned unavailable since the listing
                    joins.append((time.monotonic() - cut_at, e.status))
                answer = yield d.client().start_session()
                self.assertEqual(answer["edge"], "e2")  # never a link-lost edge
            yield sleep(0.2)
        self.assertLess(seen["link-lost"], 2.0)  # a dropped link is seen at once
        # /health kept answering, so only the grace period ended it.
        self.assertGreater(seen["unavailable"], self.GRACE - 0.5)
        self.assertLess(seen["unavailable"], self.GRACE + CHECK_TICK + SLACK)
        self.assertTrue(joins, "no join was asked while link-lost")
        self.assertEqual({e for _, e in joins[:-1]}, {"e1"}, joins)
        self.assertTrue(any(t > self.GRACE - 1.5 and e == "e1" for t, e in joins), joins)
        yield sleep(CHECK_TICK + 0.5)
        with self.assertRaises(LocatorRefused) as caught:
            yield d.client().find_session(host.session, retries=0)
        self.assertIn(caught.exception.status, (404, 410))

        # The edge never noticed anything but its link: its session goes on, a guest
        # joins it directly, and that join is recorded in the edge's outbox.
        self.assertFalse(host.ended.called)
        guest = SessionClient.from_link(reactor, str(host.link), "bob")
        yield guest.join_link()
        clients.append(guest)
        # Link back: the edge registers again and relays the entry it kept.
        proxy.restore()
        yield d.wait_online(["e1"], timeout=30)
        deadline = time.monotonic() + 20
        while not d.audit_rows("SELECT 1 FROM audit_entries WHERE kind = "
                               "'participant_joined' AND user_name = 'bob'"):
            self.assertLess(time.monotonic(), deadline, "bob's join never reached the locator")
            yield sleep(0.2)


class OlderCredentialNamesTests(unittest.TestCase):
    """CT_LOGS_USER/CT_LOGS_PASSWORD, the older names, log in where CT_DASHBOARD_* is unset."""

    timeout = 120

    def start(self, plugin: str, **env) -> str:
        daemon = Daemon(plugin, {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                 "CT_PROBE_INTERVAL": "0",
                                 "CT_DATA_DIR": self.mktemp(), **env})
        self.addCleanup(daemon.stop)
        self.daemons.append(daemon)
        return f"http://127.0.0.1:{daemon.port('HTTP')}"

    def setUp(self):
        self.daemons: list[Daemon] = []

    @defer.inlineCallbacks
    def test_lone_edge_and_locator_take_the_older_names(self):
        older = {"CT_LOGS_USER": "logsuser", "CT_LOGS_PASSWORD": "older-password-1"}
        edge = self.start("ctedge", **older)
        locator = self.start("ctlocator", **older)
        for url in (f"{edge}/logs", f"{locator}/logs", f"{locator}/api/v1/edges"):
            code, _ = yield http_get(url, "logsuser", "older-password-1")
            self.assertEqual(code, 200, url)
            code, _ = yield http_get(url, "ctuser", "older-password-1")
            self.assertEqual(code, 401, url)
        # No generated password: the configured one is used, and never logged.
        for daemon in self.daemons:
            self.assertNotIn("generated", daemon.log())
            self.assertNotIn("older-password-1", daemon.log())
        # The user alone falls back too, with the new password name.
        edge = self.start("ctedge", CT_LOGS_USER="olduser", CT_DASHBOARD_PASSWORD="new-pw-12")
        code, _ = yield http_get(f"{edge}/logs", "olduser", "new-pw-12")
        self.assertEqual(code, 200)

    @defer.inlineCallbacks
    def test_the_dashboard_names_win_over_the_older_ones(self):
        locator = self.start("ctlocator", CT_LOGS_USER="logsuser",
                             CT_LOGS_PASSWORD="older-password-1",
                             CT_DASHBOARD_USER="dashuser", CT_DASHBOARD_PASSWORD="dash-pw-123")
        code, _ = yield http_get(f"{locator}/api/v1/edges", "logsuser", "older-password-1")
        self.assertEqual(code, 401)
        code, body = yield http_get(f"{locator}/api/v1/edges", "dashuser", "dash-pw-123")
        self.assertEqual((code, json.loads(body)), (200, {"edges": []}))


class DrainOnStopTests(unittest.TestCase):
    """SIGTERM to ``twistd ctedge`` with sessions (docs/install.md, "Stop")."""

    timeout = 120
    DRAIN = 3.0
    EXIT_BOUND = 5.0  # after the drain: end the rest, close, stop the reactor

    def start_edge(self, drain: float) -> Daemon:
        daemon = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                   "CT_PROBE_INTERVAL": "0", "CT_DATA_DIR": self.mktemp(),
                                   "CT_DRAIN_TIMEOUT": str(drain)})
        self.addCleanup(daemon.stop)
        self.url = f"http://127.0.0.1:{daemon.port('HTTP')}"
        self.clients: list[SessionClient] = []
        self.addCleanup(lambda: close_all(self.clients))
        return daemon

    @defer.inlineCallbacks
    def session(self, host_name: str, *guests: str):
        host = SessionClient(reactor, self.url, host_name, auto_resume=False)
        yield host.host()
        self.clients.append(host)
        out = [host]
        for name in guests:
            guest = SessionClient.from_link(reactor, str(host.link), name, auto_resume=False)
            yield guest.join_link()
            self.clients.append(guest)
            out.append(guest)
        return out

    @defer.inlineCallbacks
    def test_drain_then_edge_shutdown_and_exit_within_the_bound(self):
        daemon = self.start_edge(self.DRAIN)
        alice, bob = yield self.session("alice", "bob")
        carol, dave = yield self.session("carol", "dave")
        daemon.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        # 15 s: a CI run once saw the edge write nothing at all (not even twistd's
        # "Received SIGTERM") for 5 s, its log writes stalled; the bounds below count from
        # when the drain is seen to have begun.
        daemon.wait_for_log(r"stopping: waiting up to 3 s for 2 sessions to end", timeout=15)
        draining_at = time.monotonic()
        # While draining: a new host is told to go elsewhere, running sessions go on.
        refused = SessionClient(reactor, self.url, "erin", auto_resume=False)
        with self.assertRaises(Exception) as caught:
            yield refused.host()
        self.assertIn("shutting-down", str(caught.exception))
        code, body = yield http_get(self.url + "/health")  # still healthy, and says why
        health = json.loads(body)
        self.assertEqual((code, health["status"]), (200, "ok"))
        self.assertGreater(health["draining"]["until"], time.time() + 1)
        alice.send(b"still here")
        frame = yield bob.next_frame(timeout=5)
        self.assertEqual(frame.data, b"still here")
        # Carol's session ends by itself during the drain (she leaves).
        yield carol.leave()
        event = yield dave.next_event("session-ended", timeout=5)
        self.assertNotEqual(event["reason"], "edge-shutdown")
        # The rest are ended when the drain time is up: edge-shutdown, close 4010.
        for client in (alice, bob):
            outcome = yield client.ended
            self.assertEqual(outcome.code, "session-ended", outcome)
            self.assertIn("edge-shutdown", outcome.message)
        ended_after = time.monotonic() - stopped_at
        self.assertGreater(ended_after, self.DRAIN - 0.5)
        status = yield wait_process_exit(daemon, self.DRAIN + self.EXIT_BOUND)
        self.assertEqual(status, -signal.SIGTERM)  # twistd re-raises it after a clean stop
        self.assertLess(time.monotonic() - draining_at, self.DRAIN + self.EXIT_BOUND)
        log = daemon.log()
        self.assertIn("ending 1 sessions: the edge is stopping", log)
        self.assertNotIn("Traceback", log)

    @defer.inlineCallbacks
    def test_without_drain_sessions_end_at_once(self):
        daemon = self.start_edge(0)
        alice, bob = yield self.session("alice", "bob")
        daemon.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        for client in (alice, bob):
            outcome = yield client.ended
            self.assertIn("edge-shutdown", outcome.message)
        status = yield wait_process_exit(daemon, self.EXIT_BOUND)
        self.assertEqual(status, -signal.SIGTERM)
        self.assertLess(time.monotonic() - stopped_at, self.EXIT_BOUND)

    @defer.inlineCallbacks
    def test_ct_client_refused_by_a_stopping_edge_asks_the_locator_again(self):
        # The race the drain message cannot close: the locator placed the host on edge a
        # just before a began to drain. A real HTTP server stands in for that locator (its
        # first answer a, then b); ct-client runs as users run it.
        from twisted.web import resource, server

        from tests.client.cliproc import CliProcess

        draining = self.start_edge(self.DRAIN * 4)
        yield self.session("alice")
        draining.proc.send_signal(signal.SIGTERM)
        draining.wait_for_log(r"stopping: waiting up to", timeout=15)
        other = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                  "CT_PROBE_INTERVAL": "0", "CT_DATA_DIR": self.mktemp()})
        self.addCleanup(other.stop)
        answers = [("a", self.url), ("b", f"http://127.0.0.1:{other.port('HTTP')}")]
        asked = []

        class StaleLocator(resource.Resource):
            isLeaf = True

            def render_POST(self, request):
                asked.append(request.path)
                edge, url = answers[min(len(asked), len(answers)) - 1]
                request.setHeader(b"content-type", b"application/json")
                return json.dumps({"edge": edge, "server": url, "region": "default",
                                   "state": "online", "inRegion": True}).encode()

        port = reactor.listenTCP(0, server.Site(StaleLocator()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        locator = f"http://127.0.0.1:{port.getHost().port}"
        cli = CliProcess(self, "host", "--locator", locator, "--name", "erin")
        yield cli.wait_line(r"that edge is stopping .*shutting-down|this edge is stopping")
        yield cli.wait_line(r"placed this session on edge b")
        yield cli.wait_line(r"hosting session \S+; join link")
        self.assertEqual(asked, [b"/api/v1/sessions"] * 2)
        cli.close_input()

    @defer.inlineCallbacks
    def test_under_a_locator_the_link_stays_up_while_draining(self):
        d = Deployment(self)
        d.start_locator()
        d.start_edge("e1", CT_DRAIN_TIMEOUT="20")
        yield d.wait_online(["e1"])
        clients = []
        self.addCleanup(lambda: close_all(clients))
        host = SessionClient(reactor, d.edge_urls["e1"], "alice", auto_resume=False)
        yield host.host()
        clients.append(host)
        daemon = d.edges["e1"]
        daemon.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        daemon.wait_for_log(r"stopping: waiting up to 20 s for 1 sessions to end", timeout=15)
        yield sleep(0.5)
        # The last session ends by itself during the drain: the edge stops at once, and
        # the session's end reaches the locator over the link that was kept up.
        yield host.leave()
        status = yield wait_process_exit(daemon, 10)
        self.assertEqual(status, -signal.SIGTERM)
        self.assertLess(time.monotonic() - stopped_at, 10)
        rows = d.audit_rows("SELECT details FROM audit_entries WHERE kind = 'session_ended' "
                            "AND session_id = ?", (host.session,))
        self.assertEqual(len(rows), 1, daemon.log()[-3000:])
        self.assertNotIn("edge-shutdown", rows[0][0])


class DrainTellsTheLocatorTests(unittest.TestCase):
    """Edge A of two stops with ``CT_DRAIN_TIMEOUT`` while it holds a session: it tells the
    locator at once, which places nothing there while its session goes on (issue 13/15)."""

    timeout = 180
    DRAIN = 6.0
    TOLD_BOUND = 2.0  # SIGTERM to "draining" in the locator's directory

    @defer.inlineCallbacks
    def test_placements_go_elsewhere_while_an_edge_drains_then_its_link_closes(self):
        d = Deployment(self, locator_env={"CT_PLACEMENT_RATE": "0"})
        d.start_locator()
        d.start_edge("a", CT_DRAIN_TIMEOUT=str(self.DRAIN))
        d.start_edge("b")
        yield d.wait_online(["a", "b"])
        clients = []
        self.addCleanup(lambda: close_all(clients))
        host = SessionClient(reactor, d.edge_urls["a"], "alice", auto_resume=False)
        yield host.host()
        clients.append(host)
        guest = SessionClient.from_link(reactor, str(host.link), "bob", auto_resume=False)
        yield guest.join_link()
        clients.append(guest)
        # Both edges take placements before (the check below could fail).
        before = yield self.place(d, 6)
        self.assertGreater(before.get("a", 0), 0, before)

        daemon = d.edges["a"]
        daemon.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        yield d.wait_edges(lambda s: s.get("a") == "draining", timeout=self.TOLD_BOUND + SLACK)
        told_after = time.monotonic() - stopped_at
        self.assertLess(told_after, self.TOLD_BOUND + SLACK)

        # Until the drain time is up: every placement goes to b, and so does a new team;
        # a is draining in the directory, /health and the dashboard; its session goes on.
        dashboard = DashboardClient(d.locator_url)
        yield dashboard.login(*OPERATOR)
        placed: dict[str, int] = {}
        rounds = 0
        while time.monotonic() - stopped_at < self.DRAIN - 1.0:
            counts = yield self.place(d, 3)
            for edge, n in counts.items():
                placed[edge] = placed.get(edge, 0) + n
            team = yield d.client().team_edge(f"team-{rounds}")
            self.assertEqual(team["edge"], "b")
            if rounds == 0:
                # A host placed now really hosts on b.
                answer = yield d.client().start_session()
                other = SessionClient(reactor, answer["server"], "carol", auto_resume=False)
                yield other.host()
                clients.append(other)
                self.assertEqual(answer["edge"], "b")
                found = yield d.client().find_session(host.session)
                self.assertEqual(found["edge"], "a")  # joins still go there
                code, body = yield http_get(d.locator_url + "/health")
                health = json.loads(body)
                self.assertEqual((code, health["edges_draining"], health["edges_online"]),
                                 (200, 1, 1))
                page = yield dashboard.get("/dashboard/edges")
                self.assertRegex(page.text, r'id="state-a"[^>]*>draining<')
                self.assertRegex(page.text, r'id="state-b"[^>]*>online<')
            host.send(f"still here {rounds}".encode())
            frame = yield guest.next_frame(timeout=5)
            self.assertEqual(frame.data, f"still here {rounds}".encode())
            rounds += 1
            yield sleep(0.3)
        self.assertGreater(rounds, 2)
        self.assertEqual(set(placed), {"b"}, placed)
        states = yield edge_states(d)
        self.assertEqual(states["a"]["state"], "draining")
        self.assertIsNotNone(states["a"]["drainingUntil"])

        # The drain time is up: the rest is ended, the edge stops and closes its link.
        outcome = yield host.ended
        self.assertIn("edge-shutdown", outcome.message)
        self.assertGreater(time.monotonic() - stopped_at, self.DRAIN - 0.5)
        status = yield wait_process_exit(daemon, 10)
        self.assertEqual(status, -signal.SIGTERM)
        yield d.wait_edges(lambda s: s.get("a") in ("link-lost", "unavailable"), timeout=10)
        log = d.locator.log()
        self.assertIn("edge a closed its link as it stopped after draining", log,
                      daemon.log()[-3000:])
        self.assertNotIn("edge a: link lost", log)
        self.assertIn("told the locator this edge is stopping", daemon.log())
        self.assertIn("link to the locator closed: the edge is stopping", daemon.log())
        self.assertNotIn("Traceback", daemon.log())
        rows = d.audit_rows("SELECT edge_id, details FROM audit_entries "
                            "WHERE kind = 'edge_draining'")
        self.assertEqual([r[0] for r in rows], ["a"])
        self.assertIn("until", json.loads(rows[0][1]))
        after = yield self.place(d, 3)
        self.assertEqual(after, {"b": 3})

    @staticmethod
    @defer.inlineCallbacks
    def place(d: Deployment, n: int):
        counts: dict[str, int] = {}
        for _ in range(n):
            answer = yield d.client().start_session()
            counts[answer["edge"]] = counts.get(answer["edge"], 0) + 1
        return counts
