"""The installed wheel (not the source tree) serves the dashboard's CSS and JavaScript
(finding 20): build it, install it into a fresh venv, run a locator from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

from twisted.trial import unittest

from tests.procutil import ROOT, Daemon

STATIC = ["ct/dashboard/static/dashboard.css", "ct/dashboard/static/dashboard.js"]
# The browser guest app, built from js/ (scripts/build-js.sh): shipped so servers need no Node.
WEBCLIENT = ["ct/webclient/__init__.py", "ct/webclient/static/join.js",
             "ct/webclient/static/join.css"]
SKIP_COPY = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                   "_trial_temp*", "test-artifacts", "tests.*", "test_*",
                                   ".pytest_cache", ".hypothesis", ".run", "dropin.cache",
                                   "node_modules")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without our settings and without PYTHONPATH (the source tree)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_") and k != "PYTHONPATH"}
    return {**env, **extra}


def run(command, **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=clean_env(), **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class InstalledDaemon(Daemon):
    """``twistd -n plugin`` run by another Python (the venv holding the wheel)."""

    def __init__(self, python: Path, plugin: str, env: dict[str, str], cwd: Path):
        import tempfile

        self.plugin = plugin
        self.dir = tempfile.mkdtemp(prefix=f"ct-installed-{plugin}-")
        self.log_path = Path(self.dir) / "twistd.log"
        full_env = clean_env(**env)
        self.proc = subprocess.Popen(
            [str(python), "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", f"--logfile={self.log_path}", plugin],
            env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class WheelTests(unittest.TestCase):
    timeout = 600

    def build_wheel(self, tmp: Path) -> Path:
        source = tmp / "src"
        shutil.copytree(ROOT, source, ignore=SKIP_COPY)
        # Offline: the build runs with the setuptools and wheel of the test venv.
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-q", "-w", str(tmp / "dist"), str(source)])
        wheels = list((tmp / "dist").glob("codetogether_server-*.whl"))
        self.assertEqual(len(wheels), 1, wheels)
        return wheels[0]

    def install(self, tmp: Path, wheel: Path) -> Path:
        """A fresh venv with only the wheel; its dependencies come from the test venv
        through a ``.pth`` line (so the test runs offline)."""
        venv = tmp / "venv"
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        python = venv / "bin" / "python"
        run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
             "--no-index", "-q", str(wheel)])
        site = Path(run([str(python), "-c", "import sysconfig; "
                         "print(sysconfig.get_paths()['purelib'])"]).strip())
        (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        return python

    def test_finding_20_installed_wheel_serves_dashboard_static_files(self):
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir(parents=True)
        wheel = self.build_wheel(tmp)
        names = set(zipfile.ZipFile(wheel).namelist())
        for name in STATIC + WEBCLIENT + ["twisted/plugins/ct_plugins.py"]:
            self.assertIn(name, names)
        for name in WEBCLIENT[1:]:  # the built bundle, byte for byte
            with zipfile.ZipFile(wheel) as archive:
                self.assertEqual(archive.read(name), (Path(ROOT) / name).read_bytes(), name)
        self.assertFalse([n for n in names if "node_modules" in n or n.startswith("js/")])
        self.assertFalse([n for n in names if n.endswith("dropin.cache")])

        python = self.install(tmp, wheel)
        where = run([str(python), "-c", "import ct, twisted.plugins.ct_plugins as p; "
                     "print(ct.__file__); print(p.__file__)"], cwd=tmp).split()
        for path in where:  # the wheel's code, not the source tree's
            self.assertTrue(path.startswith(str(tmp / "venv")), where)

        locator = InstalledDaemon(python, "ctlocator", {
            "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_DATA_DIR": str(tmp / "data"),
            "CT_EDGE_SECRET": "installed-wheel-test-secret",
            "CT_DASHBOARD_PASSWORD": "installed-wheel-password"}, cwd=tmp)
        self.addCleanup(locator.stop)
        port = locator.port("HTTP", timeout=60)
        for name in STATIC:
            url = f"http://127.0.0.1:{port}/dashboard/static/{Path(name).name}"
            with urllib.request.urlopen(url, timeout=10) as response:
                self.assertEqual(response.status, 200, url)
                self.assertEqual(response.read(), (Path(ROOT) / name).read_bytes())
