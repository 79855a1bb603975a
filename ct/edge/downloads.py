"""``/clients/``: the IDE plugin packages (eclipse/, intellij/, vscode/), with download counts.

Counting rule: one install is one fetch of the IDE's *entry file* (:func:`is_install_entry`):
for Eclipse the p2 update site's content metadata (``content.jar``, ``content.xml.xz`` or
``content.xml``, whichever the site has) or an archived update site ``.zip``; for IntelliJ the
plugin ``.zip``/``.jar``; for VS Code the ``.vsix``. The other files of the same install
(``p2.index``, ``artifacts.*``, ``composite*``, ``features/``, ``plugins/``,
``updatePlugins.xml``) are served but not counted. An entry file counts when a GET response
carrying its last byte has been completely handed to the connection: a ``200`` with the whole
file, or a single-range ``206`` whose range ends at the last byte. Not counted: HEAD, ``304``,
errors, multi-range responses, transfers cut before the end.

``/clients/`` is a small HTML page listing what is available per IDE (or saying that nothing
is configured); sub-folders are listed as JSON. Path traversal is refused (``..``, encoded
separators, NUL bytes, symbolic links pointing outside the directory, hidden names).
"""

from __future__ import annotations

import html
import json
import os
from urllib.parse import quote

from twisted.internet import threads
from twisted.logger import Logger
from twisted.web import http, pages, resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.static import File
from twisted.web.util import redirectTo

_log = Logger()

CLIENT_KINDS = ("eclipse", "intellij", "vscode")
ECLIPSE_CONTENT = ("content.jar", "content.xml.xz", "content.xml")
INSTALL_SUFFIXES = {"eclipse": (".zip",), "intellij": (".zip", ".jar"), "vscode": (".vsix",)}


def is_install_entry(kind: str | None, name: str) -> bool:
    """Whether fetching the file ``name`` from the ``kind`` folder is one install."""
    if kind == "eclipse" and name in ECLIPSE_CONTENT:
        return True
    return name.endswith(INSTALL_SUFFIXES.get(kind, ()))


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


def available_packages(root: str) -> dict[str, list[tuple[str, str]]]:
    """Per IDE, ``(what, relative URL)`` of each install entry under ``root`` (CT_CLIENTS_DIR)."""
    real_root = os.path.realpath(root)
    found: dict[str, list[tuple[str, str]]] = {}
    for kind in CLIENT_KINDS:
        top = os.path.join(root, kind)
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(folder, root).replace(os.sep, "/")
            for name in sorted(files):
                full = os.path.join(folder, name)
                hidden = name.startswith(".")
                if hidden or not os.path.isfile(full) or not _inside(full, real_root):
                    continue
                if kind == "eclipse" and name in ECLIPSE_CONTENT:
                    found.setdefault(kind, []).append(("update site", rel + "/"))
                elif kind == "intellij" and name == "updatePlugins.xml":
                    found.setdefault(kind, []).append(("plugin repository", f"{rel}/{name}"))
                elif is_install_entry(kind, name):
                    found.setdefault(kind, []).append((name, f"{rel}/{name}"))
    return {kind: list(dict.fromkeys(entries)) for kind, entries in found.items()}


def _inside(path: str, real_root: str) -> bool:
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


IDE_NAMES = {"eclipse": "Eclipse", "intellij": "IntelliJ IDEA", "vscode": "VS Code"}


def clients_page(packages: dict[str, list[tuple[str, str]]] | None, base: str = "/clients/"
                 ) -> bytes:
    """The ``/clients/`` HTML page; ``packages`` is None when CT_CLIENTS_DIR is unset."""
    if packages is None:
        body = ("<p>No client packages are configured on this server. Set <code>CT_CLIENTS_DIR"
                "</code> to a directory holding <code>eclipse/</code>, <code>intellij/</code> "
                "and <code>vscode/</code>, then restart the edge.</p>")
    elif not packages:
        body = ("<p>No client packages are configured: <code>CT_CLIENTS_DIR</code> holds none "
                "in <code>eclipse/</code>, <code>intellij/</code> or <code>vscode/</code>.</p>")
    else:
        sections = []
        for kind in CLIENT_KINDS:
            items = "".join(
                f'<li><a href="{html.escape(quote(base + url))}">{html.escape(what)}</a></li>'
                for what, url in packages.get(kind, []))
            sections.append(f"<h2>{IDE_NAMES[kind]}</h2>"
                            + (f"<ul>{items}</ul>" if items else "<p>none available</p>"))
        body = "".join(sections)
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>CodeTogether clients'
            f"</title></head><body><h1>CodeTogether clients</h1>{body}</body></html>\n"
            ).encode("utf-8")


class ClientsPage(resource.Resource):
    """``/clients/`` as HTML, from ``packages()`` (None: CT_CLIENTS_DIR unset)."""

    def __init__(self, packages):
        super().__init__()
        self._packages = packages

    def getChild(self, path, request):
        return self if path == b"" else pages.notFound("Not found", "no such client package")

    def render_GET(self, request):
        if not request.path.endswith(b"/"):
            return redirectTo(request.path + b"/", request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        # Walking the directory is disk I/O: in the reactor's thread pool, not on the reactor.
        reactor = request.site.reactor
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def answer(packages):
            if not gone:
                request.write(clients_page(packages))
                request.finish()

        def failed(failure):
            _log.failure("listing the client packages", failure)
            if not gone:
                request.setResponseCode(500)
                request.finish()

        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), self._packages)
        d.addCallbacks(answer, failed)
        return NOT_DONE_YET

    render_HEAD = render_GET


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
        if isinstance(child, File) and not _inside(child.path, self.root):
            return self.childNotFound
        return child

    def directoryListing(self):
        if os.path.realpath(self.path) == self.root:
            return ClientsPage(lambda: available_packages(self.path))
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
        if request.method == b"GET" and is_install_entry(self.kind, self.basename()):
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


def clients_resource(directory: str | None, counter: DownloadCounter) -> resource.Resource:
    """``/clients/`` over ``directory`` (CT_CLIENTS_DIR; None: the "nothing configured" page),
    counting installs into ``counter``."""
    if directory is None:
        return ClientsPage(lambda: None)
    return ClientsDirectory(directory, counter)
