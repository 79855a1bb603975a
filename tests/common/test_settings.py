"""Settings: precedence, clear errors naming the setting, and the docs table kept current."""

from __future__ import annotations

from pathlib import Path

from twisted.python import usage
from twisted.trial import unittest

from ct.common.catalog import ServerConfig, server_config
from ct.common.listen import ListenConfig
from ct.common.settings import markdown_table, parse_size
from ct.common.web import SiteConfig
from ct.metrics.setup import MetricsConfig
from ct.settings import all_settings
from ct.edge import tap as edge_tap
from ct.locator import tap as locator_tap

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "settings.md"


def parse(options_class, argv=(), **env):
    options = options_class(environ=env)
    options.parseOptions(list(argv))
    return options


class SettingsTests(unittest.TestCase):
    def test_defaults(self):
        values = parse(edge_tap.Options)
        self.assertEqual(values["http_listen"], "tcp:1080")
        self.assertEqual(values["max_participants"], 50)
        self.assertEqual(values["resume_window"], 60.0)
        self.assertFalse(values["prometheus_enabled"])
        self.assertIsNone(values["team_secret"])
        self.assertEqual(values["_sources"]["http_listen"], "default")

    def test_environment_then_command_line(self):
        values = parse(edge_tap.Options, CT_MAX_PARTICIPANTS="7", CT_PROMETHEUS_ENABLED="yes")
        self.assertEqual((values["max_participants"], values["prometheus_enabled"]), (7, True))
        values = parse(edge_tap.Options, ["--max-participants", "9"], CT_MAX_PARTICIPANTS="7")
        self.assertEqual(values["max_participants"], 9)
        self.assertEqual(values["_sources"]["max_participants"], "--max-participants")

    def test_bad_values_name_the_setting(self):
        cases = {
            "CT_MAX_PARTICIPANTS": ("1", "must be at least 2"),
            "CT_PROMETHEUS_ENABLED": ("maybe", "expected true or false"),
            "CT_HTTP_LISTEN": ("tcp:notaport", "not a Twisted endpoint string"),
            "CT_SERVER_URL": ("ftp://x", "expected a URL"),
            "CT_METRICS_STATSD_PROTOCOL": ("SCTP", "expected one of UDP, TCP"),
            "CT_TLS_CERT": ("/nonexistent.pem", "file not found"),
            "CT_MAX_FRAME_BYTES": ("lots", "expected a size"),
            "CT_TIME_ZONE": ("Mars/Olympus", "unknown time zone"),
        }
        for name, (value, why) in cases.items():
            e = self.assertRaises(usage.UsageError, parse, edge_tap.Options, **{name: value})
            self.assertIn(f"invalid setting {name} (", str(e))
            self.assertIn(why, str(e))

    def test_secrets_are_not_echoed(self):
        e = self.assertRaises(usage.UsageError, parse, locator_tap.Options,
                              CT_EDGE_SECRET="short")
        self.assertIn("(hidden)", str(e))
        self.assertNotIn("short", str(e).replace("(hidden)", ""))

    def test_server_config_defaults_are_the_catalogue_defaults(self):
        config = server_config(parse(edge_tap.Options))
        self.assertEqual(config, ServerConfig(
            listen=ListenConfig(http="tcp:1080", https="ssl:1443"), site=SiteConfig(),
            metrics=MetricsConfig(), dashboard_user=None, dashboard_password=None,
            websocket_url="ws://localhost"))

    def test_server_config_from_settings(self):
        config = server_config(parse(
            locator_tap.Options, ["--http-listen", "none"], CT_ACCESS_LOG="yes",
            CT_HTTP_MAX_BODY="1k", CT_HSTS_MAX_AGE="0", CT_PROMETHEUS_ENABLED="true",
            CT_METRICS_STATSD_HOST="stats", CT_METRICS_STATSD_PROTOCOL="tcp",
            CT_METRICS_INTERVAL="2", CT_LOGS_USER="old", CT_LOGS_PASSWORD="old-pw",
            CT_DASHBOARD_USER="new", CT_SERVER_URL="https://ct.example:8443/"))
        self.assertEqual(config.listen, ListenConfig(http=None, https="ssl:1443"))
        self.assertEqual(config.site, SiteConfig(access_log=True, max_body=1024, hsts_max_age=0))
        self.assertEqual(config.metrics, MetricsConfig(prometheus=True, statsd_host="stats",
                                                       statsd_protocol="TCP", interval=2.0))
        self.assertEqual((config.dashboard_user, config.dashboard_password), ("new", "old-pw"))
        self.assertEqual(config.websocket_url, "wss://ct.example:8443")

    def test_sizes(self):
        self.assertEqual(parse_size()("64k"), 65536)
        self.assertEqual(parse_size()("1MiB"), 1 << 20)

    def test_every_variable_is_unique_and_documented(self):
        rows = all_settings()
        names = [s.env for s in rows]
        self.assertEqual(len(names), len(set(names)))
        self.assertTrue(all(n.startswith("CT_") for n in names))
        text = DOCS.read_text()
        self.assertIn(markdown_table(rows), text, "docs/settings.md is stale: run `make docs`")
