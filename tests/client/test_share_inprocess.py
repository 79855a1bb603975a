"""DirectoryShare in this process against a real edge: the cases the CLI cannot provoke
(a guest that adds a path, a late joiner synced by a guest while the host is away)."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from ct.client.share import DirectoryShare
from ct.collab import messages, tree
from tests.edge.util import close_all, sleep, start_edge, wait_for


class InProcessShareTests(unittest.TestCase):
    timeout = 60

    def make_dir(self, files=None) -> str:
        path = tempfile.mkdtemp(prefix="ct-share-")
        self.addCleanup(shutil.rmtree, path, True)
        for name, text in (files or {}).items():
            full = os.path.join(path, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        return path

    @defer.inlineCallbacks
    def share(self, files, **client_options):
        _, self.url = start_edge(self)
        self.lines = []
        root = self.make_dir(files)
        client = SessionClient(reactor, self.url, "alice", **client_options)
        share = DirectoryShare(reactor, client, root, "host", say=self.lines.append)
        share.load(tree.scan(root))
        client.on_frame = share.on_frame
        yield client.host()
        share.start()
        self.addCleanup(share.stop)
        self.clients = [client]
        self.addCleanup(close_all, self.clients)
        return client, share, root

    @defer.inlineCallbacks
    def guest(self, host_client, name):
        root = os.path.join(self.make_dir(), "m")
        client = SessionClient.from_link(reactor, str(host_client.link), name)
        share = DirectoryShare(reactor, client, root, "guest", say=self.lines.append)
        client.on_frame = share.on_frame
        yield client.join_link()
        self.clients.append(client)
        share.start()
        self.addCleanup(share.stop)
        return client, share, root

    @defer.inlineCallbacks
    def test_a_path_a_guest_adds_is_removed_by_the_host_and_never_written(self):
        host, host_share, host_root = yield self.share({"a.txt": "a\n"})
        bob, bob_share, bob_root = yield self.guest(host, "bob")
        yield wait_for(lambda: bob_share.is_synced and bob_share.workspace.text("a.txt") == "a\n")
        update = bob_share.workspace.put("evil.sh", "rm -rf ~\n")
        bob_share._send(messages.update(update))
        yield wait_for(lambda: host_share.workspace.text("evil.sh") is None
                       and bob_share.workspace.text("evil.sh") is None, timeout=5)
        yield sleep(0.3)
        self.assertFalse(os.path.exists(os.path.join(host_root, "evil.sh")))
        self.assertEqual(host_share.workspace.paths(), ["a.txt"])

    @defer.inlineCallbacks
    def test_a_late_joiner_is_synced_by_a_guest_while_the_host_is_away(self):
        host, host_share, host_root = yield self.share({"a.txt": "shared text\n"},
                                                      auto_resume=False)
        bob, bob_share, bob_root = yield self.guest(host, "bob")
        yield wait_for(lambda: bob_share.is_synced, timeout=5)
        host._over = True  # the host's network goes away; it does not come back here
        host.drop()
        yield wait_for(lambda: not bob.participants.get(1, {}).get("connected", True),
                       timeout=5)
        carol, carol_share, carol_root = yield self.guest(host, "carol")
        # carol asks everyone (the host is away) and bob answers
        yield wait_for(lambda: carol_share.is_synced, timeout=3)  # < SYNC_ANSWER_TIMEOUT
        yield wait_for(lambda: os.path.exists(os.path.join(carol_root, "a.txt")), timeout=5)
        with open(os.path.join(carol_root, "a.txt")) as f:
            self.assertEqual(f.read(), "shared text\n")
