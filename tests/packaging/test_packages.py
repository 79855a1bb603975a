"""Builds, lints, installs, runs and purges the Debian packages (issue 6).

Runs ``packaging/test-packages.py`` as root on this machine; it leaves the machine
as it found it. Opt in with ``CT_TEST_PACKAGING=1`` (``.ci/run`` sets it): it takes a
few minutes and installs packages system-wide.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "packaging", "test-packages.py")

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(os.environ.get("CT_TEST_PACKAGING") != "1",
                       reason="builds and installs Debian packages system-wide; "
                              "set CT_TEST_PACKAGING=1 to run (as root, on Debian 12)"),
]


@pytest.mark.timeout(1800)
def test_build_lint_install_run_purge():
    if os.geteuid() != 0:
        pytest.fail("CT_TEST_PACKAGING=1 needs root: the packages are installed on this machine")
    proc = subprocess.run(["/usr/bin/python3", SCRIPT], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1700)
    sys.stdout.write(proc.stdout)
    artifacts = os.path.join(ROOT, "test-artifacts")
    if os.path.isdir(artifacts):
        with open(os.path.join(artifacts, "packaging.log"), "w") as f:
            f.write(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "=== PASS" in proc.stdout
