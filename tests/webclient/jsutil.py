"""Shared by the JavaScript tests: where the npm project is and how to run Node."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
JS = ROOT / "js"
STATIC = ROOT / "ct" / "webclient" / "static"
BUNDLE = ["join.js", "join.css"]


def node() -> str:
    """The ``node`` binary; a clear failure when it or the npm dependencies are missing."""
    binary = shutil.which("node")
    assert binary, "node is missing: `make system-deps` installs it (or `make test`)"
    assert (JS / "node_modules").is_dir(), (
        "js/node_modules is missing: run `bash scripts/build-js.sh` (make test does)")
    return binary


def run(args: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(args, cwd=JS, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
