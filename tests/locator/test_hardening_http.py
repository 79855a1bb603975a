"""The shared HTTP site under hostile requests, against real daemons over real sockets:
bounded bodies (finding 7), HSTS over HTTPS (finding 7), malformed Content-Type (finding 29).
"""

from __future__ import annotations

import base64
import json
import tempfile
import unittest
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.locator import rawhttp
from tests.procutil import Daemon
from tests.tlsutil import write_self_signed

CAP = 64 * 1024
HUGE = 30 * 1024 * 1024
OPERATOR = ("ctuser", "operator-password")


def start_daemons(case_class, tls: bool = False):
    """One locator (HTTP, and HTTPS when ``tls``) and one lone edge for the whole class."""
    root = Path(tempfile.mkdtemp(prefix="ct-http-"))
    env = {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_EDGE_SECRET": "x" * 20,
           "CT_DASHBOARD_USER": OPERATOR[0], "CT_DASHBOARD_PASSWORD": OPERATOR[1],
           "CT_DATA_DIR": str(root / "locator")}
    if tls:
        cert, key = write_self_signed(root)
        env.update({"CT_HTTPS_LISTEN": "ssl:0:interface=127.0.0.1", "CT_TLS_CERT": str(cert),
                    "CT_TLS_KEY": str(key)})
    case_class.locator = Daemon("ctlocator", env)
    case_class.edge = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                        "CT_PROBE_INTERVAL": "0",
                                        "CT_DATA_DIR": str(root / "edge")})
    case_class.locator_port = case_class.locator.port("HTTP")
    case_class.edge_port = case_class.edge.port("HTTP")
    if tls:
        case_class.locator_tls_port = case_class.locator.port("SSL")


def stop_daemons(case_class):
    case_class.edge.stop()
    case_class.locator.stop()


def assert_clean_log(case, daemon):
    log = daemon.log()
    case.assertNotIn("Traceback", log)
    case.assertNotIn("Unhandled Error", log)


class _WithDaemons(unittest.TestCase):
    """One locator and one lone edge for the whole class (see :func:`start_daemons`)."""

    tls = False

    @classmethod
    def setUpClass(cls):
        start_daemons(cls, tls=cls.tls)

    @classmethod
    def tearDownClass(cls):
        stop_daemons(cls)


class BodyLimitTests(_WithDaemons):
    """Finding 7: 30 MB bodies to unauthenticated routes were read in full."""

    def targets(self):
        return [(self.locator_port, b"/api/v1/sessions"),
                (self.locator_port, b"/dashboard/login"),
                (self.edge_port, b"/health")]

    def test_finding_7_content_length_over_the_cap_is_refused_before_the_body(self):
        for port, target in self.targets():
            with self.subTest(port=port, target=target):
                # Headers only: the answer comes before a byte of the body was sent.
                with rawhttp.connect(port) as sock:
                    sock.sendall(rawhttp.head(b"POST", target, [
                        (b"Content-Length", str(HUGE).encode()),
                        (b"Content-Type", b"application/json")]))
                    answer = rawhttp.read_response(sock)
                self.assertEqual(answer.status, 413)
                self.assertEqual(json.loads(answer.body)["error"], "too-large")
                self.assertEqual(answer.header(b"connection"), b"close")

                # Sending it all anyway: the server stopped reading and closed.
                with rawhttp.connect(port, timeout=10) as sock:
                    with self.assertRaises(OSError):
                        sock.sendall(rawhttp.head(b"POST", target, [
                            (b"Content-Length", str(HUGE).encode())]) + b"x" * HUGE)
        self.assertIn("refused (413): Content-Length 31457280 over the 65536 byte limit",
                      self.locator.log())
        for daemon in (self.locator, self.edge):
            assert_clean_log(self, daemon)

    def test_finding_7_chunked_body_is_cut_at_the_cap(self):
        for port, target in self.targets():
            with self.subTest(port=port, target=target):
                sent, answer = rawhttp.send_chunked(port, target, HUGE)
                self.assertEqual(answer.status, 413)
                self.assertEqual(json.loads(answer.body)["error"], "too-large")
                # Refused at the first chunk past the cap, not after 30 MB.
                self.assertLessEqual(sent, CAP + 4 * 8192)
        self.assertIn("refused (413): chunked body over the 65536 byte limit",
                      self.locator.log())
        for daemon in (self.locator, self.edge):
            assert_clean_log(self, daemon)

    def test_finding_7_bodies_within_the_cap_are_served(self):
        answer = rawhttp.request(self.locator_port, b"POST", b"/api/v1/sessions",
                                 body=b"x" * (CAP - 10))
        self.assertEqual(answer.status, 503)  # no edge yet: the route ran
        self.assertEqual(json.loads(answer.body)["error"], "no-edge")
        sent, answer = rawhttp.send_chunked(self.locator_port, b"/api/v1/sessions", CAP - 8192)
        self.assertEqual(answer.status, 503)
        # The regions route takes up to 1 MiB (a large CIDR table); without credentials the
        # route answers 401, which proves the body was accepted.
        cidrs = [f"10.{i // 256}.{i % 256}.0/24" for i in range(20000)]
        body = json.dumps({"regions": {"eu": cidrs}}).encode()
        self.assertGreater(len(body), 5 * CAP)
        answer = rawhttp.request(self.locator_port, b"PUT", b"/api/v1/regions", body=body)
        self.assertEqual(answer.status, 401)
        answer = rawhttp.request(self.locator_port, b"PUT", b"/api/v1/regions",
                                 body=b"x" * (1024 * 1024 + 1))
        self.assertEqual(answer.status, 413)

    def test_finding_29_malformed_content_type_is_a_400(self):
        for value in (b"\x1c\x1d", b"';*)//;a*", b"text/plain\x85", b"a/b; c=\xff"):
            for port, target in self.targets() + [(self.locator_port, b"/api/v1/regions")]:
                with self.subTest(value=value, target=target):
                    answer = rawhttp.request(port, b"POST", target,
                                             [(b"Content-Type", value)], b"user=a&password=b")
                    self.assertEqual(answer.status, 400)
                    self.assertEqual(json.loads(answer.body)["error"], "bad-request")
        self.assertIn("refused (400): malformed Content-Type", self.locator.log())
        for daemon in (self.locator, self.edge):
            assert_clean_log(self, daemon)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(min_size=1, max_size=60))
    def test_finding_29_every_content_type_gets_an_answer(self, value):
        value = value.translate(None, b"\x00\r\n").strip(b" \t")
        if not value:
            return
        for port, target in ((self.locator_port, b"/dashboard/login"),
                             (self.edge_port, b"/")):
            answer = rawhttp.request(port, b"POST", target, [(b"Content-Type", value)],
                                     b"user=a&password=b")
            self.assertIsNotNone(answer.status, f"no answer for Content-Type {value!r}")
            self.assertLess(answer.status, 500)
        assert_clean_log(self, self.locator)
        assert_clean_log(self, self.edge)


class HSTSTests(_WithDaemons):
    """Finding 7: HTTPS answers carry Strict-Transport-Security; plain HTTP ones do not."""

    tls = True

    def test_finding_7_hsts_on_https_responses_only(self):
        for target in (b"/health", b"/api/v1/teams/core/edge", b"/no/such/route"):
            with self.subTest(target=target):
                secure = rawhttp.request(self.locator_tls_port, b"GET", target, tls=True)
                self.assertEqual(secure.header(b"strict-transport-security"),
                                 b"max-age=31536000")
                plain = rawhttp.request(self.locator_port, b"GET", target)
                self.assertEqual(plain.status, secure.status)
                self.assertIsNone(plain.header(b"strict-transport-security"))
        with rawhttp.connect(self.locator_tls_port, tls=True) as sock:
            sock.sendall(rawhttp.head(b"POST", b"/api/v1/sessions",
                                      [(b"Content-Length", str(HUGE).encode())]))
            refused = rawhttp.read_response(sock)
        self.assertEqual(refused.status, 413)
        self.assertEqual(refused.header(b"strict-transport-security"), b"max-age=31536000")


class OperatorRouteInputTests(_WithDaemons):
    """The operator routes ctctl uses: credentials first, then every query value and path
    segment bounded, a 400 with one JSON error for bad ones, never a traceback."""

    def call(self, method: bytes, target: bytes, auth: bool = True):
        headers = []
        if auth:
            token = base64.b64encode(":".join(OPERATOR).encode())
            headers.append((b"authorization", b"Basic " + token))
        return rawhttp.request(self.locator_port, method, target, headers=headers)

    def test_credentials_come_first(self):
        for method, target in ((b"GET", b"/api/v1/sessions"), (b"GET", b"/api/v1/usage"),
                               (b"GET", b"/api/v1/audit"),
                               (b"POST", b"/api/v1/sessions/s1/end"),
                               (b"POST", b"/api/v1/sessions/s1/participants/2/remove")):
            answer = self.call(method, target, auth=False)
            self.assertEqual(answer.status, 401, target)
            self.assertEqual(json.loads(answer.body)["error"], "unauthorized")

    def test_bad_values_are_400(self):
        for target in (b"/api/v1/usage?days=0", b"/api/v1/usage?days=367",
                       b"/api/v1/usage?days=-1", b"/api/v1/usage?days=1e3",
                       b"/api/v1/usage?days=%d9%a3",  # an Arabic-Indic digit
                       b"/api/v1/audit?offset=" + b"9" * 5000,
                       b"/api/v1/audit?since=nan", b"/api/v1/audit?until=inf",
                       b"/api/v1/audit?since=-5", b"/api/v1/audit?limit=0",
                       b"/api/v1/audit?limit=1001", b"/api/v1/audit?offset=x",
                       b"/api/v1/audit?kind=%00", b"/api/v1/audit?user=%ff",
                       b"/api/v1/audit?session=" + b"s" * 65):
            answer = self.call(b"GET", target)
            self.assertEqual(answer.status, 400, (target, answer.body))
            self.assertEqual(json.loads(answer.body)["error"], "bad-request", target)
        for target in (b"/api/v1/sessions/s1/participants/two/remove",
                       b"/api/v1/sessions/s1/participants/1234567890/remove",
                       b"/api/v1/sessions/s1/participants/%d9%a3/remove",
                       b"/api/v1/sessions/%00/end"):
            answer = self.call(b"POST", target)
            self.assertEqual(answer.status, 400, (target, answer.body))
        assert_clean_log(self, self.locator)

    def test_good_values_are_answered(self):
        answer = self.call(b"GET", b"/api/v1/usage?days=366")
        self.assertEqual(answer.status, 200)
        self.assertEqual(len(json.loads(answer.body)["days"]), 366)
        answer = self.call(b"GET", b"/api/v1/audit?since=0&until=99999999999&limit=1000"
                                   b"&kind=dashboard_login&offset=0")
        self.assertEqual((answer.status, json.loads(answer.body)), (200, {"entries": []}))
        answer = self.call(b"GET", b"/api/v1/sessions")
        self.assertEqual((answer.status, json.loads(answer.body)), (200, {"sessions": []}))
        answer = self.call(b"POST", b"/api/v1/sessions/s1/end")
        self.assertEqual((answer.status, json.loads(answer.body)["error"]), (404, "not-found"))
