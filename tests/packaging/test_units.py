"""Fast checks of the unit files, the unit launcher and the log observer (no root)."""

import importlib.util
import os
import re

from twisted.logger import LogLevel
from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = {"ctedge": ("edge.env", "edge"), "ctlocator": ("locator.env", "locator"),
         "ctturn": ("turn.env", "turn")}


def load(name, relpath):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_unit = load("run_unit", "packaging/run-unit.py")
service_log = load("ct_service_log", "packaging/ct_service_log.py")


class UnitFileTests(unittest.TestCase):
    def test_every_unit_runs_twistd_in_the_foreground_as_the_system_user(self):
        for unit, (env_file, log_name) in UNITS.items():
            service = run_unit.parse_unit(os.path.join(ROOT, "systemd", unit + ".service"))["Service"]
            argv = run_unit.last(service, "ExecStart").split()
            self.assertEqual(argv[:3], ["/opt/codetogether/runtime/bin/twistd", "--nodaemon",
                                        "--pidfile="], unit)
            self.assertEqual(argv[-1], unit)
            self.assertIn(f"--logger=ct_service_log.{log_name}", argv)
            self.assertEqual(run_unit.last(service, "User"), "codetogether")
            self.assertEqual(service["EnvironmentFile"], [f"/etc/codetogether/{env_file}"])
            self.assertEqual(run_unit.last(service, "Restart"), "on-failure")
            self.assertEqual(run_unit.last(service, "KillSignal"), "SIGTERM")
            self.assertNotIn("ExecReload", service, "no daemon handles SIGHUP")

    def test_every_unit_is_sandboxed_without_capabilities(self):
        for unit in UNITS:
            service = run_unit.parse_unit(os.path.join(ROOT, "systemd", unit + ".service"))["Service"]
            for key, value in (("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                               ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
                               ("CapabilityBoundingSet", ""), ("AmbientCapabilities", "")):
                self.assertEqual(run_unit.last(service, key), value, f"{unit} {key}")
            self.assertEqual(run_unit.words(service, "CapabilityBoundingSet"), [])

    def test_privileged_ports_drop_in_adds_only_net_bind_service(self):
        path = os.path.join(ROOT, "packaging", "examples", "privileged-ports.conf")
        service = run_unit.parse_unit(path)["Service"]
        self.assertEqual(run_unit.words(service, "CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(run_unit.words(service, "AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"])

    def test_example_env_files_only_name_known_settings(self):
        from ct.settings import all_settings

        known = {s.env for s in all_settings()}
        for env_file, _ in UNITS.values():
            text = open(os.path.join(ROOT, "packaging", "examples", env_file)).read()
            names = set(re.findall(r"^#?(CT_[A-Z0-9_]+)=", text, re.M))
            self.assertTrue(names, env_file)
            self.assertEqual(names - known, set(), env_file)

    def test_example_locator_config_parses_as_sqlite(self):
        from ct.storage.config import load_locator_config

        path = os.path.join(ROOT, "packaging", "examples", "locator-config.json")
        config = load_locator_config(path, "/var/lib/codetogether")
        self.assertEqual(config.database.dialect, "sqlite")
        self.assertEqual(config.database.sqlite_path, "/var/lib/codetogether/locator.sqlite3")


class LauncherTests(unittest.TestCase):
    def test_env_file_parsing_follows_systemd(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# comment\n; other comment\n\nCT_A=1\n  CT_B = two words \n"
                    "CT_C=\"quoted \\\"value\\\"\"\nCT_D='single'\nCT_A=3\nCT_E=x\\\ny\n")
        self.assertEqual(run_unit.parse_env_file(path), {
            "CT_A": "3", "CT_B": "two words", "CT_C": 'quoted "value"', "CT_D": "single",
            "CT_E": "xy"})

    def test_plan_reads_environment_then_environment_files(self):
        env_path = self.mktemp()
        with open(env_path, "w") as f:
            f.write("CT_DATA_DIR=/elsewhere\nCT_HTTP_LISTEN=tcp:1\n")
        unit = self.mktemp()
        with open(unit, "w") as f:
            f.write("[Service]\nUser=root\nEnvironment=CT_DATA_DIR=/var/lib/x \"CT_Z=a b\"\n"
                    f"EnvironmentFile={env_path}\nEnvironmentFile=-/nonexistent\n"
                    "ExecStart=/bin/echo --flag \\\n  value\nLogsDirectory=a\nLogsDirectory=b\n"
                    "LogsDirectoryMode=0750\nUMask=0027\n")
        plan = run_unit.build_plan(unit)
        self.assertEqual(plan["argv"], ["/bin/echo", "--flag", "value"])
        self.assertEqual(plan["env"]["CT_DATA_DIR"], "/elsewhere")
        self.assertEqual(plan["env"]["CT_Z"], "a b")
        self.assertEqual(plan["umask"], 0o027)
        self.assertEqual(plan["directories"], [("/var/log/a", 0o750), ("/var/log/b", 0o750)])


class ServiceLogTests(unittest.TestCase):
    def event(self, level, text):
        return {"log_level": level, "log_format": text, "log_namespace": "ct.test",
                "log_time": 0.0}

    def test_journal_lines_carry_syslog_priorities(self):
        self.assertEqual(service_log.journal_line(self.event(LogLevel.info, "hello")),
                         "<6>[ct.test#info] hello\n")
        self.assertEqual(service_log.journal_line(self.event(LogLevel.error, "a\nb")),
                         "<3>[ct.test#error] a\n<3>b\n")
        self.assertTrue(service_log.journal_line(
            self.event(LogLevel.warn, "w")).startswith("<4>"))

    def test_events_go_to_the_stream_and_the_file(self):
        import io

        directory = self.mktemp()
        os.makedirs(directory)
        stream = io.StringIO()
        observer = service_log.make_observer("edge", directory, stream)
        observer(self.event(LogLevel.info, "started"))
        observer.file_observer._outFile.close()
        self.assertIn("<6>[ct.test#info] started", stream.getvalue())
        with open(os.path.join(directory, "edge.log")) as f:
            self.assertIn("[ct.test#info] started", f.read())

    def test_unwritable_directory_falls_back_to_the_journal(self):
        import io

        stream = io.StringIO()
        observer = service_log.make_observer("edge", "/nonexistent/dir", stream)
        self.assertIsNone(observer.file_observer)
        self.assertIn("logging to the journal only", stream.getvalue())
        observer(self.event(LogLevel.info, "still here"))
        self.assertIn("still here", stream.getvalue())
