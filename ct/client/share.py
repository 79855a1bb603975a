"""A directory shared through a session: ``ct-client share DIR`` and ``join --mirror DIR``.

The I/O adapter around :mod:`ct.collab`: one :class:`DirectoryShare` per participant, with
the role ``host`` (the directory is the truth: it adds and removes paths, sends the policy)
or ``guest`` (a mirror of the host's workspace). Both write remote edits to disk (debounced,
atomic replace) and turn edits made on disk by any editor (``twisted.internet.inotify``)
into minimal Yjs updates. File reads and writes of a batch run in the reactor's thread
pool; the document is only touched on the reactor thread.

Per path the share remembers ``synced``: the text the disk and the document last agreed on.
A disk change is the edit from ``synced`` to the disk's text; when remote edits arrived
meanwhile it is rebased onto them (:func:`ct.collab.textdiff.rebase`), so neither side's
edit is lost.

The host holds guests' edits to the file and workspace caps (:mod:`ct.collab.caps`): an
edit past one is not written; the document goes back to the disk's text and a notice says so.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from typing import Any, Callable

from pycrdt import merge_updates
from twisted.internet import defer, inotify, threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from ct.collab import caps, messages, textdiff, tree
from ct.collab.messages import HOST_PARTICIPANT, MessageError
from ct.collab.workspace import Awareness, Policy, Workspace
from ct.common.logthrottle import LogThrottle

_log = Logger()

DEBOUNCE = 0.06  # seconds between a change and the disk write / the update it causes
WATCH_MASK = (inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO
              | inotify.IN_DELETE | inotify.IN_CREATE | inotify.IN_ATTRIB)
UNSAFE = object()  # a path that may not be read or written (see tree.safe_target)


def printable(text: str, limit: int = 500) -> str:
    """A peer's text for the terminal: control characters (escape sequences) shown as
    ``?``, cut to ``limit`` characters."""
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf") else c
                   for c in str(text)[:limit])


class Truncated(bytes):
    """The first bytes of a file over the limit; ``size`` is the whole file's."""

    size: int


def read_many(root: str, paths: list[str], limit: int) -> dict[str, Any]:
    """Each path's bytes (at most ``limit + 1``), ``None`` when missing, ``UNSAFE``."""
    out: dict[str, Any] = {}
    for path in paths:
        full = tree.safe_target(root, path)
        if full is None:
            out[path] = UNSAFE
            continue
        try:
            with open(full, "rb") as f:
                data = f.read(limit + 1)
                if len(data) > limit:
                    data = Truncated(data)
                    data.size = os.fstat(f.fileno()).st_size
                out[path] = data
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            out[path] = None
        except OSError:
            out[path] = UNSAFE
    return out


def read_and_diff(root: str, paths: list[str], limit: int, bases: dict[str, str | None]
                  ) -> tuple[dict[str, Any], dict[str, list[textdiff.Edit]]]:
    """:func:`read_many`, plus each changed text's edit from its ``bases`` entry: the
    diff of a big file is work for this thread, not for the reactor."""
    disk = read_many(root, paths, limit)
    edits = {}
    for path, data in disk.items():
        base = bases.get(path)
        if base is None or data is None or data is UNSAFE or len(data) > limit:
            continue
        text = tree.decode_text(data)
        if text is not None and text != base:
            edits[path] = textdiff.edits(base, text)
    return disk, edits


def atomic_write(full: str, data: bytes, new_mode: int,
                 unchanged: Callable[[], bool] | None = None) -> bool:
    """Replace ``full`` by ``data`` at once: a temporary file in the same directory,
    fsync, then ``os.replace``; the file's mode is kept (``new_mode`` for a new file).

    ``unchanged`` is asked right before the replace (after the slow fsync): when it says
    the file changed meanwhile, the temporary file is removed, ``full`` is left alone and
    the answer is ``False``."""
    directory = os.path.dirname(full)
    os.makedirs(directory, exist_ok=True)
    try:
        mode = os.stat(full).st_mode & 0o7777
    except FileNotFoundError:
        mode = new_mode
    fd, temporary = tempfile.mkstemp(prefix=tree.TEMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if unchanged is not None and not unchanged():
            os.unlink(temporary)
            return False
        os.replace(temporary, full)
        return True
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_many(root: str, writes: list[tuple[str, str, Any]], deletes: list[tuple[str, Any]],
               new_mode: int, limit: int) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Apply ``writes`` (path, text, bytes seen on disk, as :func:`read_many` read them with
    ``limit``) and ``deletes`` (path, bytes seen):
    a file that changed on disk since it was read is left alone (its path is returned in
    the second list, to be looked at again). Returns ``(done, changed_meanwhile)``.

    Another editor may save a file between our read and our replace. The file is compared
    with what was seen before the temporary file is written, and read again right before
    the ``os.replace`` (after the fsync, the slow part): the window in which such a save
    is overwritten is only the time between that last read and the rename."""
    done, again = [], []
    seen = read_many(root, [p for p, _ in deletes], limit)
    for path, text, before in writes:
        full = tree.safe_target(root, path)
        now = read_many(root, [path], limit)[path] if full is not None else UNSAFE
        if now is UNSAFE:
            continue
        if now != before:
            again.append(path)
            continue

        def unchanged(path=path, before=before) -> bool:
            return read_many(root, [path], limit)[path] == before
        try:
            if atomic_write(full, text.encode("utf-8"), new_mode, unchanged):
                done.append((path, text))
            else:
                again.append(path)
        except OSError as e:
            _log.warn("cannot write {path}: {why}", path=path, why=e.strerror or str(e))
    for path, before in deletes:
        full = tree.safe_target(root, path)
        if full is None or seen[path] is UNSAFE or seen[path] is None:
            done.append((path, None))
            continue
        if seen[path] != before:
            again.append(path)
            continue
        try:
            os.unlink(full)
            _remove_empty_parents(root, os.path.dirname(full))
            done.append((path, None))
        except OSError as e:
            _log.warn("cannot delete {path}: {why}", path=path, why=e.strerror or str(e))
    return done, again


def _remove_empty_parents(root: str, directory: str) -> None:
    root = os.path.abspath(root)
    directory = os.path.abspath(directory)
    while directory != root and directory.startswith(root + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)


def list_tree(root: str) -> list[str]:
    """Every file path of ``root`` that ``.gitignore`` does not hide (shareable or not)."""
    found = tree.Scan()
    real_root = os.path.realpath(root)
    return list(tree.walk(root, real_root, "", tree.Ignorer(root), found))


def watched_directories(root: str) -> list[str]:
    """``root`` and every directory below it that ``.gitignore`` does not hide."""
    ignorer = tree.Ignorer(root)
    out = []
    for directory, dirs, _ in os.walk(root):
        out.append(directory)
        rel = os.path.relpath(directory, root)
        keep = []
        for name in dirs:
            path = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
            if not ignorer.ignored(path, is_dir=True) \
                    and not os.path.islink(os.path.join(directory, name)):
                keep.append(name)
        dirs[:] = keep
    return out


class _Notifier(inotify.INotify):
    """Twisted's INotify stops for good when a watched directory is deleted: tell us."""

    on_lost: Callable[[], None] | None = None

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self.on_lost is not None:
            self.on_lost()


class DirectoryShare:
    """One participant's side of a shared workspace backed by the directory ``root``."""

    def __init__(self, reactor, client, root: str, role: str, *,
                 policy: Policy | None = None, say: Callable[[str], None] = print,
                 debounce: float = DEBOUNCE, watch: bool = True):
        assert role in ("host", "guest")
        self.reactor = reactor
        self.client = client
        self.root = os.path.abspath(root)
        self.role = role
        self.policy = policy or Policy()
        self.say = say
        self.debounce = debounce
        self.watch_disk = watch
        self.workspace = Workspace()
        self.awareness = Awareness(self.workspace.client_id)
        self.reassembler = messages.Reassembler()
        self.ignorer = tree.Ignorer(self.root)
        self.synced = caps.SizedTexts()  # path -> text disk and document last agreed on
        self._edited_by: dict[str, set[int]] = {}  # host: who edited a path since its last batch
        self.unshared: dict[str, dict[str, Any]] = {e["path"]: e for e in self.policy.unshared}
        self.is_synced = role == "host"
        self.bad_input = LogThrottle(_log, reactor, limit=20, interval=60.0,
                                     what="dropped collab messages")
        self._chunk_id = 0
        self._dirty: set[str] = set()
        self._timer = None
        self._flushing: defer.Deferred | None = None
        self._sync_timer = None
        self._awareness_loop = None
        self._notifier: _Notifier | None = None
        self._stopped = False
        self._told_untracked: set[str] = set()
        self._batch_bytes: int | None = None
        self._diffs: dict[str, list[textdiff.Edit]] = {}  # computed with the batch's reads
        self._merges: list[tuple[str, str, str, str, bytes]] = []  # host: checked for the caps
        self._awaiting_sync = False
        self._announce_sync = False
        self._pool = reactor.getThreadPool()
        umask = os.umask(0)
        os.umask(umask)
        self.new_mode = 0o666 & ~umask

    # ------------------------------------------------------------ start / stop

    def load(self, scan: tree.Scan) -> None:
        """Host: build the document from a scan of ``root`` (before hosting: nothing sent)."""
        for path, text in scan.files.items():
            self.workspace.put(path, text)
            self.synced[path] = text
        self.unshared = {e["path"]: e for e in scan.unshared}
        self.policy.unshared = list(self.unshared.values())
        for path, why in scan.refused:
            _log.info("not shared: {path} ({why})", path=path, why=why)

    def start(self) -> None:
        """After ``hosted``/``joined``: announce ourselves, sync, watch the disk."""
        self.client.on_resumed = self._on_resumed
        self._consume_events()
        self.awareness.set_local(self._local_state())
        self._send(messages.awareness(self.awareness.local()))
        if self.role == "guest":
            os.makedirs(self.root, exist_ok=True)
            self._request_sync()
        self._awareness_loop = LoopingCall(self._renew_awareness)
        self._awareness_loop.clock = self.reactor
        self._awareness_loop.start(messages.AWARENESS_INTERVAL, now=False)
        if self.watch_disk:
            self._start_watching()

    def stop(self) -> defer.Deferred:
        """Stop watching; write what is pending to disk first (bounded)."""
        if self._stopped:
            return defer.succeed(None)
        self._stopped = True
        for timer in (self._timer, self._sync_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._sync_timer = None
        if self._awareness_loop is not None and self._awareness_loop.running:
            self._awareness_loop.stop()
        if self._notifier is not None:
            self._notifier.on_lost = None
            self._notifier.loseConnection()
            self._notifier = None
        pending = self._flushing or defer.succeed(None)

        def last_batch(_):  # what arrived just before: on disk before we go
            if self._dirty and self.is_synced:
                return self._flush()
        pending.addCallback(last_batch)
        return pending.addTimeout(10, self.reactor).addErrback(lambda _: None)

    # ------------------------------------------------------------ sending

    def _send(self, message: bytes, to: int = 0) -> None:
        self._chunk_id = (self._chunk_id + 1) & 0xFFFFFFFF
        for piece in messages.split(message, self._chunk_id):
            self.client.send(piece, to)

    def _send_update(self, update: bytes | None) -> None:
        if update:
            self._send(messages.update(update))

    def _local_state(self) -> dict[str, Any]:
        participant = self.client.participant or 0
        color = messages.color_for(participant)
        return {"user": {"name": self.client.name, "color": color, "colorLight": color + "33",
                         "participant": participant}, "file": None, "cursor": None}

    def _renew_awareness(self) -> None:
        self.awareness.set_local(self._local_state())
        self._send(messages.awareness(self.awareness.local()))

    def send_policy(self, to: int = 0) -> None:
        self.policy.unshared = sorted(self.unshared.values(), key=lambda e: e["path"])
        self._send(messages.policy(self.policy.to_json()), to)

    # ------------------------------------------------------------ sync

    def _request_sync(self) -> None:
        host = self.client.participants.get(HOST_PARTICIPANT)
        to = HOST_PARTICIPANT if (self.role == "guest" and host is not None
                                  and host.get("connected", True)) else 0
        self._ask(to)

    def _ask(self, to: int) -> None:
        self._awaiting_sync = True
        self._send(messages.sync_step1(self.workspace.state_vector(), True), to)
        if self._sync_timer is not None and self._sync_timer.active():
            self._sync_timer.cancel()
        self._sync_timer = self.reactor.callLater(messages.SYNC_ANSWER_TIMEOUT,
                                                  self._sync_timed_out)

    def _sync_timed_out(self) -> None:
        self._sync_timer = None
        if self._awaiting_sync and not self._stopped:
            self._ask(0)  # no answer: ask everyone (every participant holds the document)

    def _on_resumed(self, reply: dict[str, Any]) -> None:
        if reply.get("recovered", True):
            self.say("* resumed")
            return
        self.say("* resumed, but messages were lost meanwhile: synchronising again")
        self._request_sync()

    # ------------------------------------------------------------ receiving

    def on_frame(self, frame) -> None:
        """``SessionClient.on_frame``: one payload from another participant."""
        sender = frame.sender
        if isinstance(frame.data, str):
            self.bad_input.warn("ignored a text frame from participant {p}", p=sender)
            return
        try:
            whole = self.reassembler.feed(sender, frame.data)
            if whole is None:
                return
            message = messages.decode(whole)
            if message is None:
                return  # a kind from a later version
            self._dispatch(sender, message)
        except MessageError as e:
            self.bad_input.warn("dropped a message from participant {p}: {why}", p=sender,
                                why=str(e)[:200])

    def _dispatch(self, sender: int, message: messages.Message) -> None:
        kind = message.kind
        if kind == messages.SYNC_STEP1:
            self._send(messages.sync_step2(self.workspace.update_for(message.body)), sender)
            if message.flags & messages.SYNC_INITIAL:
                self._send(messages.sync_step1(self.workspace.state_vector(), False), sender)
        elif kind in (messages.SYNC_STEP2, messages.UPDATE):
            if not self.policy.accepts_edits_from(sender):
                if kind == messages.UPDATE:  # a sync-step2 answering our step1 is routine
                    self.bad_input.warn("read-only session: ignored an edit from "
                                        "participant {p}", p=sender)
                return
            changed = self.workspace.apply(message.body)
            if self.role == "host":
                for path in changed:
                    if path in self.synced:  # paths the host knows (others are removed)
                        self._edited_by.setdefault(path, set()).add(sender)
            if kind == messages.SYNC_STEP2 and self._awaiting_sync:
                self._awaiting_sync = False
                if not self.is_synced:
                    self.is_synced = True
                    changed = set(self.workspace.paths())
                    self._announce_sync = bool(changed)  # once the first batch is on disk
                    if not changed:
                        self.say("* synced: 0 files")
            self._mark(changed)
        elif kind == messages.AWARENESS:
            changed, refused = self.awareness.apply(message.body, sender)
            for why in refused[:1]:
                self.bad_input.warn("ignored awareness from participant {p}: {why}", p=sender,
                                    why=why)
        elif kind == messages.POLICY:
            if sender != HOST_PARTICIPANT or self.role == "host":
                self.bad_input.warn("ignored a policy from participant {p}", p=sender)
                return
            before = self.policy
            self.policy = Policy.from_json(message.body)
            if self.policy.read_only != before.read_only:
                self.say("* the session is now " + ("read-only" if self.policy.read_only
                                                    else "editable"))
            known = {(e["path"], e["reason"]) for e in before.unshared}
            listed = [e for e in self.policy.unshared if (e["path"], e["reason"]) not in known]
            for entry in listed[:20]:
                self.say(f"* not shared by the host: {printable(entry['path'])} "
                         f"({entry['reason']}, {entry['size']} bytes)")
            if len(listed) > 20:
                self.say(f"* ... and {len(listed) - 20} more files not shared")
        elif kind == messages.NOTICE:
            body = message.body
            who = self._name(sender)
            where = f" ({printable(body['path'])})" if isinstance(body.get("path"), str) else ""
            self.say(f"* {body['level']} from {who}: {printable(body['message'])}{where}")

    def _name(self, participant: int) -> str:
        info = self.client.participants.get(participant, {})
        return printable(info.get("name", f"#{participant}"), 64)

    @defer.inlineCallbacks
    def _consume_events(self):
        while not self._stopped:
            event = yield self.client.events.get()
            try:
                self._on_event(event)
            except Exception:
                _log.failure("handling event {type}", type=event.get("type"))

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "participant-joined":
            info = event["participant"]
            self.say(f"* {printable(info.get('name'), 64)} joined")
            if self.role == "host":
                self.send_policy(info["id"])
            self._send(messages.awareness(self.awareness.local()), info["id"])
        elif kind == "participant-left":
            participant = event["participant"]
            name = event.get("name")
            self.say(f"* {printable(name, 64) if name else self._name(participant)} left")
            self.awareness.remove_participant(participant)
            self.reassembler.forget(participant)
        elif kind == "participant-away":
            self.say(f"* {self._name(event['participant'])} is away (reconnecting)")
        elif kind == "participant-back":
            self.say(f"* {self._name(event['participant'])} is back")
        elif kind == "error":
            self.say(f"* error: {event.get('code')} {event.get('message')}")

    # ------------------------------------------------------------ host commands

    def set_read_only(self, value: bool) -> None:
        self.policy.read_only = value
        self.send_policy()

    # ------------------------------------------------------------ disk watching

    def _start_watching(self) -> defer.Deferred:
        """Watch every directory ``.gitignore`` does not hide (listed in a thread); new
        directories are added as they appear. Then look at everything once: what changed
        before the watches were in place is not missed."""
        d = threads.deferToThreadPool(self.reactor, self._pool, watched_directories, self.root)

        def watch(directories):
            if self._stopped:
                return
            notifier = _Notifier(self.reactor)
            notifier.startReading()
            notifier.on_lost = self._watch_lost
            self._notifier = notifier
            for directory in directories:
                try:
                    notifier.watch(FilePath(directory), mask=WATCH_MASK, autoAdd=True,
                                   callbacks=[self._on_disk_event])
                except inotify.INotifyError as e:
                    _log.warn("cannot watch {dir}: {why}", dir=directory, why=e)
            self.rescan()
        d.addCallback(watch)
        d.addErrback(lambda f: _log.failure("watching {root}", f, root=self.root))
        return d

    def _watch_lost(self) -> None:
        """A watched directory went away (Twisted then stops watching): watch anew, and
        look at everything, since events may have been missed meanwhile."""
        self._notifier = None
        if not self._stopped:
            self.reactor.callLater(0, self._restart_watching)

    def _restart_watching(self) -> None:
        if self._notifier is not None and self._notifier.connected:
            self._notifier.on_lost = None
            self._notifier.loseConnection()
        self._notifier = None
        self._start_watching()
        self.rescan()

    def _on_disk_event(self, _ignored, filepath: FilePath, mask: int) -> None:
        if self._stopped:
            return
        full = filepath.asTextMode().path
        rel = os.path.relpath(full, self.root)
        if rel == "." or rel.startswith(".."):
            return
        path = rel.replace(os.sep, "/")
        if any(tree.is_skipped_name(s) for s in path.split("/")):
            return
        if mask & inotify.IN_ISDIR:
            if mask & (inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO | inotify.IN_DELETE):
                # a directory moved or went: fix the watches and look at everything
                self.reactor.callLater(0, self._restart_watching)
            return
        if path.split("/")[-1] == ".gitignore" and self.role == "host":
            self.ignorer.reload()  # other files may now be hidden, or shown
            self.reactor.callLater(0, self._restart_watching)
        self._mark({path})

    def rescan(self) -> None:
        """Look at every path again (after missed events or a .gitignore change)."""
        known = set(self.workspace.paths()) | set(self.synced) | set(self.unshared)
        if self.role == "guest":
            self._mark(known)
            return
        d = threads.deferToThreadPool(self.reactor, self._pool, list_tree, self.root)
        d.addCallback(lambda found: self._mark(known | set(found)))
        d.addErrback(lambda f: _log.failure("rescanning {root}", f, root=self.root))

    # ------------------------------------------------------------ flushing

    def _mark(self, paths) -> None:
        if not paths:
            return
        self._dirty.update(paths)
        self._schedule()

    def _schedule(self) -> None:
        if self._stopped or self._timer is not None or self._flushing is not None \
                or not self.is_synced:  # a guest writes nothing before its first sync
            return
        self._timer = self.reactor.callLater(self.debounce, self._flush)

    def _flush(self) -> defer.Deferred:
        self._timer = None
        d = self._flushing = self._flush_batch()

        def done(result):
            self._flushing = None
            if self._dirty and not self._stopped:
                self._schedule()
            return result
        d.addErrback(lambda f: _log.failure("updating {root}", f, root=self.root))
        d.addBoth(done)
        return d

    @defer.inlineCallbacks
    def _flush_batch(self):
        paths = sorted(self._dirty)
        self._batch_bytes = None
        self._dirty = set()
        limit = max(self.policy.max_file_bytes, 1)
        bases = {path: self.synced.get(path) for path in paths}
        disk, self._diffs = yield threads.deferToThreadPool(
            self.reactor, self._pool, read_and_diff, self.root, paths, limit, bases)
        updates: list[bytes] = []
        writes: list[tuple[str, str, Any]] = []
        deletes: list[tuple[str, Any]] = []
        self._merges: list[tuple[str, str, str, str, bytes]] = []
        unshared_before = dict(self.unshared)
        editors = {path: self._edited_by.pop(path) for path in paths if path in self._edited_by}
        for path in paths:
            try:
                self._reconcile(path, disk[path], updates, writes, deletes)
            except (ValueError, MessageError) as e:
                self.bad_input.warn("cannot share {path}: {why}", path=path, why=str(e)[:200])
        if self._merges:  # the host: guests' edits within the caps are merged, others undone
            self._merge_within_caps(self._merges, editors, updates, writes)
        if updates:
            self._send_update(updates[0] if len(updates) == 1 else merge_updates(*updates))
        if self.role == "host" and self.unshared != unshared_before:
            self.send_policy()
        if writes or deletes:
            done, again = yield threads.deferToThreadPool(
                self.reactor, self._pool, write_many, self.root, writes, deletes, self.new_mode,
                limit)
            for path, text in done:
                if text is None:
                    self.synced.pop(path, None)
                else:
                    self.synced[path] = text
            self._dirty.update(again)
        if self._announce_sync:
            self._announce_sync = False
            self.say(f"* synced: {len(self.workspace.paths())} files")

    def _reconcile(self, path: str, data: Any, updates: list[bytes],
                   writes: list[tuple[str, str, Any]], deletes: list[tuple[str, Any]]) -> None:
        """Decide for one path: what goes into the document, what onto the disk."""
        if data is UNSAFE:
            return
        doc = self.workspace.text(path)
        base = self.synced.get(path)
        if self.role == "host":
            self._reconcile_host(path, data, doc, base, updates, writes)
        else:
            self._reconcile_guest(path, data, doc, base, updates, writes, deletes)

    def _reconcile_host(self, path, data, doc, base, updates, writes) -> None:
        def drop_from_doc():
            update = self.workspace.remove(path)
            if update:
                updates.append(update)
            self.synced.pop(path, None)

        if doc is not None and base is None:
            # a path the host did not add (a guest may not add paths): refused
            drop_from_doc()
            return
        if data is None:
            if doc is not None:
                drop_from_doc()  # deleted (or renamed away) on disk
            self.synced.pop(path, None)
            self.unshared.pop(path, None)
            return
        if self.ignorer.ignored(path):
            drop_from_doc()
            self.unshared.pop(path, None)
            return
        text = tree.decode_text(data)
        reason = None
        if text is None:
            reason = "binary"
        elif len(data) > self.policy.max_file_bytes:
            reason = "too-large"
        elif doc is None and self._shared_bytes() + len(data) > self.policy.max_workspace_bytes:
            reason = "workspace-full"
        if reason is not None:
            if doc is not None:
                drop_from_doc()
            self.unshared[path] = {"path": path, "size": getattr(data, "size", len(data)),
                                   "reason": reason}
            return
        self.unshared.pop(path, None)
        if doc is None:  # a new file
            self._batch_bytes = self._shared_bytes() + len(data)
            update = self.workspace.put(path, text)
            if update:
                updates.append(update)
            self.synced[path] = text
            return
        self._merges.append((path, text, doc, base, data))  # after the batch: the caps

    def _reconcile_guest(self, path, data, doc, base, updates, writes, deletes) -> None:
        if doc is None:
            if data is not None and base is not None:
                deletes.append((path, data))  # removed by the host
            elif data is not None and path not in self._told_untracked and base is None:
                self._told_untracked.add(path)
                self.say(f"* not shared: {printable(path)} (only the host adds files)")
            if data is None:
                self.synced.pop(path, None)
            return
        if data is None:
            if base is not None:
                self.say(f"* {printable(path)} is part of the session (only the host "
                         "removes files): restored")
            writes.append((path, doc, None))
            return
        text = tree.decode_text(data)
        if base is None or text is None:  # never synced here: the document wins
            if text == doc:
                self.synced[path] = doc
            else:
                writes.append((path, doc, data))
            return
        if text != base and self.policy.read_only:
            self.say(f"* read-only session: your change to {printable(path)} is not shared "
                     "and is undone")
            writes.append((path, doc, data))
            return
        if text != base and len(data) > self.policy.max_file_bytes:
            self.say(f"* {printable(path)} would pass {self.policy.max_file_bytes} bytes: "
                     "your change is not shared")
            self._send(messages.notice("warning", "too-large",
                                       f"an edit of {self.client.name} was over the size cap",
                                       path))
            writes.append((path, doc, data))
            return
        self._merge(path, text, doc, base, data, updates, writes)

    def _merge_within_caps(self, merges: list[tuple[str, str, str, str, bytes]],
                           editors: dict[str, set[int]], updates: list[bytes],
                           writes: list[tuple[str, str, Any]]) -> None:
        """Host: the batch's merges (disk edit onto guests' edits) whose result stays within
        the file and workspace caps go ahead; the others are undone: the document goes back
        to the disk's text (everyone converges to it), a notice tells everyone, the log too."""
        proposals: dict[str, caps.Proposal] = {}
        changes_of: dict[str, list[textdiff.Edit]] = {}
        for path, text, doc, base, _ in merges:
            changes = self._disk_changes(path, text, doc, base)
            changes_of[path] = changes
            merged = textdiff.apply(doc, changes) if changes else doc
            if merged != text:  # guests' edits in it
                proposals[path] = caps.Proposal(caps.text_bytes(text), caps.text_bytes(merged))
        outside = self.synced.total - sum(self.synced.sizes.get(p, 0) for p in proposals)
        refused = caps.refused_edits(proposals, outside, self.policy.max_file_bytes,
                                     self.policy.max_workspace_bytes)
        for path, text, doc, base, data in merges:
            refusal = refused.get(path)
            if refusal is None:
                self._merge(path, text, doc, base, data, updates, writes, changes_of[path])
                continue
            update = self.workspace.put(path, text)  # back to the disk's text
            if update:
                updates.append(update)
            self.synced[path] = text
            names = sorted(self._name(p) for p in editors.get(path, ()))
            message = caps.describe(refusal, names, self.policy.max_file_bytes,
                                    self.policy.max_workspace_bytes)
            _log.warn("refused an edit of {path} ({reason}): {message}", path=printable(path),
                      reason=refusal.reason, message=message)
            self.say(f"* {refusal.reason}: {printable(path)}: {message}")
            self._send(messages.notice("warning", refusal.reason, message, path))

    def _disk_changes(self, path: str, text: str, doc: str, base: str) -> list[textdiff.Edit]:
        """The disk's edit (``base`` → ``text``) as changes to apply to ``doc``."""
        if text == base:
            return []
        mine = self._diffs.pop(path, None)
        if mine is None or textdiff.apply(base, mine) != text:
            mine = textdiff.edits(base, text)  # the disk or the base moved meanwhile
        return mine if doc == base else textdiff.rebase(mine, base, doc)

    def _merge(self, path: str, text: str, doc: str, base: str, data: bytes,
               updates: list[bytes], writes: list[tuple[str, str, Any]],
               changes: list[textdiff.Edit] | None = None) -> None:
        """Disk says ``text``; disk and document last agreed on ``base``; the document now
        says ``doc``. The disk's edit goes into the document; the merge goes to disk."""
        if text != base:
            if changes is None:
                changes = self._disk_changes(path, text, doc, base)
            update = self.workspace.edit(path, changes)
            if update:
                updates.append(update)
            doc = self.workspace.text(path)
        if doc == text:
            self.synced[path] = text
        else:
            writes.append((path, doc, data))

    def _shared_bytes(self) -> int:
        """Bytes shared, counted once per batch (new files of the batch added as they come)."""
        if self._batch_bytes is None:
            self._batch_bytes = sum(len(t.encode("utf-8"))
                                    for t in self.workspace.snapshot().values())
        return self._batch_bytes
