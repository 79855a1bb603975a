"""``/clients/``: one count per install (entry file per IDE), the HTML page, JSON sub-folder
listings, traversal refused, ``CT_NOCLIENTS``."""

from __future__ import annotations

import json
import os
import socket

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, tcp, threads
from twisted.trial import unittest

from tests.edge.util import start_edge, wait_for
from tests.metrics.util import fetch

ECLIPSE_SITE = {  # a p2 update site, in the order p2 fetches it for one install
    "eclipse/site/p2.index": b"version=1\nmetadata.repository.factory.order=content.jar,!\n",
    "eclipse/site/content.jar": b"C" * 300,
    "eclipse/site/artifacts.jar": b"A" * 200,
    "eclipse/site/features/codetogether.feature_1.0.jar": b"F" * 50,
    "eclipse/site/plugins/codetogether_1.0.jar": b"P" * 400,
    "eclipse/site/plugins/codetogether.ui_1.0.jar": b"U" * 400,
}
PACKAGES = {
    "intellij/codetogether-intellij-1.0.zip": b"I" * 70000,
    "intellij/updatePlugins.xml": b"<plugins/>",
    "vscode/codetogether-1.0.vsix": b"V" * 1000,
    "vscode/odd <b>&amp; name.vsix": b"W" * 10,
    **ECLIPSE_SITE,
    "README.txt": b"not in a client folder",
}


def make_clients_dir(case) -> str:
    base = os.path.abspath(case.mktemp())
    root = os.path.join(base, "clients")
    for rel, data in PACKAGES.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    with open(os.path.join(base, "secret.txt"), "wb") as f:
        f.write(b"outside the clients directory")
    os.symlink(os.path.join(base, "secret.txt"), os.path.join(root, "vscode", "link.vsix"))
    os.symlink(base, os.path.join(root, "eclipse", "up"))  # a folder leading outside
    with open(os.path.join(root, "intellij", ".hidden"), "wb") as f:
        f.write(b"hidden")
    return root


def downloads_in(text: str) -> dict:
    for family in text_string_to_metric_families(text):
        if family.name == "codetogether_client_downloads":
            return {s.labels["client"]: s.value for s in family.samples
                    if s.name.endswith("_total")}
    raise AssertionError("no downloads metric")


def raw_get(port: int, path: str) -> bytes:
    """One HTTP/1.0 request sent byte for byte (no client-side path clean-up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


class DownloadTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.root = make_clients_dir(self)
        self.service, self.url = start_edge(self, CT_CLIENTS_DIR=self.root,
                                            CT_PROMETHEUS_ENABLED="true")
        self.counter = self.service.downloads

    @defer.inlineCallbacks
    def test_two_intellij_one_vscode_download_show_in_metrics(self):
        for path in ["intellij/codetogether-intellij-1.0.zip"] * 2 + [
                "vscode/codetogether-1.0.vsix"]:
            code, headers, body = yield fetch(f"{self.url}/clients/{path}")
            self.assertEqual((code, body), (200, PACKAGES[path]))
            if path.endswith(".vsix"):  # unknown types are bytes, never text/html
                self.assertEqual(headers.getRawHeaders(b"content-type"),
                                 [b"application/octet-stream"])
        self.assertEqual(self.counter.counts(), {"eclipse": 0, "intellij": 2, "vscode": 1})
        _, _, body = yield fetch(self.url + "/metrics")
        self.assertEqual(downloads_in(body.decode()), {"eclipse": 0, "intellij": 2, "vscode": 1})

    @defer.inlineCallbacks
    def test_head_not_modified_errors_and_partial_ranges_are_not_counted(self):
        path = f"{self.url}/clients/intellij/codetogether-intellij-1.0.zip"
        code, _, _ = yield fetch(path, b"HEAD")
        self.assertEqual(code, 200)
        code, _, _ = yield fetch(path, headers={"If-Modified-Since":
                                                "Fri, 01 Jan 2100 00:00:00 GMT"})
        self.assertEqual(code, 304)
        code, _, _ = yield fetch(f"{self.url}/clients/intellij/missing.zip")
        self.assertEqual(code, 404)
        code, _, body = yield fetch(path, headers={"Range": "bytes=0-99"})
        self.assertEqual((code, len(body)), (206, 100))
        code, _, _ = yield fetch(path, headers={"Range": "bytes=0-9,20-29"})
        self.assertEqual(code, 206)  # multi-range: not counted
        code, _, _ = yield fetch(path, headers={"Range": "bytes=999999-"})
        self.assertEqual(code, 416)
        code, _, _ = yield fetch(f"{self.url}/clients/README.txt")
        self.assertEqual(code, 200)  # served, but belongs to no client kind
        self.assertEqual(self.counter.counts(), {"eclipse": 0, "intellij": 0, "vscode": 0})
        # the part carrying the last byte completes a (resumed) download: counted once
        code, _, body = yield fetch(path, headers={"Range": "bytes=100-"})
        self.assertEqual((code, len(body)), (206, 70000 - 100))
        self.assertEqual(self.counter.counts()["intellij"], 1)

    @defer.inlineCallbacks
    def test_an_eclipse_update_site_install_counts_once(self):
        for path in ECLIPSE_SITE:  # every file p2 fetches for one install, then a re-fetch
            code, _, body = yield fetch(f"{self.url}/clients/{path}")
            self.assertEqual((code, body), (200, PACKAGES[path]))
        for path in ("eclipse/site/artifacts.jar", "eclipse/site/plugins/codetogether_1.0.jar",
                     "intellij/updatePlugins.xml"):  # not an install entry
            code, _, _ = yield fetch(f"{self.url}/clients/{path}")
            self.assertEqual(code, 200)
        _, _, body = yield fetch(self.url + "/metrics")
        self.assertEqual(downloads_in(body.decode()), {"eclipse": 1, "intellij": 0, "vscode": 0})

    @defer.inlineCallbacks
    def test_the_page_lists_what_is_available_per_ide(self):
        code, headers, body = yield fetch(self.url + "/clients/")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"])
        page = body.decode()
        for section, link in (("Eclipse", '<a href="/clients/eclipse/site/">update site</a>'),
                              ("IntelliJ IDEA", '<a href="/clients/intellij/updatePlugins.xml">'
                                                'plugin repository</a>'),
                              ("IntelliJ IDEA", '<a href="/clients/intellij/codetogether-'
                                                'intellij-1.0.zip">codetogether-intellij-1.0.zip'),
                              ("VS Code", '<a href="/clients/vscode/codetogether-1.0.vsix">')):
            self.assertIn(f"<h2>{section}</h2>", page)
            self.assertIn(link, page)
        self.assertIn('<a href="/clients/vscode/odd%20%3Cb%3E%26amp%3B%20name.vsix">'
                      "odd &lt;b&gt;&amp;amp; name.vsix</a>", page)  # names escaped
        code, _, body = yield fetch(self.url + "/clients/vscode/odd%20%3Cb%3E%26amp%3B%20name.vsix")
        self.assertEqual((code, body), (200, b"W" * 10))  # the quoted link leads to the file
        self.assertNotIn("<b>", page)
        self.assertNotIn("link.vsix", page)  # leads outside the directory
        self.assertNotIn("secret", page)
        self.assertNotIn("http", page.split("</title>", 1)[1])  # no external assets

    @defer.inlineCallbacks
    def test_sub_folders_are_listed_as_json(self):
        code, _, body = yield fetch(self.url + "/clients/intellij/")
        listing = json.loads(body)
        self.assertEqual(listing["client"], "intellij")
        self.assertEqual(listing["entries"], [{
            "name": "codetogether-intellij-1.0.zip", "type": "file", "size": 70000,
            "url": "/clients/intellij/codetogether-intellij-1.0.zip",
            "modified": listing["entries"][0]["modified"]}, {
            "name": "updatePlugins.xml", "type": "file", "size": 10,
            "url": "/clients/intellij/updatePlugins.xml",
            "modified": listing["entries"][1]["modified"]}])  # .hidden is not listed
        code, _, _ = yield fetch(self.url + "/clients")
        self.assertEqual(code, 302)  # redirected to /clients/

    @defer.inlineCallbacks
    def test_traversal_and_hidden_files_are_refused(self):
        port = int(self.url.rsplit(":", 1)[1])
        for path in ["/clients/../../secret.txt", "/clients/%2e%2e/secret.txt",
                     "/clients/vscode/..%2f..%2fsecret.txt", "/clients/vscode/link.vsix",
                     "/clients/intellij/.hidden", "/clients/..%2f..%2f..%2fetc%2fpasswd",
                     "/clients/eclipse/up/secret.txt", "/clients/vscode/%00",
                     "/clients/vscode/codetogether-1.0.vsix%00.txt",
                     "/clients/%2e%2e%2fsecret.txt"]:
            response = yield threads.deferToThread(raw_get, port, path)
            status = response.split(b"\r\n", 1)[0]
            self.assertNotIn(b"outside the clients directory", response, path)
            self.assertRegex(status, rb" 40[04] ", path)  # 400: refused as malformed (NUL)
        self.assertEqual(self.counter.counts(), {"eclipse": 0, "intellij": 0, "vscode": 0})


class CutTransferTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_transfer_cut_before_the_end_is_not_counted(self):
        root = make_clients_dir(self)
        big = os.path.join(root, "intellij", "big.zip")
        with open(big, "wb") as f:
            f.truncate(64 * 1024 * 1024)  # sparse: far more than the socket buffers hold
        service, url = start_edge(self, CT_CLIENTS_DIR=root)
        port = int(url.rsplit(":", 1)[1])

        def cut():
            """Returns the port the edge saw the cut transfer come from."""
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /clients/intellij/big.zip HTTP/1.0\r\nHost: x\r\n\r\n")
                got = 0
                while got < 256 * 1024:
                    got += len(s.recv(65536))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                return s.getsockname()[1]

        def edge_still_serves(peer_port):
            return any(isinstance(t, tcp.Server) and t.getPeer().port == peer_port
                       for t in reactor.getReaders() + reactor.getWriters())

        cut_from = yield threads.deferToThread(cut)  # closed with a reset after 256 KiB
        yield wait_for(lambda: not edge_still_serves(cut_from))  # the edge saw the reset
        code, _, _ = yield fetch(f"{url}/clients/vscode/codetogether-1.0.vsix")
        yield wait_for(lambda: service.downloads.counts()["vscode"] == 1)
        self.assertEqual(service.downloads.counts(), {"eclipse": 0, "intellij": 0, "vscode": 1})


class NothingConfiguredTests(unittest.TestCase):
    @defer.inlineCallbacks
    def check_page(self, url, says):
        code, headers, body = yield fetch(url + "/clients/")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"])
        self.assertIn("No client packages are configured", body.decode())
        self.assertIn(says, body.decode())
        code, _, _ = yield fetch(url + "/clients")
        self.assertEqual(code, 302)  # redirected to /clients/
        code, _, _ = yield fetch(url + "/clients/vscode/codetogether-1.0.vsix")
        self.assertEqual(code, 404)

    def test_unset_directory_says_which_setting_to_set(self):
        _, url = start_edge(self)
        return self.check_page(url, "Set <code>CT_CLIENTS_DIR</code>")

    def test_empty_directory_says_it_holds_no_packages(self):
        root = self.mktemp()
        os.makedirs(os.path.join(root, "vscode"))
        _, url = start_edge(self, CT_CLIENTS_DIR=root)
        return self.check_page(url, "holds none")


class HiddenClientsTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_noclients_hides_the_route(self):
        root = make_clients_dir(self)
        _, url = start_edge(self, CT_CLIENTS_DIR=root, CT_NOCLIENTS="true")
        code, _, _ = yield fetch(url + "/clients/intellij/codetogether-intellij-1.0.zip")
        self.assertEqual(code, 404)

