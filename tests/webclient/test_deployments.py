"""The browser app as deployed: over HTTPS with a self-signed certificate the browser is
told to trust, behind HAProxy routing on the ``ctstickiness`` cookie, and through the
locator's redirect. Headless Chromium, real edges and locator (``twistd``), and the host
``ct-client share`` on a temporary directory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.request
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
        config = (EXAMPLE.read_text()
                  .replace("bind 127.0.0.1:8443", f"bind 127.0.0.1:{port}")
                  .replace("127.0.0.1:1081", f"127.0.0.1:{ports['edge1']}")
                  .replace("127.0.0.1:1082", f"127.0.0.1:{ports['edge2']}")
                  .replace("log stdout format raw local0", ""))
        work = tempfile.mkdtemp(prefix="ct-haproxy-")
        self.addCleanup(shutil.rmtree, work, True)
        path = os.path.join(work, "haproxy.cfg")
        Path(path).write_text(config)
        proxy = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)

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
        # Several sessions, so that some land on each edge and the browsers' first request
        # (no cookie yet: balanced by leastconn) meets the wrong edge at times, which
        # sends it back with the cookie (ct/webclient/web.py).
        hosts = [self.share(via) for _ in range(3)]
        for host in hosts:
            self.assertIn("ctstickiness=", host.link)
        for i, host in enumerate(hosts):
            edit_together(self, host.link, host.link, host, f"13-haproxy-{i}")


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
