"""Runs the browser app's own Node tests (``js/app/test``): its pure helpers (languages,
colours, the file tree, the full-page messages)."""

from __future__ import annotations

import sys

from tests.webclient.jsutil import JS, node, run


def test_js_app_node_tests_pass():
    files = sorted(str(p.relative_to(JS)) for p in (JS / "app" / "test").glob("*.test.js"))
    assert files, "no JavaScript test files found"
    result = run([node(), "--test", *files], timeout=120, NO_COLOR="1")
    sys.stdout.write(result.stdout)
    assert result.returncode == 0, "node --test failed:\n" + result.stdout[-8000:]
    assert "# fail 0" in result.stdout, result.stdout[-4000:]
