"""How installs and update checks count (docs/metrics.md, "Installs and update checks"):
the requests each IDE makes, replayed over real HTTP against a real ``twistd ctedge``
process, read back from its Prometheus ``/metrics``.

- Eclipse (p2): an install fetches ``p2.index``, asks ``content.jar``'s ``Last-Modified``
  (``HEAD``), fetches it, then ``artifacts.jar``, features and plugins: one count. An update
  check against an unchanged site asks the ``Last-Modified`` again (and may send a
  conditional ``GET`` answered ``304``): no count. Once a new release is published, the
  check fetches ``content.jar`` again: one count, and installing the update adds none.
- IntelliJ: every update check fetches ``updatePlugins.xml``: no count; each plugin
  ``.zip`` fetched (install, or update to a newer version) counts once.
- VS Code: each ``.vsix`` fetched counts once; it never checks this server for updates.
  Likewise an archived Eclipse update site (``.zip``).
"""

from __future__ import annotations

import os
import time

from twisted.internet import defer
from twisted.trial import unittest

from tests.metrics.test_downloads import downloads_in
from tests.metrics.util import fetch
from tests.procutil import Daemon

SITE = "eclipse/site"
RELEASE_1 = {
    f"{SITE}/p2.index": b"version=1\nmetadata.repository.factory.order=content.jar,!\n"
                        b"artifact.repository.factory.order=artifacts.jar,!\n",
    f"{SITE}/content.jar": b"C1" * 300,
    f"{SITE}/artifacts.jar": b"A1" * 200,
    f"{SITE}/features/codetogether.feature_1.0.jar": b"F" * 50,
    f"{SITE}/plugins/codetogether_1.0.jar": b"P" * 400,
    "intellij/updatePlugins.xml": b'<plugins><plugin id="com.codetogether" version="1.0" '
                                  b'url="codetogether-intellij-1.0.zip"/></plugins>',
    "intellij/codetogether-intellij-1.0.zip": b"I" * 5000,
    "vscode/codetogether-1.0.vsix": b"V" * 1000,
    "eclipse/codetogether-eclipse-1.0.zip": b"Z" * 800,  # an archived update site
}
RELEASE_2 = {  # published a minute later
    f"{SITE}/content.jar": b"C2" * 310,
    f"{SITE}/artifacts.jar": b"A2" * 210,
    f"{SITE}/features/codetogether.feature_1.1.jar": b"G" * 50,
    f"{SITE}/plugins/codetogether_1.1.jar": b"Q" * 400,
    "intellij/updatePlugins.xml": b'<plugins><plugin id="com.codetogether" version="1.1" '
                                  b'url="codetogether-intellij-1.1.zip"/></plugins>',
    "intellij/codetogether-intellij-1.1.zip": b"J" * 5100,
}


def publish(root: str, files: dict[str, bytes], when: float) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (when, when))


class InstallsAndUpdateChecksTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.release_1 = time.time() - 3600
        publish(self.root, RELEASE_1, self.release_1)
        self.edge = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                      "CT_PROBE_INTERVAL": "0", "CT_CLIENTS_DIR": self.root,
                                      "CT_PROMETHEUS_ENABLED": "true",
                                      "CT_DATA_DIR": os.path.abspath(self.mktemp())})
        self.addCleanup(self.edge.stop)
        self.base = f"http://127.0.0.1:{self.edge.port('HTTP')}"

    @defer.inlineCallbacks
    def get(self, rel: str, method: bytes = b"GET", expect: int = 200, **headers):
        code, response_headers, body = yield fetch(f"{self.base}/clients/{rel}", method,
                                                   headers)
        self.assertEqual(code, expect, (rel, method, body[:200]))
        return response_headers, body

    @defer.inlineCallbacks
    def counts(self) -> dict:
        _, _, body = yield fetch(self.base + "/metrics")
        return downloads_in(body.decode())

    @defer.inlineCallbacks
    def eclipse_refresh(self, cached: dict[str, str]):
        """p2 loading the site (its CacheManager): ``p2.index``, then for ``content.jar``
        and ``artifacts.jar`` a ``HEAD`` for ``Last-Modified`` and a ``GET`` only when it
        differs from the cached copy's. ``cached``: name -> Last-Modified of the cache."""
        yield self.get(f"{SITE}/p2.index")
        fetched = []
        for name in ("content.jar", "artifacts.jar"):
            headers, body = yield self.get(f"{SITE}/{name}", b"HEAD")
            self.assertEqual(body, b"")
            remote = headers.getRawHeaders(b"last-modified")[0].decode()
            if cached.get(name) != remote:
                _, body = yield self.get(f"{SITE}/{name}")
                cached[name] = remote
                fetched.append(name)
        return fetched

    @defer.inlineCallbacks
    def test_eclipse_install_and_update_checks(self):
        cache: dict[str, str] = {}  # this Eclipse's p2 metadata cache
        fetched = yield self.eclipse_refresh(cache)  # first install: nothing cached
        self.assertEqual(fetched, ["content.jar", "artifacts.jar"])
        for rel in (f"{SITE}/features/codetogether.feature_1.0.jar",
                    f"{SITE}/plugins/codetogether_1.0.jar"):
            yield self.get(rel)
        self.assertEqual((yield self.counts())["eclipse"], 1)

        # Update checks while the site is unchanged: HEADs only, or a conditional GET
        # answered 304 (a p2 transport or a caching proxy in between may send one).
        for _ in range(3):
            self.assertEqual((yield self.eclipse_refresh(cache)), [])
        yield self.get(f"{SITE}/content.jar", expect=304,
                       **{"If-Modified-Since": cache["content.jar"]})
        self.assertEqual((yield self.counts())["eclipse"], 1)

        # Release 1.1 is published: the next check fetches content.jar again (one count,
        # whether or not the user then installs the update); installing it adds none.
        publish(self.root, RELEASE_2, self.release_1 + 60)
        fetched = yield self.eclipse_refresh(cache)
        self.assertEqual(fetched, ["content.jar", "artifacts.jar"])
        self.assertEqual((yield self.counts())["eclipse"], 2)
        for rel in (f"{SITE}/features/codetogether.feature_1.1.jar",
                    f"{SITE}/plugins/codetogether_1.1.jar"):
            yield self.get(rel)
        self.assertEqual((yield self.eclipse_refresh(cache)), [])  # and checks go quiet
        self.assertEqual((yield self.counts()), {"eclipse": 2, "intellij": 0, "vscode": 0})

        # Another Eclipse (its own empty cache) installing 1.1 counts once more.
        self.assertEqual((yield self.eclipse_refresh({})),
                         ["content.jar", "artifacts.jar"])
        self.assertEqual((yield self.counts())["eclipse"], 3)

    @defer.inlineCallbacks
    def test_intellij_vscode_and_archived_site_installs_and_update_checks(self):
        for _ in range(3):  # IntelliJ's update checks: the repository file, every time
            headers, body = yield self.get("intellij/updatePlugins.xml")
        self.assertIn(b'version="1.0"', body)
        last_modified = headers.getRawHeaders(b"last-modified")[0].decode()
        yield self.get("intellij/updatePlugins.xml", expect=304,
                       **{"If-Modified-Since": last_modified})
        self.assertEqual((yield self.counts())["intellij"], 0)

        yield self.get("intellij/codetogether-intellij-1.0.zip")  # the install
        yield self.get("intellij/codetogether-intellij-1.0.zip", b"HEAD")
        self.assertEqual((yield self.counts())["intellij"], 1)

        publish(self.root, RELEASE_2, self.release_1 + 60)
        _, body = yield self.get("intellij/updatePlugins.xml")  # a check finds 1.1
        self.assertIn(b'version="1.1"', body)
        self.assertEqual((yield self.counts())["intellij"], 1)
        yield self.get("intellij/codetogether-intellij-1.1.zip")  # the update
        self.assertEqual((yield self.counts())["intellij"], 2)

        yield self.get("vscode/codetogether-1.0.vsix", b"HEAD")
        self.assertEqual((yield self.counts())["vscode"], 0)
        yield self.get("vscode/codetogether-1.0.vsix")
        yield self.get("eclipse/codetogether-eclipse-1.0.zip", b"HEAD")
        yield self.get("eclipse/codetogether-eclipse-1.0.zip")
        self.assertEqual((yield self.counts()), {"eclipse": 1, "intellij": 2, "vscode": 1})
