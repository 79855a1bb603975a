"""The generated dashboard password's file (finding 16), on real files."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.python import usage
from twisted.trial import unittest

from ct.common.credentials import dashboard_credentials, stored_password


class StoredPasswordTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(self.mktemp())
        self.tokens = iter(["first-token", "second-token"])

    def token(self, _n):
        return next(self.tokens)

    def test_finding_16_created_once_0600_then_reused(self):
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        creds = dashboard_credentials(None, None, str(self.dir), token=self.token)
        path = self.dir / "dashboard-password"
        self.assertEqual((creds.user, creds.password, creds.generated),
                         ("ctuser", "first-token", True))
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        again = dashboard_credentials(None, None, str(self.dir), token=self.token)
        self.assertEqual(again.password, "first-token")

    def test_configured_password_writes_no_file(self):
        creds = dashboard_credentials("ops", "x", str(self.dir))
        self.assertEqual((creds.user, creds.password, creds.generated), ("ops", "x", False))
        self.assertFalse(self.dir.exists())

    def test_finding_16_loose_mode_is_tightened(self):
        self.dir.mkdir()
        path = self.dir / "dashboard-password"
        path.write_text("kept-password\n")
        path.chmod(0o644)
        self.assertEqual(stored_password(str(path)), ("kept-password", False))
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)

    def test_symlink_and_empty_file_are_refused_with_a_clear_error(self):
        self.dir.mkdir()
        target = self.dir / "elsewhere"
        target.write_text("secret\n")
        (self.dir / "dashboard-password").symlink_to(target)
        with self.assertRaises(usage.UsageError) as caught:
            dashboard_credentials(None, None, str(self.dir))
        self.assertIn("symbolic link", str(caught.exception))
        (self.dir / "dashboard-password").unlink()
        (self.dir / "dashboard-password").write_text("\n")
        with self.assertRaises(usage.UsageError) as caught:
            dashboard_credentials(None, None, str(self.dir))
        self.assertIn("delete it", str(caught.exception))
