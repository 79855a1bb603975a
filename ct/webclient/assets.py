"""The browser guest app's static files (``static/``, built from ``js/`` by esbuild),
served under ``/join-assets/`` by content hash: ``join.js`` is ``join.<hash>.js``, cached
for a year, and a new build gets a new name (the shell, never cached, names the current
one). Read once when the edge starts: the files are small and never change while it runs.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
FILES = ("join.js", "join.css")  # what the shell links to
CONTENT_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}
HASH_CHARS = 16  # hex digits of SHA-256 in a file's served name
_SERVED = re.compile(r"^([a-z]+)\.([0-9a-f]{%d})(\.[a-z]+)$" % HASH_CHARS)


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # served name, join.<hash>.js
    body: bytes
    content_type: bytes


class Assets:
    """The app's files by their served name; ``url_of("join.js")`` is the served name."""

    def __init__(self, static_dir: str = STATIC_DIR, files=FILES):
        self._by_source: dict[str, Asset] = {}
        self._by_served: dict[str, Asset] = {}
        for source in files:
            with open(os.path.join(static_dir, source), "rb") as f:
                body = f.read()
            self.add(source, body)

    def add(self, source: str, body: bytes) -> Asset:
        stem, ext = os.path.splitext(source)
        digest = hashlib.sha256(body).hexdigest()[:HASH_CHARS]
        asset = Asset(f"{stem}.{digest}{ext}", body,
                      CONTENT_TYPES.get(ext, b"application/octet-stream"))
        self._by_source[source] = asset
        self._by_served[asset.name] = asset
        return asset

    def name_of(self, source: str) -> str:
        """The served name of a source file (``join.js`` -> ``join.<hash>.js``)."""
        return self._by_source[source].name

    def served(self, name: str) -> Asset | None:
        """The asset served as ``name``, or None (an old hash, a made-up name)."""
        if not _SERVED.match(name):
            return None
        return self._by_served.get(name)
