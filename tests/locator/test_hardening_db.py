"""The locator's HTTP API on a real PostgreSQL, through real HTTP to real daemons:
lookups store nothing (finding 10), bad input is a 4xx (findings 11 and 23, with a
property-based fuzz of every route), /health tells no secrets (finding 17), a database
outage is a 503 with Retry-After and two log lines (finding 24), and a bad ``pgSchema``
stops start-up with a clear message (finding 19).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ct.storage.config import ConfigError, parse_locator_config
from tests.deployment.test_databases import write_config
from tests.locator import rawhttp
from tests.locator.tcpproxy import CuttableProxy
from tests.procutil import ROOT, Daemon, run_to_exit
from tests.storage.dbs import admin, fresh_database

SECRET = "hardening-test-secret-0123"
OPERATOR = ("ctuser", "operator-password")
AUTH = (b"Authorization", b"Basic " + base64.b64encode(":".join(OPERATOR).encode()))
# What a lookup could write to (edges and metric snapshots change with the edge's reports).
TABLES = ("session_directory", "team_presence", "audit_entries", "config_entries")


class _ClassScope:
    """What ``fresh_database`` needs of a test case, for class-wide fixtures."""

    def __init__(self, cls):
        self.addCleanup = cls.addClassCleanup

    def mktemp(self):
        return tempfile.mkdtemp()


def start_locator(config, **env) -> Daemon:
    root = tempfile.mkdtemp(prefix="ct-hardening-")
    return Daemon("ctlocator", {
        "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_EDGE_SECRET": SECRET,
        "CT_DASHBOARD_USER": OPERATOR[0], "CT_DASHBOARD_PASSWORD": OPERATOR[1],
        "CT_DATA_DIR": os.path.join(root, "locator"),
        "CT_LOCATOR_CONFIG": write_config(config), **env})


def start_edge(locator_port: int, name: str, **env) -> Daemon:
    root = tempfile.mkdtemp(prefix="ct-hardening-edge-")
    return Daemon("ctedge", {
        "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_EDGE_SECRET": SECRET,
        "CT_LOCATOR": f"http://127.0.0.1:{locator_port}", "CT_EDGE_ID": name,
        "CT_PROBE_INTERVAL": "0", "CT_DATA_DIR": root, **env})


def get(port: int, target: str | bytes, headers=()) -> rawhttp.Response:
    target = target.encode() if isinstance(target, str) else target
    return rawhttp.request(port, b"GET", target, headers)


def wait_until(check, what: str, timeout: float = 30.0, step: float = 0.2):
    """Call ``check`` until it returns a true value (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def wait_online(port: int, name: str):
    def online():
        answer = get(port, "/api/v1/edges", [AUTH])
        states = {e["edge"]: e["state"] for e in json.loads(answer.body).get("edges", [])}
        return states.get(name) == "online"
    wait_until(online, f"edge {name} online")


def table_state(config):
    """Row counts of every table, and the team assignments in full."""
    conn = admin("postgres")
    try:
        cur = conn.cursor()
        cur.execute(f"SET search_path TO {config.pg_schema}")
        counts = {}
        for table in TABLES:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT team, edge_id FROM team_presence ORDER BY team")
        return counts, cur.fetchall()
    finally:
        conn.close()


def log_errors(log: str) -> list[str]:
    """Critical lines and tracebacks in a daemon's log, each with its context."""
    lines = log.splitlines()
    return ["\n".join(lines[max(0, i - 1):i + 12]) for i, line in enumerate(lines)
            if "Traceback" in line or "#critical" in line or "Unhandled" in line]


class LocatorOnPostgresTests(unittest.TestCase):
    """One locator on a fresh PostgreSQL schema with one online edge, for the class."""

    @classmethod
    def setUpClass(cls):
        cls.config = fresh_database(_ClassScope(cls), "postgres")
        cls.locator = start_locator(cls.config)
        cls.addClassCleanup(cls.locator.stop)
        cls.port = cls.locator.port("HTTP")
        cls.edge = start_edge(cls.port, "e1", CT_METRICS_INTERVAL="300")  # a still database
        cls.addClassCleanup(cls.edge.stop)
        wait_online(cls.port, "e1")

    def test_finding_10_team_lookups_store_nothing(self):
        before = table_state(self.config)
        names = [uuid.uuid4().hex[:random_length] for random_length in
                 (8 + i % 24 for i in range(1000))]
        first = {}
        for name in names:
            answer = get(self.port, f"/api/v1/teams/{name}/edge")
            self.assertEqual(answer.status, 200, answer.body)
            first[name] = json.loads(answer.body)["edge"]
        self.assertEqual(set(first.values()), {"e1"})
        # Members of one team still meet on one edge.
        again = json.loads(get(self.port, f"/api/v1/teams/{names[0]}/edge").body)
        self.assertEqual(again["edge"], first[names[0]])
        after = table_state(self.config)
        self.assertEqual(after, before)
        self.assertEqual(log_errors(self.locator.log()), [])

    def test_finding_11_nested_and_wrong_typed_regions_are_400(self):
        deep = b'{"regions": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        for body, code in ((deep, "bad-request"),
                           (b'{"regions": {"eu": 5}}', "bad-regions"),
                           (b'{"regions": {"eu": {"cidrs": 5}}}', "bad-regions"),
                           (b'{"regions": {"eu": {"countries": 7}}}', "bad-regions"),
                           (b'{"regions": {"eu": [[["10.0.0.0/8"]]]}}', "bad-regions"),
                           (b"[1, 2]", "bad-request"), (b"\xff\xfe", "bad-request"),
                           (b"", "bad-request")):
            with self.subTest(body=body[:40]):
                answer = rawhttp.request(self.port, b"PUT", b"/api/v1/regions", [AUTH], body)
                self.assertEqual(answer.status, 400, answer.body)
                self.assertEqual(json.loads(answer.body)["error"], code)
        ok = rawhttp.request(self.port, b"PUT", b"/api/v1/regions", [AUTH],
                             b'{"regions": {"eu": ["10.0.0.0/8"]}}')
        self.assertEqual(ok.status, 200, ok.body)
        rawhttp.request(self.port, b"PUT", b"/api/v1/regions", [AUTH], b'{"regions": {}}')
        self.assertEqual(log_errors(self.locator.log()), [])

    def test_finding_23_reported_requests_are_4xx(self):
        cases = [
            (b"POST", b"/api/v1/edges/e1%00/suspend", [AUTH]),
            (b"POST", b"/api/v1/edges/%ff%fe/resume", [AUTH]),
            (b"GET", b"/api/v1/teams/%00/edge", []),
            (b"GET", b"/api/v1/teams/a%0d%0aSet-Cookie:%20x=1/edge", []),
            (b"GET", b"/api/v1/teams/%c3%28/edge", []),
            (b"GET", b"/api/v1/sessions/%00", []),
            (b"GET", b"/api/v1/sessions/%ed%a0%80", []),
            (b"GET", b"/api/v1/sessions/a%0ab", []),
        ]
        for method, target, headers in cases:
            with self.subTest(target=target):
                answer = rawhttp.request(self.port, method, target, headers)
                self.assertEqual(answer.status, 400, answer.body)
                self.assertEqual(json.loads(answer.body)["error"], "bad-request")
                self.assertNotIn(b"set-cookie", answer.headers)
        log = self.locator.log()
        self.assertIn("refused (400): the URL path has control characters", log)
        self.assertIn("refused (400): the URL path is not UTF-8", log)
        for target in (b"/api/v1/teams/a%c2%85b/edge", b"/api/v1/teams/%ef%bf%bd/edge",
                       b"/api/v1/teams/" + b"t" * 65 + b"/edge"):  # C1 control, U+FFFD, long
            answer = get(self.port, target)
            self.assertEqual(answer.status, 400, answer.body)
        self.assertIn("refused (400): team name must be UTF-8 text without control "
                      "characters", self.locator.log())
        self.assertEqual(log_errors(self.locator.log()), [])

    @settings(max_examples=1500, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def test_finding_23_fuzz_every_route(self, data):
        method, target, headers, body = data.draw(requests())
        answer = rawhttp.request(self.port, method, target, headers, body)
        self.assertIsNotNone(answer.status, f"no answer to {method!r} {target!r}")
        error = None
        if answer.body.startswith(b"{"):
            error = json.loads(answer.body).get("error")
        # 503 is fine only when it is the documented "no edge can take it".
        self.assertTrue(answer.status < 500 or (answer.status == 503 and error == "no-edge"),
                        f"{method!r} {target!r} {headers!r} {body[:200]!r} -> "
                        f"{answer.status} {answer.body[:300]!r}")
        self.assertEqual(log_errors(self.locator.log()), [], f"{method!r} {target!r}")


# ------------------------------------------------------------------ the fuzz strategies

ID_BYTES = st.one_of(
    st.binary(min_size=0, max_size=80),
    st.text(min_size=0, max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"e1", b"\x00", b"\r\n", b"\xff", b"\xed\xa0\x80", b"..", b"a" * 65]))


def encoded(segment: bytes) -> bytes:
    return urllib.parse.quote_from_bytes(segment, safe="").encode()


ROUTES = [
    (["GET", "HEAD"], "/health"), (["GET", "HEAD"], "/ct-health/"),
    (["POST"], "/api/v1/sessions"), (["GET"], "/api/v1/sessions/{}"),
    (["GET"], "/api/v1/teams/{}/edge"), (["GET"], "/api/v1/edges"),
    (["POST"], "/api/v1/edges/{}/suspend"), (["POST"], "/api/v1/edges/{}/resume"),
    (["GET", "PUT"], "/api/v1/regions"),
    (["GET", "POST"], "/dashboard/login"), (["POST"], "/dashboard/logout"),
    (["GET"], "/dashboard"), (["GET"], "/dashboard/"), (["GET"], "/dashboard/edges"),
    (["POST"], "/dashboard/edges/{}/suspend"), (["POST"], "/dashboard/edges/{}/resume"),
    (["GET"], "/dashboard/sessions"), (["POST"], "/dashboard/sessions/{}/end"),
    (["POST"], "/dashboard/sessions/{}/participants/1/remove"),
    (["GET", "POST"], "/dashboard/regions"), (["GET", "POST"], "/dashboard/advanced"),
    (["GET", "POST"], "/dashboard/integrations"), (["GET"], "/dashboard/audit"),
    (["GET"], "/dashboard/audit.csv"), (["GET"], "/dashboard/audit.json"),
    (["GET"], "/dashboard/logs"), (["GET"], "/dashboard/static/{}"), (["GET"], "/logs"),
    (["GET"], "/metrics"), (["GET"], "/ws/edge"), (["GET"], "/{}"),
]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["regions", "cidrs", "countries", "continents", "eu", "us", "x"]),
        children, max_size=4),
    max_leaves=20)


@st.composite
def requests(draw):
    methods, template = draw(st.sampled_from(ROUTES))
    method = draw(st.sampled_from(methods + ["GET", "POST", "PUT", "DELETE"]))
    target = template.encode().replace(b"{}", encoded(draw(ID_BYTES)))
    if draw(st.booleans()):
        target += b"?" + encoded(draw(ID_BYTES)) + b"=" + encoded(draw(ID_BYTES))
    headers = []
    if draw(st.booleans()):
        headers.append(AUTH)
    elif draw(st.booleans()):
        headers.append((b"Authorization", b"Basic " + base64.b64encode(draw(ID_BYTES))))
    if draw(st.booleans()):
        headers.append((b"Content-Type", draw(st.sampled_from(
            [b"application/json", b"application/x-www-form-urlencoded", b"text/plain",
             b"multipart/form-data; boundary=x"]))))
    if draw(st.booleans()):
        headers.append((b"X-Forwarded-For", encoded(draw(ID_BYTES))))
    kind = draw(st.sampled_from(["none", "json", "regions", "bytes", "deep"]))
    body = {
        "none": lambda: b"",
        "json": lambda: json.dumps(draw(JSON)).encode(),
        "regions": lambda: json.dumps({"regions": draw(JSON)}).encode(),
        "bytes": lambda: draw(st.binary(max_size=200)),
        "deep": lambda: b'{"regions": ' + b"[" * draw(st.integers(30, 3000)) + b"}",
    }[kind]()
    return method.encode(), target, headers, body


# ------------------------------------------------------------------ outages


class DatabaseOutageTests(unittest.TestCase):
    """The locator reaches PostgreSQL through a proxy the test cuts and restores."""

    def setUp(self):
        self.config = fresh_database(self, "postgres")
        self.proxy = CuttableProxy(self.config.host, self.config.port)
        self.addCleanup(self.proxy.stop)
        proxied = self.config.__class__(**{**self.config.__dict__, "port": self.proxy.port})
        # No reports or metric pushes during the outage: the edge link is not under test
        # here, and a quiet link keeps the edge online meanwhile.
        self.locator = start_locator(proxied, CT_EDGE_DEAD_AFTER="600")
        self.addCleanup(self.locator.stop)
        self.port = self.locator.port("HTTP")

    def host_session(self) -> str:
        """The real reference client hosts a session through the locator; its id."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ct.client.cli", "host", "--locator",
             f"http://127.0.0.1:{self.port}", "--name", "alice"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def stop():
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()
        self.addCleanup(stop)
        output = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            readable, _, _ = select.select([proc.stdout], [], [], 0.5)
            if readable:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                output += chunk
                match = re.search(rb"hosting session (\S+);", output)
                if match:
                    return match.group(1).decode()
        raise AssertionError(f"ct-client did not host a session: {output!r}")

    def test_finding_24_database_outage_is_503_with_retry_after(self):
        edge = start_edge(self.port, "e1", CT_REPORT_INTERVAL="300", CT_METRICS_INTERVAL="300")
        self.addCleanup(edge.stop)
        wait_online(self.port, "e1")
        sid = self.host_session()
        target = f"/api/v1/sessions/{sid}"
        wait_until(lambda: get(self.port, target).status == 200, "session in the directory")

        self.proxy.cut()
        answers = [get(self.port, target) for _ in range(25)]
        for answer in answers:
            self.assertEqual(answer.status, 503, answer.body)
            self.assertEqual(answer.header(b"retry-after"), b"5")
            self.assertEqual(json.loads(answer.body)["error"], "database-unavailable")
        self.assertEqual(get(self.port, "/health").status, 503)
        log = self.locator.log()
        self.assertEqual(len(re.findall(r"database unavailable: ", log)), 1, log)

        self.proxy.restore()
        wait_until(lambda: get(self.port, target).status == 200, "answers after the outage")
        log = self.locator.log()
        self.assertEqual(len(re.findall(r"database is back", log)), 1, log)
        self.assertEqual(len(re.findall(r"database unavailable: ", log)), 1, log)
        self.assertLess(log.index("database unavailable: "), log.index("database is back"))
        self.assertEqual(log_errors(log), [])  # no request and no edge link logged a traceback

    def snapshots_between(self, start: float, end: float) -> int:
        conn = admin("postgres")
        try:
            cur = conn.cursor()
            cur.execute(f"SET search_path TO {self.config.pg_schema}")
            cur.execute("SELECT COUNT(*), COUNT(DISTINCT snapshot_id) FROM metric_snapshots "
                        "WHERE edge_id = 'e1' AND at >= %s AND at <= %s",
                        (int(start * 1000), int(end * 1000)))  # stored in milliseconds
            total, distinct = cur.fetchone()
            self.assertEqual(total, distinct)
            return total
        finally:
            conn.close()

    def test_finding_24_edge_link_keeps_its_batches_through_an_outage(self):
        # The edge pushes a metric snapshot every second through its outbox and the link.
        edge = start_edge(self.port, "e1", CT_REPORT_INTERVAL="300", CT_METRICS_INTERVAL="1")
        self.addCleanup(edge.stop)
        wait_online(self.port, "e1")
        before = time.time()
        wait_until(lambda: self.snapshots_between(before, time.time() + 60) >= 2,
                   "snapshots stored before the outage")

        self.proxy.cut()
        cut = time.time()
        wait_until(lambda: "database unavailable: " in self.locator.log(),
                   "a batch refused while the database is away")
        wait_until(lambda: time.time() - cut >= 5, "an outage of 5 s")
        restored = time.time()
        self.proxy.restore()
        # Every snapshot taken during the outage reaches the database once, on the same link.
        expected = int(restored - cut) - 1
        wait_until(lambda: self.snapshots_between(cut, restored) >= expected,
                   f"{expected} snapshots of the outage stored", timeout=40)
        self.assertNotIn("link to the locator lost", edge.log())
        self.assertEqual(log_errors(self.locator.log()), [])
        self.assertEqual(log_errors(edge.log()), [])

    def test_finding_17_health_names_no_database_details(self):
        self.assertEqual(get(self.port, "/health").status, 200)
        self.proxy.cut()
        for _ in range(5):
            answer = get(self.port, "/health")
            self.assertEqual(answer.status, 503)
            body = json.loads(answer.body)
            self.assertEqual((body["status"], body["checks"]), ("failing",
                                                                {"database": "failing"}))
            for secret in (self.config.pg_schema, "postgres", "127.0.0.1",
                           str(self.proxy.port), "test"):
                self.assertNotIn(secret.encode(), answer.body)
        # The detail is in the log, once (written by whichever call saw the outage first:
        # under load a health check may time out before one does).
        detail = r"database unavailable: .*127\.0\.0\.1:%d" % self.proxy.port
        log = wait_until(lambda: (lambda text: re.search(detail, text) and text)(
            self.locator.log()), "the outage's detail in the log")
        self.assertEqual(len(re.findall(detail, log)), 1, log)
        self.proxy.restore()
        wait_until(lambda: get(self.port, "/health").status == 200, "healthy again")
        self.assertEqual(log_errors(self.locator.log()), [])


class CuttableProxyTests(unittest.TestCase):
    """The test proxy itself: a cut leaves no connection forwarding, even one accepted
    while the cut runs (such a survivor once let a query through an "outage": /health
    answered 200, or the outage was logged twice)."""

    def test_no_connection_survives_a_cut(self):
        echo = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(echo.close)
        echo.settimeout(0.2)
        stopped = threading.Event()
        self.addCleanup(stopped.set)

        def serve():
            while not stopped.is_set():
                try:
                    conn, _ = echo.accept()
                except OSError:
                    continue
                threading.Thread(target=echo_back, args=(conn,), daemon=True).start()

        def echo_back(conn):
            with conn:
                try:
                    while data := conn.recv(64):
                        conn.sendall(data)
                except OSError:
                    pass

        threading.Thread(target=serve, daemon=True).start()
        proxy = CuttableProxy("127.0.0.1", echo.getsockname()[1])
        self.addCleanup(proxy.stop)
        survivors = 0
        for i in range(200):  # the cut lands at varied points of the proxy's accept
            proxy.restore()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as client:
                time.sleep(0.0005 * (i % 10))
                proxy.cut()
                try:
                    client.sendall(b"x")
                    survivors += client.recv(1) == b"x"
                except OSError:
                    pass
        self.assertEqual(survivors, 0)
        proxy.restore()  # and it forwards again
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as client:
            client.sendall(b"y")
            self.assertEqual(client.recv(1), b"y")


# ------------------------------------------------------------------ configuration


class SchemaNameTests(unittest.TestCase):
    BAD = ["x; DROP TABLE edges", "a b", "1abc", "ct-test", 'x"y', "a" * 64, "sch\u00e9ma"]

    def test_finding_19_pg_schema_must_be_an_identifier(self):
        for bad in self.BAD:
            for field in ("pgSchema", "schema"):
                section = {"dialect": "postgres", "user": "ct", "database": "test",
                           field: bad}
                with self.subTest(bad=bad, field=field):
                    with self.assertRaises(ConfigError) as caught:
                        parse_locator_config({"database": section}, "/tmp")
                    self.assertIn(f"database.{field} must be a PostgreSQL identifier",
                                  str(caught.exception))
        for good in ("codetogether", "_x1", "CT_Test", "a" * 63):
            config = parse_locator_config({"database": {
                "dialect": "postgres", "user": "ct", "database": "test", "pgSchema": good}},
                "/tmp")
            self.assertEqual(config.database.pg_schema, good)

    def test_finding_19_locator_refuses_to_start_with_a_bad_schema(self):
        config = fresh_database(self, "postgres")
        bad = config.__class__(**{**config.__dict__,
                                  "pg_schema": f"{config.pg_schema}; DROP SCHEMA x"})
        code, output = run_to_exit("ctlocator", {
            "CT_LOCATOR_CONFIG": write_config(bad), "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
            "CT_DATA_DIR": tempfile.mkdtemp(), "CT_EDGE_SECRET": SECRET})
        self.assertEqual(code, 1)
        self.assertIn("twistd ctlocator: CT_LOCATOR_CONFIG: locator config ", output)
        self.assertIn("database.pgSchema must be a PostgreSQL identifier", output)
        self.assertNotIn("services available", output)
        self.assertNotIn("Traceback", output)  # one line, like every invalid setting
