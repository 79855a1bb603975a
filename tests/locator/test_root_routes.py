"""The locator's root in memory (``StubTreq``): the API at ``/api``, health at ``/health``
and ``/ct-health/``, the dashboard at ``/dashboard``, 404 elsewhere; no path rewriting."""

from __future__ import annotations

import json

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.common.credentials import Credentials
from ct.locator.api import LocatorAPI
from ct.locator.tap import LocatorRoot


class FakeLocator:
    def __init__(self):
        self.clock = Clock()

    def health(self):
        return defer.succeed((True, {"database": "ok"}))

    def snapshot(self):
        return {"edges": 0}

    def find_session(self, session_id):
        return defer.succeed({"session": session_id, "edge": "e1"})


class LocatorRootTests(unittest.TestCase):
    def setUp(self):
        root = LocatorRoot(link_factory=None)
        LocatorAPI(FakeLocator(), Credentials("ctuser", "pw")).mount(root)
        self.http = StubTreq(root)

    def get(self, path: str):
        pending = self.http.get("http://locator.example" + path, allow_redirects=False)
        self.http.flush()
        response = self.successResultOf(pending)
        return response.code, self.successResultOf(response.content())

    def test_routes(self):
        for path in ("/health", "/ct-health/"):
            code, body = self.get(path)
            self.assertEqual((code, json.loads(body)["role"]), (200, "locator"), path)
        code, body = self.get("/api/v1/sessions/abc")
        self.assertEqual((code, json.loads(body)["edge"]), (200, "e1"))
        for path in ("/", "/nothing", "/api/v1/nothing", "/apix"):
            self.assertEqual(self.get(path)[0], 404, path)
