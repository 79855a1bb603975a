"""``ctctl``'s pure parts in process: times, credential sources, usage errors. The commands
themselves run as a subprocess against real servers in tests/deployment/test_ctctl.py."""

from __future__ import annotations

import argparse
import base64
import io
import os
from contextlib import redirect_stderr

from twisted.trial import unittest

from ct.common import ctl


def decoded(credential: ctl.Credential) -> str:
    scheme, token = credential.authorization.split(" ", 1)
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


class TimeTests(unittest.TestCase):
    def test_times(self):
        self.assertEqual(ctl.parse_time("1700000000.5"), 1700000000.5)
        self.assertEqual(ctl.parse_time("2023-11-14T22:13:20Z"), 1700000000.0)
        self.assertEqual(ctl.parse_time("2023-11-14 22:13:20"), 1700000000.0)  # UTC
        self.assertEqual(ctl.parse_time("2023-11-15T00:13:20+02:00"), 1700000000.0)
        self.assertEqual(ctl.parse_time("2023-11-15"), 1700006400.0)
        self.assertRaises(argparse.ArgumentTypeError, ctl.parse_time, "yesterday")


class CredentialTests(unittest.TestCase):
    args = argparse.Namespace(netrc=None)

    def netrc(self, text: str, mode: int = 0o600) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_environment_with_the_servers_fallbacks(self):
        find = ctl.from_environment
        self.assertIsNone(find("http://l", {}, self.args))
        self.assertEqual(decoded(find("http://l", {"CT_DASHBOARD_PASSWORD": "p"}, self.args)),
                         "ctuser:p")
        c = find("http://l", {"CT_LOGS_USER": "old", "CT_LOGS_PASSWORD": "q"}, self.args)
        self.assertEqual((decoded(c), c.source), ("old:q", "CT_LOGS_PASSWORD"))
        c = find("http://l", {"CT_DASHBOARD_USER": "new", "CT_LOGS_USER": "old",
                              "CT_DASHBOARD_PASSWORD": "p", "CT_LOGS_PASSWORD": "q"}, self.args)
        self.assertEqual((decoded(c), c.source), ("new:p", "CT_DASHBOARD_PASSWORD"))

    def test_netrc_by_host_and_port_then_host(self):
        path = self.netrc("machine loc.example:8443 login a password pa\n"
                          "machine loc.example login b password pb\n")
        env = {"CTCTL_NETRC": path}
        self.assertEqual(decoded(ctl.from_netrc("https://loc.example:8443", env, self.args)),
                         "a:pa")
        self.assertEqual(decoded(ctl.from_netrc("https://loc.example:9000", env, self.args)),
                         "b:pb")
        self.assertIsNone(ctl.from_netrc("https://other.example", env, self.args))
        # --netrc wins over CTCTL_NETRC.
        other = self.netrc("machine loc.example login c password pc\n")
        args = argparse.Namespace(netrc=other)
        self.assertEqual(decoded(ctl.from_netrc("https://loc.example", env, args)), "c:pc")

    def test_netrc_refusals_are_one_clear_error(self):
        loose = self.netrc("machine h login a password p\n", 0o640)
        e = self.assertRaises(ctl.CtlError, ctl.from_netrc, "http://h", {"CTCTL_NETRC": loose},
                              self.args)
        self.assertEqual(e.code, ctl.EXIT_USAGE)
        self.assertIn("chmod 600", str(e))
        self.assertNotIn("p\n", str(e))
        broken = self.netrc("this is not netrc\n")
        e = self.assertRaises(ctl.CtlError, ctl.from_netrc, "http://h", {"CTCTL_NETRC": broken},
                              self.args)
        self.assertIn("not in netrc format (line 1)", str(e))
        self.assertNotIn("this", str(e))  # the parser's message quotes tokens
        e = self.assertRaises(ctl.CtlError, ctl.from_netrc, "http://h",
                              {"CTCTL_NETRC": broken + ".missing"}, self.args)
        self.assertIn("not found", str(e))

    def test_api_token_from_file_then_environment(self):
        path = self.netrc("ctk_abc_123\n")
        args = argparse.Namespace(netrc=None, token_file=path)
        c = ctl.from_api_token("http://h", {"CT_API_TOKEN": "ctk_env"}, args)
        self.assertEqual((c.authorization, c.source), ("Bearer ctk_abc_123", path))
        c = ctl.from_api_token("http://h", {"CT_API_TOKEN": " ctk_env "}, self.args)
        self.assertEqual((c.authorization, c.source), ("Bearer ctk_env", "CT_API_TOKEN"))
        self.assertIsNone(ctl.from_api_token("http://h", {}, self.args))
        # The token comes first, before the dashboard password.
        found = ctl.find_credential("http://h", {"CT_API_TOKEN": "ctk_env",
                                                 "CT_DASHBOARD_PASSWORD": "p"}, self.args)
        self.assertEqual(found.authorization, "Bearer ctk_env")
        for bad in ("", "two words", "x" * 201):
            e = self.assertRaises(ctl.CtlError, ctl.from_api_token, "http://h", {},
                                  argparse.Namespace(token_file=self.netrc(bad)))
            self.assertEqual(e.code, ctl.EXIT_USAGE)
            self.assertNotIn("two words", str(e))
        e = self.assertRaises(ctl.CtlError, ctl.from_api_token, "http://h", {},
                              argparse.Namespace(token_file=path + ".missing"))
        self.assertIn("cannot read the API token file", str(e))

    def test_sources_are_pluggable_and_missing_credentials_exit_3(self):
        token = ctl.Credential("Bearer t0ken", "a token source")
        found = ctl.find_credential("http://h", {"CT_DASHBOARD_PASSWORD": "p"}, self.args,
                                    sources=[lambda url, env, args: token,
                                             ctl.from_environment])
        self.assertIs(found, token)
        e = self.assertRaises(ctl.CtlError, ctl.find_credential, "http://h", {}, self.args,
                              sources=[ctl.from_environment])
        self.assertEqual(e.code, ctl.EXIT_AUTH)


class UsageErrorTests(unittest.TestCase):
    def test_usage_errors_are_one_line_and_exit_2(self):
        for argv in (["nope"], ["kick", "s1", "bob"], ["audit", "export", "--since", "x"], []):
            err = io.StringIO()
            with redirect_stderr(err), self.assertRaises(SystemExit) as caught:
                ctl.main(argv, env={})
            self.assertEqual(caught.exception.code, 2, argv)
            self.assertEqual(len(err.getvalue().strip().splitlines()), 1, err.getvalue())
            self.assertTrue(err.getvalue().startswith("ctctl: "))

    def test_team_token_offline(self):
        out = io.StringIO()
        self.assertEqual(ctl.main(["team-token", "t"], env={"CT_TEAM_SECRET": "s" * 20},
                                  out=out), 0)
        from ct.common.tokens import team_token

        self.assertEqual(out.getvalue().strip(), team_token("s" * 20, "t"))
