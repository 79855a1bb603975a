"""``/clients/``: the IDE plugin packages (eclipse/, intellij/, vscode/), with download counts.

Counting rule: a download is counted, for the client kind whose folder holds the file, when a
GET response that carries the file's last byte has been completely handed to the connection:
a ``200`` with the whole file, or a single-range ``206`` whose range ends at the last byte (a
resumed or chunked download therefore counts once, when its final part is fetched). Not
counted: HEAD, ``304 Not Modified``, errors, multi-range responses, transfers cut before
the end, files outside the three kind folders.

Directories are listed as JSON. Path traversal is refused (``..``, encoded separators,
symbolic links pointing outside the directory, hidden names).
"""

from __future__ import annotations

import json
import os

from twisted.web import http, resource
from twisted.web.static import File

CLIENT_KINDS = ("eclipse", "intellij", "vscode")


class DownloadCounter:
    """Completed downloads per client kind, since the process started."""

    def __init__(self, kinds=CLIENT_KINDS):
        self._counts = {kind: 0 for kind in kinds}

    def record(self, kind: str) -> None:
        if kind in self._counts:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """For the metrics (``DOWNLOAD_METRICS``) and the dashboard."""
        return {"downloads": self.counts()}


def _counts_as_download(request, size: int) -> bool:
    if request.method != b"GET":
        return False
    if request.code == http.OK:
        return True
    if request.code != http.PARTIAL_CONTENT:
        return False
    content_range = request.responseHeaders.getRawHeaders(b"content-range", [b""])[0]
    # single range: "bytes first-last/size"; multi-range responses carry no such header
    try:
        unit, spec = content_range.decode("ascii").split(" ", 1)
        span, total = spec.split("/", 1)
        last = int(span.split("-", 1)[1])
        return unit == "bytes" and last == int(total) - 1 == size - 1
    except (ValueError, IndexError, UnicodeDecodeError):
        return False


class _Listing(resource.Resource):
    isLeaf = True

    def __init__(self, body: dict):
        super().__init__()
        self.body = body

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        return json.dumps(self.body, sort_keys=True).encode("utf-8") + b"\n"


class ClientsDirectory(File):
    """A :class:`File` tree that counts completed downloads and lists folders as JSON."""

    indexNames: list = []  # always list directories, never serve an index page

    def __init__(self, path: str, counter: DownloadCounter | None = None, *,
                 kind: str | None = None, root: str | None = None, url: str = "/clients/",
                 **kw):
        kw.setdefault("defaultType", "application/octet-stream")
        super().__init__(path, **kw)
        self.counter = counter if counter is not None else DownloadCounter()
        self.kind = kind
        self.root = os.path.realpath(root or path)
        self.url = url

    def createSimilarFile(self, path):
        name = os.path.basename(path)
        kind = self.kind
        if kind is None and os.path.realpath(self.path) == self.root:
            kind = name if name in CLIENT_KINDS else None
        child = self.__class__(path, self.counter, kind=kind, root=self.root,
                               url=self.url + name + "/", defaultType=self.defaultType,
                               ignoredExts=self.ignoredExts, registry=self.registry)
        child.processors = {}
        child.childNotFound = self.childNotFound
        return child

    def getChild(self, path, request):
        if path.startswith(b"."):
            return self.childNotFound
        child = super().getChild(path, request)
        if isinstance(child, File):
            real = os.path.realpath(child.path)
            if real != self.root and not real.startswith(self.root + os.sep):
                return self.childNotFound
        return child

    def directoryListing(self):
        entries = []
        for name in self.listNames():
            if name.startswith("."):
                continue
            full = os.path.join(self.path, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            is_dir = os.path.isdir(full)
            entries.append({"name": name, "type": "directory" if is_dir else "file",
                            "size": None if is_dir else stat.st_size,
                            "modified": int(stat.st_mtime),
                            "url": self.url + name + ("/" if is_dir else "")})
        return _Listing({"path": self.url, "client": self.kind, "entries": entries})

    def render_GET(self, request):
        if self.kind is not None and request.method == b"GET":
            self.restat(False)
            if self.isfile():
                size = self.getsize()
                request.notifyFinish().addCallbacks(
                    lambda _: self._finished(request, size), lambda _: None)
        request.setHeader(b"x-content-type-options", b"nosniff")
        return super().render_GET(request)

    render_HEAD = render_GET

    def _finished(self, request, size: int) -> None:
        if _counts_as_download(request, size):
            self.counter.record(self.kind)


def clients_resource(directory: str, counter: DownloadCounter) -> ClientsDirectory:
    """The ``/clients/`` tree over ``directory`` (CT_CLIENTS_DIR), counting into ``counter``."""
    return ClientsDirectory(directory, counter)
