"""The browser app as deployed: over HTTPS with a self-signed certificate the browser is
told to trust, behind HAProxy routing on the ``ctstickiness`` cookie, and through the
locator's redirect. Headless Chromium, real edges and locator (``twistd``), and the host
``ct-client share`` on a temporary directory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.deployment.test_haproxy import EXAMPLE, free_port
from tests.deployment.util import Deployment
from tests.procutil import Daemon
from tests.tlsutil import write_self_signed
from tests.webclient.support import AppPage, start_edge, wait_until
from tests.webclient.test_browser import BrowserTestCase

pytestmark = pytest.mark.slow


def spki_hash(cert_path: Path) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes for a certificate."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def edit_together(case, link_a: str, link_b: str, host, shot: str):
    """A and B join, A types, the host and B have it; returns the pages."""
    a, b = AppPage(case, extra_args=case.browser_args), AppPage(case, extra_args=case.browser_args)
    a.join(link_a, "Ada")
    b.join(link_b, "Bob")
    wait_until(lambda: a.path() == "README.md", 10, "README.md open in A")
    a.type_at_end("Typed through the deployment.")
    wait_until(lambda: "Typed through the deployment." in (host.read("README.md") or ""), 5,
               "A's typing at the host")
    wait_until(lambda: b.editor_text() == host.read("README.md"), 5, "B converged")
    wait_until(lambda: sorted(b.people()) == ["Ada", "Bob", "Hannah Host"], 10, "people")
    a.screenshot(shot)
    return a, b


class HTTPSTests(BrowserTestCase):
    browser_args = ()

    def test_over_https_with_a_self_signed_certificate(self):
        folder = Path(tempfile.mkdtemp(prefix="ct-webclient-tls-"))
        self.addCleanup(shutil.rmtree, folder, True)
        cert, key = write_self_signed(folder, hostname="ct-test.example")
        edge, url = start_edge(self, CT_HTTPS_LISTEN="ssl:0:interface=127.0.0.1",
                               CT_TLS_CERT=str(cert), CT_TLS_KEY=str(key))
        https_port = edge.port("SSL")
        host = self.share(url)  # the host over plain HTTP on loopback
        # A name that is not this computer: only HTTPS makes the page a secure context.
        self.browser_args = ("--host-resolver-rules=MAP ct-test.example 127.0.0.1",
                             f"--ignore-certificate-errors-spki-list={spki_hash(cert)}")
        link = host.link.replace(url, f"https://ct-test.example:{https_port}")
        a, b = edit_together(self, link, link, host, "12-https")
        for page in (a, b):
            self.assertTrue(page.driver.current_url.startswith("https://ct-test.example:"))
            self.assertIs(page.js("return window.isSecureContext"), True)
            self.assertIs(page.js("return !!(globalThis.crypto && crypto.subtle)"), True)

        # Both type into the same file at the same time (A at the end, B at the start):
        # the disk and both editors end up identical, with both edits whole.
        typed = {a: " A-typing-at-the-end-concurrently", b: "B-typing-at-the-start-concurrently "}
        for page in (a, b):
            page.browser.find(".cm-content").click()
        go = threading.Barrier(2, timeout=20)
        failures = []

        def type_(page, at_start: bool):
            from selenium.webdriver.common.keys import Keys

            try:
                content = page.browser.find(".cm-content")
                content.send_keys(Keys.CONTROL, Keys.HOME if at_start else Keys.END)
                go.wait()
                for chunk in (typed[page][i:i + 4] for i in range(0, len(typed[page]), 4)):
                    content.send_keys(chunk)  # in bursts, so the two interleave on the wire
            except Exception as e:  # noqa: BLE001 - reported by the test below
                failures.append(e)

        threads = [threading.Thread(target=type_, args=(a, False)),
                   threading.Thread(target=type_, args=(b, True))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "typing did not finish")
        self.assertEqual(failures, [])

        def converged():
            disk = host.read("README.md")
            return disk if disk == a.editor_text() == b.editor_text() else None

        text = wait_until(converged, 10, "the disk, A's and B's editor identical")
        self.assertTrue(text.startswith(typed[b]), text)
        self.assertTrue(text.endswith(typed[a]), text)
        self.assertIn("Typed through the deployment.", text)
        b.screenshot("12-https-b-converged")


class HAProxyTests(BrowserTestCase):
    browser_args = ()

    def test_behind_haproxy_routing_on_the_stickiness_cookie(self):
        if shutil.which("haproxy") is None:
            self.skipTest("haproxy is not installed (scripts/system-deps.sh)")
        ports = {}
        for name in ("edge1", "edge2"):
            daemon = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                       "CT_PROBE_INTERVAL": "0", "CT_EDGE_ID": name})
            self.addCleanup(daemon.stop)
            ports[name] = daemon.port("HTTP")
        port = free_port()
        # The documented configuration with this test's ports, logging every request as
        # soon as the edge answers (websockets last): the backend server it went to and
        # the ctstickiness cookie and header it carried.
        config = (EXAMPLE.read_text()
                  .replace("bind 127.0.0.1:8443", f"bind 127.0.0.1:{port}\n" + HAPROXY_LOG)
                  .replace("127.0.0.1:1081", f"127.0.0.1:{ports['edge1']}")
                  .replace("127.0.0.1:1082", f"127.0.0.1:{ports['edge2']}"))
        self.assertIn("log stdout format raw local0", config)
        work = tempfile.mkdtemp(prefix="ct-haproxy-")
        self.addCleanup(shutil.rmtree, work, True)
        path = os.path.join(work, "haproxy.cfg")
        Path(path).write_text(config)
        check = subprocess.run(["haproxy", "-c", "-f", path], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        log_path = Path(work) / "haproxy.log"
        log_file = open(log_path, "wb")
        self.addCleanup(log_file.close)
        proxy = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=log_file,
                                 stderr=subprocess.STDOUT)

        def stop():
            proxy.terminate()
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(timeout=10)

        self.addCleanup(stop)
        via = f"http://127.0.0.1:{port}"
        wait_until(lambda: urllib.request.urlopen(via + "/health", timeout=2).status == 200,
                   15, "HAProxy up")

        # Sessions until each edge holds one (leastconn: the hosts' sockets alternate).
        by_edge: dict[str, object] = {}
        for _ in range(6):
            host = self.share(via)
            edge = self._holder(host.session, ports)
            by_edge.setdefault(edge, host)
            if len(by_edge) == 2:
                break
        self.assertEqual(set(by_edge), {"edge1", "edge2"}, "sessions on both edges")

        for edge, host in sorted(by_edge.items()):
            sticky = parse_qs(urlsplit(host.link).query)["ctstickiness"][0]
            a, b = edit_together(self, host.link, host.link, host, f"13-haproxy-{edge}")
            for page in (a, b):  # the browser holds the cookie (HttpOnly: not in document)
                self.assertEqual(page.driver.get_cookie("ctstickiness")["value"], sticky)
            other = "edge2" if edge == "edge1" else "edge1"

            def joins():
                return [e for e in haproxy_log(log_path)
                        if e["cookie"] == sticky and e["path"] == "/ws/session"]

            # Both browsers' websockets carried the cookie (browsers cannot send headers)
            # and HAProxy sent each to the session's edge on it.
            entries = wait_until(lambda: len(joins()) >= 2 and joins(), 10,
                                 f"two joins with the cookie in HAProxy's log ({edge})")
            for entry in entries:
                self.assertEqual(entry["header"], "-", entry)
                self.assertEqual(entry["route"], f"edges/{edge}", entry)
                self.assertEqual(entry["status"], "101", entry)
            # The app's page: served by the session's edge; a first request without the
            # cookie that the balancer sent to the other edge came back with it (302).
            pages = [e for e in haproxy_log(log_path) if e["path"] == f"/join/{host.session}"]
            self.assertGreaterEqual(len(pages), 2, pages)  # A's and B's at least
            for entry in pages:
                if entry["route"] == f"edges/{edge}":
                    self.assertEqual(entry["status"], "200", entry)
                else:
                    self.assertEqual((entry["status"], entry["cookie"]), ("302", "-"), entry)
            self.assertEqual(sum(e["status"] == "200" for e in pages), 2, pages)
            # The host's own socket carried the value as a header, to the same edge.
            hosted = [e for e in haproxy_log(log_path)
                      if e["header"] == sticky and e["path"] == "/ws/session"]
            self.assertTrue(hosted, "the host's socket in HAProxy's log")
            self.assertEqual({e["route"] for e in hosted}, {f"edges/{edge}"}, hosted)
            # Nothing carrying this session's value (cookie or the host's header) went to
            # the other edge.
            for entry in haproxy_log(log_path):
                if sticky in (entry["cookie"], entry["header"]):
                    self.assertNotEqual(entry["route"], f"edges/{other}", entry)

    @staticmethod
    def _holder(session: str, ports: dict[str, int]) -> str:
        """The edge that holds ``session``: its page answers there, 404 elsewhere."""
        holders = []
        for name, edge_port in ports.items():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{edge_port}/join/{session}", timeout=5)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
                continue
            holders.append(name)
        assert len(holders) == 1, f"session {session} held by {holders}"
        return holders[0]


# Logged by the test's HAProxy frontend: one line per request, once the edge answered.
HAPROXY_LOG = """    option logasap
    http-request set-var(txn.ctcookie) req.cook(ctstickiness)
    http-request set-var(txn.ctheader) req.hdr(ctstickiness)
    log-format "ctlog %b/%s %ST cookie=%[var(txn.ctcookie)] header=%[var(txn.ctheader)] %{+Q}r"
"""
HAPROXY_LINE = re.compile(r'ctlog (?P<route>\S+) (?P<status>\S+) cookie=(?P<cookie>\S*) '
                          r'header=(?P<header>\S*) "(?P<method>\S+) (?P<path>[^ ?"]+)')


def haproxy_log(path: Path) -> list[dict]:
    """The requests HAProxy logged so far: route (backend/server), status, the
    ctstickiness cookie and header (``-``: none), method, path."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        match = HAPROXY_LINE.search(line)
        if match:
            entries.append(match.groupdict())
    return entries


class LocatorRedirectTests(BrowserTestCase):
    browser_args = ()

    def test_the_locators_link_lands_on_the_edges_app(self):
        deployment = Deployment(self)
        deployment.start_locator()
        edge_url = deployment.start_edge("e1")
        wait_until(lambda: self._online(deployment), 30, "edge e1 online at the locator")
        host = self.share(deployment.locator_url, locator=True)
        link = host.link
        self.assertTrue(link.startswith(deployment.locator_url + "/join/"), link)
        a, _ = edit_together(self, link, link, host, "14-via-locator")
        self.assertTrue(a.driver.current_url.startswith(edge_url + "/join/"),
                        a.driver.current_url)
        self.assertIn("#key=", a.driver.current_url)  # the fragment came along

    @staticmethod
    def _online(deployment) -> bool:
        from tests.deployment.util import OPERATOR

        request = urllib.request.Request(deployment.locator_url + "/api/v1/edges")
        token = base64.b64encode(f"{OPERATOR[0]}:{OPERATOR[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        edges = json.loads(urllib.request.urlopen(request, timeout=5).read())["edges"]
        return any(e["edge"] == "e1" and e["state"] == "online" for e in edges)
