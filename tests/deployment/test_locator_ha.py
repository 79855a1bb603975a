"""Several active locators on one PostgreSQL database (docs/locator.md, "Several locators").

Real processes: three ``twistd ctlocator`` on a fresh PostgreSQL schema, real edges, and
(for the load test) the documented HAProxy configuration in front of the locators.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from ct.client.locator import LocatorClient, LocatorRefused
from ct.client.session import SessionClient
from tests.deployment.test_databases import write_config
from tests.deployment.test_haproxy import free_port
from tests.deployment.util import EDGE_SECRET, OPERATOR
from tests.edge.util import close_all, sleep, wait_for
from tests.locator.tcpproxy import CuttableProxy
from tests.procutil import Daemon, run_to_exit
from tests.storage.dbs import admin, fresh_database
from tests.storage.privatepg import PrivatePostgres

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "docs" / "examples" / \
    "haproxy-locators.cfg"
KINDS = ("session_started", "participant_joined", "participant_left", "session_ended")
SHARED_BOUND = 2.0  # docs/locator.md: a change on one locator is seen by the others within
FIRST_TRY_FAILURES_ALLOWED = 20  # of 2,000 placements (docs/locator.md)


class LocatorCluster:
    """Locators sharing one PostgreSQL schema, edges, and optionally HAProxy before them."""

    def __init__(self, case, through_proxy: bool = False, private_pg=None, **env):
        self.case = case
        self.private_pg = private_pg
        self.config = private_pg.config() if private_pg else fresh_database(case, "postgres")
        self.root = tempfile.mkdtemp(prefix="ct-ha-")
        self.db_proxy = None
        config = self.config
        if through_proxy:  # a database the test can take away and give back
            self.db_proxy = CuttableProxy(config.host, config.port)
            case.addCleanup(self.db_proxy.stop)
            config = config.__class__(**{**config.__dict__, "port": self.db_proxy.port})
        self.env = {
            "CT_LOCATOR_CONFIG": write_config(config), "CT_EDGE_SECRET": EDGE_SECRET,
            "CT_DASHBOARD_USER": OPERATOR[0], "CT_DASHBOARD_PASSWORD": OPERATOR[1],
            "CT_EDGE_DEAD_AFTER": "5", "CT_LINK_GRACE": "60", "CT_PLACEMENT_RATE": "0",
            "CT_TRUSTED_PROXIES": "127.0.0.1/32", **env}
        self.locators: dict[str, Daemon] = {}
        self.ports: dict[str, int] = {}
        self.edges: dict[str, Daemon] = {}
        self.edge_urls: dict[str, str] = {}
        self.proxy = None
        self.proxy_port = None
        case.addCleanup(self.stop_all)

    def start_locator(self, name: str) -> str:
        port = self.ports.get(name, 0)
        env = {**self.env, "CT_DATA_DIR": os.path.join(self.root, name),
               "CT_HTTP_LISTEN": f"tcp:{port}:interface=127.0.0.1"}
        self.locators[name] = Daemon("ctlocator", env)
        self.ports[name] = self.locators[name].port("HTTP")
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def client(self, name: str | None = None, forwarded_for: str | None = None):
        url = self.url(name) if name else f"http://127.0.0.1:{self.proxy_port}"
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
        return LocatorClient(reactor, url, headers=headers, timeout=10)

    def start_edge(self, name: str, locator: str, region: str = "default", **extra) -> str:
        env = {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_EDGE_SECRET": EDGE_SECRET,
               "CT_PROBE_INTERVAL": "0", "CT_REPORT_INTERVAL": "0.5",
               "CT_METRICS_INTERVAL": "1", "CT_TEAM_SECRET": "ha-team-secret",
               "CT_LOCATOR": locator, "CT_REGION": region, "CT_EDGE_ID": name,
               "CT_DATA_DIR": os.path.join(self.root, name),
               **{k: str(v) for k, v in extra.items()}}
        self.edges[name] = Daemon("ctedge", env)
        self.edge_urls[name] = f"http://127.0.0.1:{self.edges[name].port('HTTP')}"
        return self.edge_urls[name]

    def start_proxy(self) -> str:
        """The documented HAProxy configuration, with this test's ports."""
        config = EXAMPLE.read_text()
        self.proxy_port = free_port()
        config = config.replace("bind 127.0.0.1:8080", f"bind 127.0.0.1:{self.proxy_port}")
        for i, name in enumerate(sorted(self.ports), start=1):
            config = config.replace(f"127.0.0.1:208{i}", f"127.0.0.1:{self.ports[name]}")
        config = config.replace("log stdout format raw local0", "")
        path = os.path.join(self.root, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(config)
        check = subprocess.run(["haproxy", "-c", "-f", path], capture_output=True, text=True)
        self.case.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.proxy = subprocess.Popen(["haproxy", "-db", "-f", path],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return f"http://127.0.0.1:{self.proxy_port}"

    @defer.inlineCallbacks
    def states(self, name: str):
        listing = yield self.client(name).edges(OPERATOR)
        return {e["edge"]: e["state"] for e in listing["edges"]}

    @defer.inlineCallbacks
    def wait_states(self, names, predicate, timeout: float):
        """Until ``predicate(states)`` holds on every locator in ``names``; fires with the
        seconds it took."""
        started = time.monotonic()
        pending = set(names)
        last = {}
        while pending:
            for name in sorted(pending):
                try:
                    last[name] = yield self.states(name)
                except Exception as e:
                    last[name] = repr(e)
                    continue
                if predicate(last[name]):
                    pending.discard(name)
            if not pending:
                break
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not reached within {timeout} s on {sorted(pending)}: "
                                     f"{last}")
            yield sleep(0.1)
        return time.monotonic() - started

    def query(self, sql: str, args=()):
        conn = self.private_pg.admin() if self.private_pg else admin("postgres")
        try:
            cur = conn.cursor()
            cur.execute(f"SET search_path TO {self.config.pg_schema}")
            cur.execute(sql, args)
            return cur.fetchall()
        finally:
            conn.close()

    def stop_all(self):
        for daemon in list(self.edges.values()) + list(self.locators.values()):
            daemon.stop()
        if self.proxy is not None:
            self.proxy.terminate()
            try:
                self.proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()


@defer.inlineCallbacks
def place_retrying(client: LocatorClient, stats: dict, attempts: int = 20):
    """Place a session, retrying retryable answers (connection errors, 502/503) with a short
    pause; counts first-try failures and failures overall in ``stats``."""
    for attempt in range(attempts):
        try:
            placed = yield client.start_session()
            return placed
        except LocatorRefused as e:
            if e.status not in (502, 503, 504):
                raise
            why = f"{e.status} {e.code}"
        except Exception as e:
            why = type(e).__name__
        stats["failures"] = stats.get("failures", 0) + 1
        stats.setdefault("why", []).append(why)
        if attempt == 0:
            stats["first_try_failures"] = stats.get("first_try_failures", 0) + 1
        yield sleep(0.2 + random.random() * 0.3)
    raise AssertionError(f"no placement after {attempts} attempts")


class SeveralLocatorsTests(unittest.TestCase):
    timeout = 900

    def setUp(self):
        if shutil.which("haproxy") is None:
            raise unittest.SkipTest("haproxy is not installed (make test installs it: "
                                    "scripts/system-deps.sh)")

    @defer.inlineCallbacks
    def test_placements_and_audit_survive_a_killed_and_a_restarted_locator(self):
        c = LocatorCluster(self)
        for name in ("l1", "l2", "l3"):
            c.start_locator(name)
        via = c.start_proxy()
        for name in ("e1", "e2", "e3"):
            c.start_edge(name, via)
        yield c.wait_states(["l1", "l2", "l3"], lambda s: all(
            s.get(e) == "online" for e in ("e1", "e2", "e3")), timeout=60)

        # Sessions that stay open throughout: joinable through every locator afterwards.
        clients = []
        self.addCleanup(lambda: close_all(clients))
        kept = []
        for i in range(6):
            placed = yield place_retrying(c.client(), {})
            host = SessionClient(reactor, placed["server"], f"keeper{i}")
            yield host.host()
            clients.append(host)
            kept.append((host, placed["edge"]))

        stats: dict = {}
        done = [0]
        placed_on: dict[str, int] = {}
        cycle_sessions: list[str] = []
        chaos = {"killed": False, "restarted": False}

        @defer.inlineCallbacks
        def placer(n):
            client = c.client()
            for _ in range(n):
                placed = yield place_retrying(client, stats)
                placed_on[placed["edge"]] = placed_on.get(placed["edge"], 0) + 1
                done[0] += 1
                if done[0] >= 500 and not chaos["killed"]:
                    chaos["killed"] = True
                    c.locators["l1"].kill()  # kill -9
                if done[0] >= 1200 and not chaos["restarted"]:
                    chaos["restarted"] = True
                    c.locators["l2"].stop()
                    c.start_locator("l2")

        @defer.inlineCallbacks
        def cycler(n):
            """Short sessions, 4 audit entries each, placed through the locators."""
            client = c.client()
            for _ in range(n):
                placed = yield place_retrying(client, stats)
                host = SessionClient(reactor, placed["server"], "host", auto_resume=False)
                yield host.host()
                guest = SessionClient.from_link(reactor, str(host.link), "guest",
                                                auto_resume=False)
                yield guest.join_link()
                yield guest.leave()
                yield host.leave()
                cycle_sessions.append(host.session)

        started = time.monotonic()
        yield defer.gatherResults([placer(200) for _ in range(10)]
                                  + [cycler(125) for _ in range(10)], consumeErrors=True)
        elapsed = time.monotonic() - started
        self.assertTrue(chaos["killed"] and chaos["restarted"])
        self.assertEqual(done[0], 2000)
        self.assertEqual(len(cycle_sessions), 1250)
        self.assertEqual(set(placed_on), {"e1", "e2", "e3"})  # spread over the edges
        # Every placement succeeded, at most a few only after a retry.
        self.assertLessEqual(stats.get("first_try_failures", 0), FIRST_TRY_FAILURES_ALLOWED,
                             stats)
        print(f"\n3,250 placements in {elapsed:.1f} s; first-try failures "
              f"{stats.get('first_try_failures', 0)}, retries {stats.get('failures', 0)} "
              f"({sorted(set(stats.get('why', [])))}); per edge {placed_on}")

        # The killed locator comes back; every locator knows every kept session's edge.
        c.start_locator("l1")
        yield c.wait_states(["l1", "l2", "l3"], lambda s: all(
            s.get(e) == "online" for e in ("e1", "e2", "e3")), timeout=60)
        for host, edge in kept:
            for name in ("l1", "l2", "l3"):
                found = yield c.client(name).find_session(host.session)
                self.assertEqual(found["edge"], edge, name)
            guest = SessionClient.from_link(reactor, str(host.link), "late-guest")
            reply = yield guest.join_link()
            clients.append(guest)
            self.assertEqual(reply["session"], host.session)

        # 5,000 audit entries, each stored exactly once across the locators.
        ours = set(cycle_sessions)

        def stored():
            rows = c.query("SELECT session_id, kind, COUNT(*) FROM audit_entries "
                           "WHERE kind IN %s GROUP BY session_id, kind", (KINDS,))
            return [r for r in rows if r[0] in ours]

        yield wait_for(lambda: sum(r[2] for r in stored()) >= 5000, timeout=120, step=0.5)
        rows = stored()
        self.assertEqual(sum(r[2] for r in rows), 5000)
        self.assertEqual({r[2] for r in rows}, {1})
        (total, distinct), = c.query("SELECT COUNT(*), COUNT(DISTINCT entry_id) "
                                     "FROM audit_entries")
        self.assertEqual(total, distinct)

    @defer.inlineCallbacks
    def test_suspension_regions_and_a_dead_edge_are_seen_by_every_locator(self):
        c = LocatorCluster(self)
        for name in ("l1", "l2", "l3"):
            c.start_locator(name)
        every = ",".join(c.url(n) for n in ("l1", "l2", "l3"))
        c.start_edge("e1", every, region="eu")
        c.start_edge("e2", every, region="us")
        c.start_edge("e3", every, region="us")
        names = ["l1", "l2", "l3"]
        yield c.wait_states(names, lambda s: all(
            s.get(e) == "online" for e in ("e1", "e2", "e3")), timeout=60)

        # Each locator lists the others as alive, with latencies.
        health = yield c.client("l1")._call(b"GET", "/health")
        self.assertEqual(sorted(l["alive"] for l in health["locators"]), [True] * 3)
        self.assertEqual(health["locators_alive"], 3)

        # Suspended on l2: suspended on all within the bound.
        yield c.client("l2").suspend("e2", True, OPERATOR)
        took = yield c.wait_states(names, lambda s: s.get("e2") == "suspended",
                                   timeout=SHARED_BOUND)
        print(f"\nsuspension seen by all locators in {took:.2f} s")
        yield c.client("l3").suspend("e2", False, OPERATOR)
        yield c.wait_states(names, lambda s: s.get("e2") == "online", timeout=SHARED_BOUND)

        # A region edited on l1 applies on every locator.
        yield c.client("l1")._call(b"PUT", "/api/v1/regions",
                                   body={"regions": {"eu": ["10.0.0.0/8"]}}, auth=OPERATOR)
        yield sleep(SHARED_BOUND)
        for name in names:
            for _ in range(5):
                placed = yield c.client(name, forwarded_for="10.1.2.3").start_session()
                self.assertEqual(placed["edge"], "e1", name)

        # A new team's members meet on one edge whichever locator they ask.
        first = yield c.client("l1").team_edge("new-team")
        yield sleep(SHARED_BOUND)
        for name in ("l2", "l3"):
            other = yield c.client(name).team_edge("new-team")
            self.assertEqual(other["edge"], first["edge"], name)

        # A killed edge: unavailable on every locator within the documented bound.
        c.edges["e3"].kill()
        took = yield c.wait_states(names, lambda s: s.get("e3") == "unavailable", timeout=10)
        print(f"dead edge flagged by all locators in {took:.2f} s")
        # The state shows before the audit entry is written (teams and sessions move
        # first): wait for it, then give the other locators time to add a duplicate.
        def unavailable_entries():
            return c.query("SELECT COUNT(*) FROM audit_entries "
                           "WHERE kind = 'edge_unavailable' AND edge_id = 'e3'")[0][0]
        yield wait_for(lambda: unavailable_entries() >= 1, timeout=10, step=0.2)
        yield sleep(3)
        self.assertEqual(unavailable_entries(), 1)  # one entry, not one per locator

    @defer.inlineCallbacks
    def test_edges_move_to_another_locator_within_seconds(self):
        c = LocatorCluster(self)
        for name in ("l1", "l2"):
            c.start_locator(name)
        c.start_edge("e1", f"{c.url('l1')},{c.url('l2')}")
        yield c.wait_states(["l1", "l2"], lambda s: s.get("e1") == "online", timeout=60)
        holder = c.query("SELECT locator_id FROM edge_links WHERE edge_id = 'e1'")[0][0]
        victim = "l1" if holder == _locator_id(c, "l1") else "l2"
        other = "l2" if victim == "l1" else "l1"
        c.locators[victim].kill()
        started = time.monotonic()
        yield wait_for(lambda: c.query("SELECT locator_id FROM edge_links WHERE edge_id = "
                                       "'e1'")[0][0] == _locator_id(c, other), timeout=10,
                       step=0.1)
        took = time.monotonic() - started
        print(f"\nedge relinked to the other locator in {took:.2f} s")
        self.assertLess(took, 5)
        placed = yield c.client(other).start_session()
        self.assertEqual(placed["edge"], "e1")


    @defer.inlineCallbacks
    def test_database_lost_and_back_under_load(self):
        """The database goes away for 8 s while edges run short sessions: sessions on
        edges go on, placements answer 503 database-unavailable (retryable), and every
        locator recovers by itself; every audit entry is stored exactly once."""
        c = LocatorCluster(self, through_proxy=True)
        for name in ("l1", "l2"):
            c.start_locator(name)
        every = f"{c.url('l1')},{c.url('l2')}"
        for name in ("e1", "e2"):
            c.start_edge(name, every)
        names = ["l1", "l2"]
        yield c.wait_states(names, lambda s: s.get("e1") == "online" and
                            s.get("e2") == "online", timeout=60)
        sessions = []
        stop = [False]

        @defer.inlineCallbacks
        def cycles(url):
            while not stop[0]:
                host = SessionClient(reactor, url, "host", auto_resume=False)
                yield host.host()
                guest = SessionClient.from_link(reactor, str(host.link), "guest",
                                                auto_resume=False)
                yield guest.join_link()
                yield guest.leave()
                yield host.leave()
                sessions.append(host.session)
                yield sleep(0.02)

        running = [cycles(c.edge_urls["e1"]), cycles(c.edge_urls["e2"])]
        yield sleep(2)
        c.db_proxy.cut()
        refused = {}
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for name in names:
                try:
                    yield c.client(name).start_session()
                except LocatorRefused as e:
                    refused[name] = (e.status, e.code, e.message)
            yield sleep(0.5)
        during = len(sessions)
        c.db_proxy.restore()
        for name in names:
            self.assertEqual(refused.get(name, (None,))[:2], (503, "database-unavailable"),
                             refused)
            self.assertIn("cannot reach the database it shares", refused[name][2])
        self.assertGreater(during, 10)  # sessions went on without the database

        # Both locators recover without a restart: placements, and the shared view.
        for name in names:
            yield wait_for_placement(c.client(name), timeout=20)
        yield c.client("l1").suspend("e1", True, OPERATOR)
        yield c.wait_states(names, lambda s: s.get("e1") == "suspended", timeout=10)
        stop[0] = True
        yield defer.gatherResults(running, consumeErrors=True)
        ours = set(sessions)

        def stored():
            rows = c.query("SELECT session_id, kind, COUNT(*) FROM audit_entries "
                           "WHERE kind IN %s GROUP BY session_id, kind", (KINDS,))
            return [r for r in rows if r[0] in ours]

        yield wait_for(lambda: sum(r[2] for r in stored()) >= 4 * len(ours), timeout=60,
                       step=0.5)
        rows = stored()
        self.assertEqual(sum(r[2] for r in rows), 4 * len(ours))
        self.assertEqual({r[2] for r in rows}, {1})
        for name in names:
            self.assertIsNone(c.locators[name].proc.poll())
            self.assertNotIn("Traceback", c.locators[name].log())

    @defer.inlineCallbacks
    def test_postgres_restarted_under_load(self):
        """A real PostgreSQL server is stopped (fast shutdown: it ends every connection,
        LISTEN included), kept down 3 s and started again while edges run sessions and
        clients place through both locators: both recover without a restart, clients
        that retry all succeed, the shared view works again, and every audit entry is
        stored exactly once."""
        pg = PrivatePostgres(self)
        c = LocatorCluster(self, private_pg=pg)
        names = ["l1", "l2"]
        for name in names:
            c.start_locator(name)
        every = f"{c.url('l1')},{c.url('l2')}"
        for name in ("e1", "e2"):
            c.start_edge(name, every)
        yield c.wait_states(names, lambda s: s.get("e1") == "online" and
                            s.get("e2") == "online", timeout=60)
        sessions = []
        placed = {"l1": 0, "l2": 0}
        stats: dict = {}
        stop = [False]

        @defer.inlineCallbacks
        def cycles(url):
            while not stop[0]:
                host = SessionClient(reactor, url, "host", auto_resume=False)
                yield host.host()
                guest = SessionClient.from_link(reactor, str(host.link), "guest",
                                                auto_resume=False)
                yield guest.join_link()
                yield guest.leave()
                yield host.leave()
                sessions.append(host.session)
                yield sleep(0.02)

        @defer.inlineCallbacks
        def placing(name):
            while not stop[0]:
                yield place_retrying(c.client(name), stats, attempts=80)
                placed[name] += 1
                yield sleep(0.05)

        running = [cycles(c.edge_urls["e1"]), cycles(c.edge_urls["e2"]),
                   placing("l1"), placing("l2")]
        yield sleep(2)
        yield threads.deferToThread(pg.stop)
        down_at = len(sessions)
        yield sleep(3)
        self.assertGreater(len(sessions), down_at)  # sessions go on without the database
        yield threads.deferToThread(pg.start)
        after = dict(placed)
        for name in names:  # every locator places again, without a restart
            yield wait_for(lambda: placed[name] >= after[name] + 20, timeout=30, step=0.2)
        self.assertGreater(stats.get("failures", 0), 0, "the restart was not noticed")
        # LISTEN is re-established: a change on one locator reaches the other.
        yield c.client("l1").suspend("e1", True, OPERATOR)
        yield c.wait_states(names, lambda s: s.get("e1") == "suspended",
                            timeout=SHARED_BOUND + 8)
        stop[0] = True
        yield defer.gatherResults(running, consumeErrors=True)
        ours = set(sessions)

        def stored():
            rows = c.query("SELECT session_id, kind, COUNT(*) FROM audit_entries "
                           "WHERE kind IN %s GROUP BY session_id, kind", (KINDS,))
            return [r for r in rows if r[0] in ours]

        yield wait_for(lambda: sum(r[2] for r in stored()) >= 4 * len(ours), timeout=60,
                       step=0.5)
        rows = stored()
        self.assertEqual(sum(r[2] for r in rows), 4 * len(ours))
        self.assertEqual({r[2] for r in rows}, {1})
        print(f"\n{len(ours)} sessions, {sum(placed.values())} placements, "
              f"{stats.get('failures', 0)} retried answers: {sorted(set(stats.get('why', [])))}")
        for name in names:
            self.assertIsNone(c.locators[name].proc.poll())
            self.assertNotIn("Traceback", c.locators[name].log())

    @defer.inlineCallbacks
    def test_rolling_restart_of_every_locator_behind_haproxy(self):
        """Stop and start the locators one by one under placement load: clients that retry
        all succeed, and few placements need a retry."""
        c = LocatorCluster(self)
        for name in ("l1", "l2", "l3"):
            c.start_locator(name)
        via = c.start_proxy()
        for name in ("e1", "e2"):
            c.start_edge(name, via)
        names = ["l1", "l2", "l3"]
        yield c.wait_states(names, lambda s: s.get("e1") == "online" and
                            s.get("e2") == "online", timeout=60)
        stats: dict = {}
        done = [0]
        stop = [False]

        @defer.inlineCallbacks
        def placer():
            client = c.client()
            while not stop[0]:
                yield place_retrying(client, stats)
                done[0] += 1

        running = [placer() for _ in range(4)]
        for name in names:
            yield sleep(1)
            c.locators[name].stop()
            c.start_locator(name)
            yield c.wait_states([name], lambda s: s.get("e1") == "online" and
                                s.get("e2") == "online", timeout=30)
            health = yield c.client(name)._call(b"GET", "/health")
            self.assertEqual(health["locators_alive"], 3)
        yield sleep(1)
        stop[0] = True
        yield defer.gatherResults(running, consumeErrors=True)
        print(f"\nrolling restart: {done[0]} placements, first-try failures "
              f"{stats.get('first_try_failures', 0)}")
        self.assertGreater(done[0], 100)
        self.assertLessEqual(stats.get("first_try_failures", 0), FIRST_TRY_FAILURES_ALLOWED)


class SharedDashboardLoginTests(unittest.TestCase):
    """A dashboard log-in made on one locator works on every locator, survives the death
    of the locator that made it, and a log-out on one ends it on all (docs/locator.md)."""

    timeout = 180

    def setUp(self):
        if shutil.which("haproxy") is None:
            raise unittest.SkipTest("haproxy is not installed (make test installs it: "
                                    "scripts/system-deps.sh)")

    @defer.inlineCallbacks
    def test_a_log_in_is_shared_survives_its_locator_and_a_log_out_ends_it_everywhere(self):
        from tests.dashboard.util import DashboardClient

        c = LocatorCluster(self)
        for name in ("l1", "l2", "l3"):
            c.start_locator(name)
        via = c.start_proxy()

        def browser(base, cookies):
            client = DashboardClient(base)
            client.cookies = cookies  # one browser's cookie jar, whichever server it asks
            return client

        def logged_in(page):
            return page.code == 200 and f'id="who">{OPERATOR[0]}<' in page.text

        # Password log-in on l1; the database holds the cookie's hash, not the cookie.
        jar: dict[str, str] = {}
        on = {name: browser(c.url(name), jar) for name in ("l1", "l2", "l3")}
        yield on["l1"].login(*OPERATOR)
        sid = jar["ct_dashboard"]
        rows = c.query("SELECT login_key, user_name, role, method FROM dashboard_logins")
        self.assertEqual(rows, [(hashlib.sha256(sid.encode()).hexdigest(), OPERATOR[0],
                                 "admin", "password")])

        # The same cookie on l2 at once: the logged-in page, and a CSRF-checked action.
        page = yield on["l2"].get("/dashboard")
        self.assertTrue(logged_in(page), page.text[:500])
        done = yield on["l2"].action("/dashboard/regions", {"new_region": "eu",
                                                            "new_cidrs": "10.0.0.0/8"},
                                     page="/dashboard/regions")
        self.assertEqual((done.code, done.location), (303, "/dashboard/regions"), done.text)
        page = yield on["l2"].get("/dashboard/regions")
        self.assertIn("Regions saved.", page.text)
        self.assertIn("10.0.0.0/8", page.text)
        refused = yield on["l2"].post("/dashboard/regions", {"csrf": "wrong"})
        self.assertEqual(refused.code, 403)
        page = yield on["l3"].get("/dashboard")
        self.assertTrue(logged_in(page))

        # Through HAProxy, stuck to l1 (its cookie); l1 is killed: still logged in.
        proxied = browser(via, jar)
        jar["ctlocator"] = "locator1"
        page = yield proxied.get("/dashboard")
        self.assertTrue(logged_in(page))
        c.locators["l1"].kill()  # kill -9
        for _ in range(4):
            page = yield proxied.get("/dashboard")
            self.assertTrue(logged_in(page), page.text[:500])
        done = yield proxied.action("/dashboard/regions", {"new_region": "us",
                                                           "new_cidrs": "10.1.0.0/16"},
                                    page="/dashboard/regions")
        self.assertEqual(done.code, 303, done.text)

        # Log-out on l2: refused on l3 (and through HAProxy) within the bound.
        current = yield on["l2"].get("/dashboard")
        out = yield on["l2"].post("/dashboard/logout", {"csrf": current.csrf})
        self.assertEqual(out.code, 303)
        self.assertNotIn("ct_dashboard", jar)
        stolen = {"ct_dashboard": sid}
        started = time.monotonic()
        while True:
            page = yield browser(c.url("l3"), dict(stolen)).get("/dashboard")
            if not logged_in(page):
                break
            self.assertLess(time.monotonic() - started, SHARED_BOUND,
                            "the log-out did not reach l3 within the bound")
            yield sleep(0.05)
        print(f"\nlog-out on l2 refused on l3 after {time.monotonic() - started:.2f} s")
        self.assertEqual(page.code, 303)
        self.assertTrue(page.location.startswith("/dashboard/login"), page.location)
        for base in (c.url("l2"), via):
            page = yield browser(base, dict(stolen)).get("/dashboard")
            self.assertFalse(logged_in(page), base)
        self.assertEqual(c.query("SELECT COUNT(*) FROM dashboard_logins"), [(0,)])
        for name in ("l2", "l3"):
            self.assertNotIn("Traceback", c.locators[name].log())


@defer.inlineCallbacks
def wait_for_placement(client: LocatorClient, timeout: float):
    started = time.monotonic()
    while True:
        try:
            placed = yield client.start_session()
            return placed
        except Exception:
            if time.monotonic() - started > timeout:
                raise
        yield sleep(0.3)


def _locator_id(c: LocatorCluster, name: str) -> str:
    with open(os.path.join(c.root, name, "locator-id")) as f:
        return f.read().strip()


class SingleLocatorDatabasesTests(unittest.TestCase):
    timeout = 120

    def test_a_second_locator_on_sqlite_is_refused(self):
        root = tempfile.mkdtemp(prefix="ct-sqlite-two-")
        path = os.path.join(root, "config.json")
        with open(path, "w") as f:
            json.dump({"database": {"dialect": "sqlite",
                                    "path": os.path.join(root, "shared.sqlite3")}}, f)
        env = {"CT_LOCATOR_CONFIG": path, "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
               "CT_EDGE_SECRET": EDGE_SECRET}
        first = Daemon("ctlocator", {**env, "CT_DATA_DIR": os.path.join(root, "a")})
        self.addCleanup(first.stop)
        first.port("HTTP")
        time.sleep(4)  # longer than a locator takes to be found dead: its heartbeat goes on
        code, output = run_to_exit("ctlocator", {**env, "CT_DATA_DIR": os.path.join(root, "b")})
        self.assertNotEqual(code, 0)
        self.assertIn("locator cannot start: another locator", output)
        self.assertIn("several locators need PostgreSQL", output)
        self.assertNotIn("services available", output)
        # The first one goes on.
        self.assertIsNone(first.proc.poll())
