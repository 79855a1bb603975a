"""``ctctl`` as a subprocess (the installed console script) against a real locator with a real
edge and real sessions: every command, the credential sources and the exit codes
(docs/ctctl.md)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from ct.common.tokens import team_token
from tests.deployment.util import OPERATOR, Deployment, self_signed_https
from tests.edge.util import close_all, sleep
from tests.procutil import ROOT

CTCTL = Path(sys.executable).parent / "ctctl"
RUN_TIMEOUT = 60.0


class _Collect(protocol.ProcessProtocol):
    def __init__(self, done: defer.Deferred):
        self.done = done
        self.out: list[bytes] = []
        self.err: list[bytes] = []

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.done.callback((reason.value.exitCode, b"".join(self.out).decode(),
                            b"".join(self.err).decode()))


def run_ctctl(args, env, stdin: bytes = b"", timeout: float = RUN_TIMEOUT):
    """Fires with ``(exit code, stdout, stderr)``; killed after ``timeout`` s."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "CTCTL_"))}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    full["HOME"] = env.get("HOME", tempfile.mkdtemp(prefix="ctctl-home-"))
    done = defer.Deferred()
    transport = reactor.spawnProcess(_Collect(done), str(CTCTL), [str(CTCTL), *args],
                                     env=full, path=str(ROOT))
    transport.write(stdin)
    transport.closeStdin()
    timer = reactor.callLater(timeout, transport.signalProcess, "KILL")

    def finished(result):
        if timer.active():
            timer.cancel()
        else:
            raise AssertionError(f"ctctl {args} did not finish within {timeout} s")
        return result

    return done.addBoth(finished)


class CtctlTests(unittest.TestCase):
    timeout = 240

    @defer.inlineCallbacks
    def setUp(self):
        self.d = Deployment(self)
        self.d.start_locator()
        self.d.start_edge("e1")
        yield self.d.wait_online(["e1"])
        self.env = {"CT_LOCATOR": self.d.locator_url, "CT_DASHBOARD_USER": OPERATOR[0],
                    "CT_DASHBOARD_PASSWORD": OPERATOR[1]}
        self.clients: list[SessionClient] = []
        self.addCleanup(lambda: close_all(self.clients))

    @defer.inlineCallbacks
    def ctctl(self, *args, expect: int = 0, env=None, stdin: bytes = b""):
        code, out, err = yield run_ctctl(args, self.env if env is None else env, stdin)
        self.assertEqual(code, expect, f"ctctl {args}: {out}{err}")
        if expect:
            self.assertEqual(len(err.strip().splitlines()), 1, err)  # one line, no traceback
            self.assertTrue(err.startswith("ctctl: "), err)
        return out if not expect else err

    @defer.inlineCallbacks
    def ctctl_json(self, *args):
        out = yield self.ctctl(*args)
        return json.loads(out)

    @defer.inlineCallbacks
    def session_with_guest(self):
        host = SessionClient(reactor, self.d.edge_urls["e1"], "alice")
        self.clients.append(host)
        yield host.host(title="ctctl test")
        guest = SessionClient.from_link(reactor, str(host.link), "bob")
        self.clients.append(guest)
        yield guest.join_link()
        return host, guest

    @defer.inlineCallbacks
    def wait_audit(self, kind: str, count: int = 1, timeout: float = 20.0):
        """Audit entries travel edge outbox -> link -> database: poll until stored."""
        waited = 0.0
        while True:
            rows = self.d.audit_rows("SELECT COUNT(*) FROM audit_entries WHERE kind = ?",
                                     (kind,))
            if rows[0][0] >= count:
                return
            if waited > timeout:
                raise AssertionError(f"no {count} {kind} audit entries within {timeout} s")
            yield sleep(0.2)
            waited += 0.2

    @defer.inlineCallbacks
    def test_sessions_kick_end_usage_and_audit_export(self):
        host, guest = yield self.session_with_guest()
        listing = yield self.ctctl_json("sessions")
        [session] = listing["sessions"]
        self.assertEqual((session["session"], session["edge"]), (host.session, "e1"))
        people = {p["name"]: p for p in session["participants"]}
        self.assertEqual(set(people), {"alice", "bob"})

        # kick: bob is removed (his client is told so), alice stays.
        answer = yield self.ctctl_json("kick", "--", host.session, str(guest.participant))
        self.assertEqual(answer["participant"]["name"], "bob")
        outcome = yield guest.ended
        self.assertEqual(outcome.code, "removed")
        err = yield self.ctctl("kick", "--", host.session, "999", expect=1)
        self.assertIn("404", err)
        err = yield self.ctctl("kick", "no-such-session", "2", expect=1)
        self.assertIn("404 not-found", err)
        err = yield self.ctctl("kick", host.session, "bob", expect=2)  # argparse: a number
        self.assertIn("invalid int value", err)

        # end: alice's session is over; a second end finds nothing.
        answer = yield self.ctctl_json("end", "--", host.session)
        self.assertEqual(answer, {"ended": True, "session": host.session})
        outcome = yield host.ended
        self.assertEqual(outcome.code, "session-ended")
        yield self.ctctl("end", "--", host.session, expect=1)

        # usage (SQL on the locator's database) once the edge's records arrived.
        yield self.wait_audit("participant_joined")
        usage = yield self.ctctl_json("usage", "--days", "7")
        self.assertEqual(len(usage["days"]), 7)
        self.assertEqual((usage["sessions"], usage["uniqueUsers"],
                          usage["averageSessionSize"]), (1, 2, 2.0))
        self.assertEqual(usage["hostClients"], {"ct-python-client": 1})
        self.assertEqual(usage["joinClients"], {"ct-python-client": 1})
        # No call on this edge (A/V off): no one in a call (0, or null before its first
        # snapshot arrived), no connection to share.
        self.assertEqual(set(usage["av"]), {"peakInCalls", "peakCalls", "relayedShare"})
        self.assertIn(usage["av"]["peakInCalls"], (0, None))
        self.assertIsNone(usage["av"]["relayedShare"])
        yield self.ctctl("usage", "--days", "0", expect=1)  # the API's 400, one line

        # audit export: CSV and JSON lines, filtered, to stdout and to a file.
        yield self.wait_audit("session_ended")
        out = yield self.ctctl("audit", "export", "--format", "csv", "--since", "2020-01-01")
        rows = list(csv.DictReader(io.StringIO(out)))
        kinds = [r["kind"] for r in rows]
        for kind in ("session_started", "participant_joined", "participant_removed",
                     "session_ended_by_admin", "session_ended"):
            self.assertIn(kind, kinds)
        times = [float(r["time"]) for r in rows]
        self.assertEqual(times, sorted(times, reverse=True))
        target = os.path.join(self.mktemp() + "-audit.jsonl")
        yield self.ctctl("audit", "export", "--kind", "session_started", "--output", target)
        lines = Path(target).read_text().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(json.loads(lines[0])["session"], host.session)
        out = yield self.ctctl("audit", "export", "--until", "2020-01-01T00:00:00Z")
        self.assertEqual(out, "")
        out = yield self.ctctl("audit", "export", "--max", "2")
        self.assertEqual(len(out.splitlines()), 2)
        err = yield self.ctctl("audit", "export", "--since", "yesterday", expect=2)
        self.assertIn("ISO 8601", err)

    @defer.inlineCallbacks
    def test_edges_suspend_resume_regions_and_team_token(self):
        listing = yield self.ctctl_json("edges")
        self.assertEqual([(e["edge"], e["state"]) for e in listing["edges"]],
                         [("e1", "online")])
        answer = yield self.ctctl_json("suspend", "e1")
        self.assertTrue(answer["suspended"])
        yield self.d.wait_edges(lambda s: s.get("e1") == "suspended")
        yield self.ctctl("resume", "e1")
        yield self.d.wait_online(["e1"])
        err = yield self.ctctl("suspend", "nope", expect=1)
        self.assertIn("404", err)

        table = {"europe": ["10.1.0.0/16"], "asia": ["10.2.0.0/16", "fd00::/8"]}
        path = os.path.join(self.mktemp() + "-regions.json")
        Path(path).write_text(json.dumps({"regions": table}))
        yield self.ctctl("regions", "put", path)
        got = yield self.ctctl_json("regions", "get")
        self.assertEqual(got, {"regions": table})
        # The bare table from standard input works too.
        yield self.ctctl("regions", "put", "-", stdin=json.dumps({"europe": ["10.9.0.0/16"]})
                         .encode())
        got = yield self.ctctl_json("regions", "get")
        self.assertEqual(got, {"regions": {"europe": ["10.9.0.0/16"]}})
        Path(path).write_text("{not json")
        err = yield self.ctctl("regions", "put", path, expect=2)
        self.assertIn("not JSON", err)
        Path(path).write_text(json.dumps({"europe": ["10.1.0.0/33"]}))
        err = yield self.ctctl("regions", "put", path, expect=1)
        self.assertIn("400 bad-regions", err)
        err = yield self.ctctl("regions", "put", path + ".missing", expect=2)
        self.assertIn("cannot read", err)
        got = yield self.ctctl_json("regions", "get")  # refused puts changed nothing
        self.assertEqual(got, {"regions": {"europe": ["10.9.0.0/16"]}})

        out = yield self.ctctl("team-token", "myteam", env={"CT_TEAM_SECRET": "s" * 20})
        self.assertEqual(out.strip(), team_token("s" * 20, "myteam"))
        yield self.ctctl("team-token", "myteam", env={}, expect=2)

    @defer.inlineCallbacks
    def test_credential_sources_and_exit_codes(self):
        url = self.d.locator_url
        bare = {"CT_LOCATOR": url}
        err = yield self.ctctl("edges", env=bare, expect=3)
        self.assertIn("no operator credentials", err)
        err = yield self.ctctl("edges", env={**bare, "CT_DASHBOARD_PASSWORD": "wrong"},
                               expect=3)
        self.assertIn("refused the credentials from CT_DASHBOARD_PASSWORD (401", err)
        self.assertNotIn("wrong", err)
        # The servers' fallback names work in ctctl too.
        yield self.ctctl("edges", env={**bare, "CT_LOGS_USER": OPERATOR[0],
                                       "CT_LOGS_PASSWORD": OPERATOR[1]})
        # A netrc file: refused while others may read it, used once it is private.
        home = tempfile.mkdtemp(prefix="ctctl-home-")
        netrc = Path(home) / ".netrc"
        netrc.write_text(f"machine 127.0.0.1:{self.d.locator_port} login {OPERATOR[0]} "
                         f"password {OPERATOR[1]}\nmachine other.example login x password y\n")
        netrc.chmod(0o644)
        err = yield self.ctctl("edges", env={**bare, "HOME": home}, expect=2)
        self.assertIn("readable by others", err)
        netrc.chmod(0o600)
        listing = yield self.ctctl("edges", env={**bare, "HOME": home})
        self.assertIn('"e1"', listing)
        elsewhere = Path(home) / "ops-netrc"
        elsewhere.write_text(f"machine 127.0.0.1 login {OPERATOR[0]} password nope\n")
        elsewhere.chmod(0o600)
        yield self.ctctl("edges", "--netrc", str(elsewhere), env=bare, expect=3)
        yield self.ctctl("edges", env={**bare, "CTCTL_NETRC": str(elsewhere)}, expect=3)
        yield self.ctctl("edges", "--netrc", str(elsewhere) + ".missing", env=bare, expect=2)
        # No locator, a bad URL, a locator that does not answer.
        yield self.ctctl("edges", env={"CT_DASHBOARD_PASSWORD": "x"}, expect=2)
        yield self.ctctl("edges", "--locator", "ftp://x", expect=2)
        err = yield self.ctctl("edges", "--locator", "http://127.0.0.1:9", expect=4)
        self.assertIn("cannot reach the locator", err)


class CtctlTLSTests(unittest.TestCase):
    """A locator with a self-signed certificate: refused unless trusted, as the edges do."""

    timeout = 90

    @defer.inlineCallbacks
    def test_self_signed_locator_needs_trust_all_certs(self):
        d = Deployment(self, locator_env=self_signed_https(self))
        d.start_locator()
        env = {"CT_LOCATOR": f"https://127.0.0.1:{d.locator.port('SSL')}",
               "CT_DASHBOARD_PASSWORD": OPERATOR[1]}
        code, out, err = yield run_ctctl(["edges"], env)
        self.assertEqual(code, 4, out + err)
        self.assertIn("TLS certificate is not trusted", err)
        self.assertIn("--trust-all-certs", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        for args, extra in ((["edges", "--trust-all-certs"], {}),
                            (["edges"], {"CT_TRUST_ALL_CERTS": "true"})):
            code, out, err = yield run_ctctl(args, {**env, **extra})
            self.assertEqual(code, 0, out + err)
            self.assertEqual(json.loads(out), {"edges": []})
