"""Runs the JavaScript client core's own tests (``node --test`` in ``js/core/test``):
pure codec/chunker tests and end-to-end tests against real ``twistd -n ctedge`` children
started with this Python (so they import this tree's ``ct``)."""

from __future__ import annotations

import sys

import pytest

from tests.webclient.jsutil import JS, node, run

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_js_core_node_tests_pass():
    files = sorted(str(p.relative_to(JS)) for p in (JS / "core" / "test").glob("*.test.js"))
    assert files, "no JavaScript test files found"
    result = run([node(), "--test", "--test-reporter=spec", *files], timeout=840,
                 CT_TEST_PYTHON=sys.executable, NO_COLOR="1")
    sys.stdout.write(result.stdout)
    assert result.returncode == 0, "node --test failed:\n" + result.stdout[-12000:]
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, result.stdout[-4000:]
