"""API tokens: created on the dashboard (headless Chromium), used by ``ctctl`` and the
operator API against a real locator with two edges, scoped by role, refused once revoked."""

from __future__ import annotations

import json
import os
import sys

import treq
from twisted.internet import defer, reactor, utils
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from ct.storage.apitokens import split_token
from tests.dashboard.browser import Browser, missing, run
from tests.deployment.util import OPERATOR, Deployment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ctctl(*args, **env):
    """``ctctl ARGS`` as a child process; fires with ``(out, err, exit code)``."""
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT, **env}
    d = utils.getProcessOutputAndValue(sys.executable, ["-m", "ct.common.ctl", *args],
                                       env=full, path=ROOT)
    return d.addCallback(lambda r: (r[0].decode(), r[1].decode(), r[2]))


class ApiTokenTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.d = Deployment(self)
        self.d.start_locator()
        for name in ("e1", "e2"):
            self.d.start_edge(name)
        return self.d.wait_online(["e1", "e2"])

    @defer.inlineCallbacks
    def api(self, path: str, token: str, method: str = "GET"):
        response = yield treq.request(method, self.d.locator_url + path,
                                      headers={"Authorization": f"Bearer {token}"},
                                      pool=HTTPConnectionPool(reactor, persistent=False))
        body = yield response.json()
        return response.code, body

    @defer.inlineCallbacks
    def test_create_use_with_ctctl_scope_and_revoke(self):
        base = self.d.locator_url
        b = yield run(Browser, self)

        def create_tokens():
            b.driver.get(base + "/dashboard/tokens")
            b.find("#user").send_keys(OPERATOR[0])
            b.find("#password").send_keys(OPERATOR[1])
            b.find("#login").click()
            b.wait(lambda: b.driver.current_url.endswith("/dashboard/tokens"),
                   what="the tokens page")
            made = []
            for name, role, teams in (("deploy-script", "admin", ""),
                                      ("red-report", "team-viewer", "red")):
                b.find("#token-name").send_keys(name)
                b.find(f"#token-role option[value={role}]").click()
                b.find("#token-teams").send_keys(teams)
                b.find("#create-token").click()

                def shown():  # the new page's token, not the one the old page showed
                    text = b.text(".flash-token")
                    if text.startswith("ctk_") and text not in made:
                        made.append(text)
                        return True
                    return False

                b.wait(shown, what=f"token {name} shown")
            b.screenshot("tokens-01-created")
            b.driver.refresh()
            return made, b.driver.page_source

        (admin_token, viewer_token), page = yield run(create_tokens)
        self.assertTrue(admin_token.startswith("ctk_"))
        self.assertNotIn(admin_token, page)  # shown once only
        self.assertIn("deploy-script", page)

        # ctctl with the admin token: list and suspend; audited under the token's name.
        out, err, code = yield ctctl("edges", "--locator", base, CT_API_TOKEN=admin_token)
        self.assertEqual(code, 0, err)
        self.assertEqual(sorted(e["edge"] for e in json.loads(out)["edges"]), ["e1", "e2"])
        out, err, code = yield ctctl("suspend", "e2", "--locator", base,
                                     CT_API_TOKEN=admin_token)
        self.assertEqual(code, 0, err)
        yield self.d.wait_edges(lambda s: s.get("e2") == "suspended")
        rows = self.d.audit_rows("SELECT user_name FROM audit_entries WHERE kind = "
                                 "'edge_suspended'")
        self.assertEqual(rows, [("token:deploy-script",)])

        # The team viewer's token: no admin calls; its teams' audit entries only.
        code, body = yield self.api("/api/v1/edges", viewer_token)
        self.assertEqual(code, 403, body)
        self.assertIn("needs the admin role", body["message"])
        out, err, code = yield ctctl("resume", "e2", "--locator", base,
                                     CT_API_TOKEN=viewer_token)
        self.assertEqual(code, 1)
        self.assertIn("403", err)
        self.assertNotIn("Traceback", err)
        code, body = yield self.api("/api/v1/audit?limit=50", viewer_token)
        self.assertEqual((code, body["entries"]), (200, []))  # no red sessions yet
        code, body = yield self.api("/api/v1/audit?kind=edge_suspended", admin_token)
        self.assertEqual([e["edge"] for e in body["entries"]], ["e2"])

        # Revoked on the dashboard: refused from then on.
        def revoke():
            b.driver.get(base + "/dashboard/tokens")
            row = [r for r in b.driver.find_elements("css selector", "#tokens tbody tr")
                   if "deploy-script" in r.text][0]
            token_id = row.get_attribute("id")[len("token-"):]
            b.click_and_confirm(f"#revoke-{token_id}")
            b.wait(lambda: "revoked" in b.text(f"#token-state-{token_id}"), what="revoked")
            b.screenshot("tokens-02-revoked")
            return token_id

        token_id = yield run(revoke)
        out, err, code = yield ctctl("edges", "--locator", base, CT_API_TOKEN=admin_token)
        self.assertEqual(code, 1)
        self.assertIn("401", err)
        code, body = yield self.api("/api/v1/edges", admin_token)
        self.assertEqual(code, 401)
        # A forged secret for a live id is refused too.
        forged = viewer_token[:-4] + ("AAAA" if not viewer_token.endswith("AAAA") else "BBBB")
        code, _ = yield self.api("/api/v1/audit", forged)
        self.assertEqual(code, 401)

        # Only a hash is stored; creation and revocation are audited with the admin's name.
        stored = self.d.audit_rows("SELECT secret_hash FROM api_tokens")
        self.assertEqual(len(stored), 2)
        for (digest,) in stored:
            self.assertEqual(len(digest), 64)
            self.assertNotIn(digest, (admin_token, viewer_token))
            self.assertNotIn(split_token(admin_token)[1], digest)
        kinds = self.d.audit_rows("SELECT kind, user_name, details FROM audit_entries WHERE "
                                  "kind LIKE 'api_token_%' ORDER BY seq")
        self.assertEqual([(k, u) for k, u, _ in kinds],
                         [("api_token_created", OPERATOR[0])] * 2
                         + [("api_token_revoked", OPERATOR[0])])
        self.assertIn(token_id, kinds[-1][2])
