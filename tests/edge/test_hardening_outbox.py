"""The edge outbox on a real filesystem that fills up (a small tmpfs), and its file modes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from ct.client.session import SessionClient
from ct.edge.outbox import Outbox
from tests.edge.util import close_all, start_edge, wait_for

TMPFS_BYTES = 4 * 1024 * 1024


def mount_tmpfs(case) -> str:
    """A fresh tmpfs of TMPFS_BYTES in a temp dir, unmounted at the end of ``case``."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        raise unittest.SkipTest("mounting a tmpfs needs root and mount(8)")
    path = os.path.abspath(case.mktemp())
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs",
                    path], check=True, timeout=30)
    case.addCleanup(subprocess.run, ["umount", "-l", path], check=True, timeout=30)
    return path


def fill(directory: str, leave: int = 0) -> str:
    """Fill the filesystem of ``directory`` with one file, leaving about ``leave`` bytes."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if leave:
            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
            os.write(fd, b"\0" * max(0, free - leave))
        else:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
                for _ in range(TMPFS_BYTES // size + 1):  # bounded: the disk is that small
                    try:
                        os.write(fd, b"\0" * size)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
    finally:
        os.close(fd)
    return filler


class FullDiskOutboxTests(unittest.TestCase):
    timeout = 120

    def make(self, path, **kw):
        box = Outbox(reactor, path, **kw)
        self.addCleanup(lambda: box.pool.running and box.close())
        return box

    @defer.inlineCallbacks
    def add_in_batches(self, box, count, batch=100, kind="audit", start=0):
        """Add ``count`` records, letting the reactor run a write attempt after each batch."""
        for first in range(start, start + count, batch):
            for i in range(first, min(first + batch, start + count)):
                box.add(kind, {"id": f"{kind[0]}{i}"})
            yield wait_for(lambda: box._flush_call is None or box.write_failures > 0)
            yield wait_for(lambda: box._flushing is None)

    @defer.inlineCallbacks
    def test_finding_8_full_disk_keeps_every_entry_and_writes_it_once_space_is_back(self):
        disk = mount_tmpfs(self)
        box = self.make(os.path.join(disk, "outbox.sqlite3"))
        yield box.open()
        filler = fill(disk, leave=160 * 1024)
        yield self.add_in_batches(box, 3000)
        # The disk filled part way: some entries are on disk, the rest wait in memory.
        self.assertGreater(box.write_failures, 0)
        self.assertGreater(box.depth, 0)
        self.assertGreater(box.unwritten, 0)
        self.assertEqual(box.depth + box.unwritten, 3000)
        self.assertEqual(box.dropped, 0)
        ok, detail = box.health()
        self.assertFalse(ok)
        self.assertIn(f"{box.unwritten} records held in memory", detail)
        os.remove(filler)  # space again: the next retry (back-off up to 2 s here) writes them
        yield wait_for(lambda: box.depth == 3000 and box.unwritten == 0, timeout=30)
        records = yield box.peek(10_000)
        self.assertEqual([body["id"] for _, _, body in records], [f"a{i}" for i in range(3000)])
        self.assertEqual(box.dropped, 0)
        self.assertEqual(box.health(), (True, "ok"))

    @defer.inlineCallbacks
    def test_finding_8_memory_cap_drops_snapshots_then_oldest_entries_and_counts_exactly(self):
        disk = mount_tmpfs(self)
        box = self.make(os.path.join(disk, "outbox.sqlite3"), max_unwritten=1000)
        yield box.open()
        filler = fill(disk)  # completely full: no write succeeds
        yield self.add_in_batches(box, 10, kind="metrics")
        yield self.add_in_batches(box, 3000)
        self.assertEqual(box.depth, 0)
        self.assertEqual(box.unwritten, 1000)
        self.assertEqual(box.dropped, 2010)  # the 10 snapshots first, then 2,000 entries
        os.remove(filler)
        yield wait_for(lambda: box.depth == 1000 and box.unwritten == 0, timeout=30)
        records = yield box.peek(10_000)
        self.assertEqual([body["id"] for _, _, body in records],
                         [f"a{i}" for i in range(2000, 3000)])
        self.assertEqual(box.dropped, 2010)

    @defer.inlineCallbacks
    def test_finding_8_retries_back_off_on_the_injected_clock(self):
        disk = mount_tmpfs(self)
        clock = Clock()
        box = self.make(os.path.join(disk, "outbox.sqlite3"), clock=clock)
        yield box.open()
        filler = fill(disk)
        box.add("audit", {"id": "a0"})
        delays = []
        for _ in range(8):
            clock.advance(delays[-1] if delays else 0)
            before = box.write_failures
            yield wait_for(lambda: box.write_failures == before + 1)
            yield wait_for(lambda: box._flushing is None)
            (call,) = clock.getDelayedCalls()
            delays.append(call.getTime() - clock.seconds())
        self.assertEqual(delays, [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 30.0, 30.0])
        os.remove(filler)
        clock.advance(30)
        yield wait_for(lambda: box.depth == 1)
        self.assertEqual((box.unwritten, box.dropped, clock.getDelayedCalls()), (0, 0, []))


class OutboxFileModeTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_finding_21_outbox_files_are_created_0600(self):
        old_umask = os.umask(0o022)  # a typical shell's, outside systemd's UMask=0027
        self.addCleanup(os.umask, old_umask)
        path = os.path.join(os.path.abspath(self.mktemp()), "edge", "outbox.sqlite3")
        box = Outbox(reactor, path)
        self.addCleanup(lambda: box.pool.running and box.close())
        yield box.open()
        box.add("audit", {"id": "a0"})
        yield box.flush()
        for name in ("outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"):
            mode = stat.S_IMODE(os.stat(os.path.join(os.path.dirname(path), name)).st_mode)
            self.assertEqual(mode, 0o600, f"{name}: {mode:o}")
        yield box.close()
        os.chmod(path, 0o644)  # a file left by an older version is tightened on open
        again = Outbox(reactor, path)
        self.addCleanup(lambda: again.pool.running and again.close())
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)


class EdgeOutboxHealthTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def get(self, url):
        response = yield Agent(reactor).request(b"GET", url.encode())
        body = yield readBody(response)
        return response.code, body

    @defer.inlineCallbacks
    def test_finding_8_edge_health_and_metrics_show_an_outbox_that_cannot_write(self):
        disk = mount_tmpfs(self)
        with socket.socket() as s:  # a locator that is not there: records stay in the outbox
            s.bind(("127.0.0.1", 0))
            nowhere = s.getsockname()[1]
        service, url = start_edge(self, CT_LOCATOR=f"http://127.0.0.1:{nowhere}",
                                  CT_EDGE_SECRET="s" * 32, CT_DATA_DIR=disk,
                                  CT_PROMETHEUS_ENABLED="true")
        box = service.outbox
        yield wait_for(lambda: box.pool.running and os.path.exists(box.path + "-wal"))
        code, body = yield self.get(url + "/health")
        self.assertEqual((code, json.loads(body)["checks"]["outbox"]), (200, "ok"))
        filler = fill(disk)
        host = SessionClient(reactor, url, "alice")
        yield host.host(title="audit me")
        self.addCleanup(close_all, [host])
        yield wait_for(lambda: box.unwritten >= 1 and box.write_failures >= 1)
        code, body = yield self.get(url + "/health")
        health = json.loads(body)
        self.assertEqual((code, health["status"]), (200, "degraded"))
        self.assertIn("cannot write the outbox", health["checks"]["outbox"])
        code, body = yield self.get(url + "/metrics")
        self.assertEqual(code, 200)
        values = {line.split()[0]: float(line.split()[1]) for line in body.decode().splitlines()
                  if line.startswith("codetogether_edge_link_outbox_")}
        self.assertGreaterEqual(values["codetogether_edge_link_outbox_unwritten"], 1)
        self.assertGreaterEqual(values["codetogether_edge_link_outbox_write_failures_total"], 1)
        self.assertEqual(values["codetogether_edge_link_outbox_dropped_total"], 0)
        os.remove(filler)
        yield wait_for(lambda: box.unwritten == 0 and box.depth >= 1, timeout=30)
        code, body = yield self.get(url + "/health")
        self.assertEqual((code, json.loads(body)["status"]), (200, "ok"))
