"""The shipped browser bundle (``ct/webclient/static/join.js``, ``join.css``) is what its
sources build: ``js/build.mjs`` is rebuilt into a temporary folder and compared byte for
byte with the committed files (esbuild's output is deterministic)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.webclient.jsutil import BUNDLE, ROOT, STATIC, node, run

pytestmark = pytest.mark.slow


def committed(name: str) -> bytes:
    """The file as committed (the git index), or as it is when this is no git checkout."""
    rel = (STATIC / name).relative_to(ROOT).as_posix()
    proc = subprocess.run(["git", "show", f":{rel}"], cwd=ROOT, capture_output=True)
    if proc.returncode == 0:
        return proc.stdout
    return (STATIC / name).read_bytes()


@pytest.mark.timeout(300)
def test_committed_bundle_matches_its_sources(tmp_path):
    result = run([node(), "build.mjs", "--outdir", str(tmp_path)], timeout=240)
    sys.stdout.write(result.stdout)
    assert result.returncode == 0, result.stdout
    for name in BUNDLE:
        built = (tmp_path / name).read_bytes()
        assert built, f"{name} built empty"
        assert built == committed(name), (
            f"ct/webclient/static/{name} differs from what js/ builds: run "
            "`bash scripts/build-js.sh` and commit ct/webclient/static/")


@pytest.mark.timeout(300)
def test_build_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        result = run([node(), "build.mjs", "--outdir", str(out)], timeout=240)
        assert result.returncode == 0, result.stdout
    for name in BUNDLE:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
