"""The socket poller's hold: only a wake-up that finds the relay busy switches to timed
rounds; a quiet relay serves every datagram on arrival."""

from __future__ import annotations

import select
import socket

from twisted.trial import unittest

from ct.turn.sockets import SocketPoller

from .support import ReaderReactor


class Reader:
    """A UDP socket that reads one datagram per ``doRead``."""

    def __init__(self, test):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        test.addCleanup(self.sock.close)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.received = []

    def fileno(self):
        return self.sock.fileno()

    def doRead(self):
        self.received.append(self.sock.recv(2048))


class SocketPollerTests(unittest.TestCase):
    def setUp(self):
        self.reactor = ReaderReactor()
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.sender.close)

    def make(self, hold):
        poller = SocketPoller(self.reactor, hold)
        self.addCleanup(poller.epoll.close)
        return poller

    def send(self, reader, data):
        self.sender.sendto(data, reader.address)
        readable, _, _ = select.select([reader.sock], [], [], 2.0)
        self.assertTrue(readable, "datagram did not arrive")

    def test_issue16_quiet_relay_serves_a_lone_datagram_at_once(self):
        poller = self.make(0.05)
        reader = Reader(self)
        poller.add(reader)
        for data in (b"request", b"echo"):  # one stream's round trip: close together
            self.send(reader, data)
            poller.doRead()
            self.reactor.advance(0.0001)
        self.assertEqual(self.reactor.readers, [poller])  # still waiting for readiness
        self.send(reader, b"next")
        poller.doRead()
        self.assertEqual((reader.received, poller.holds), ([b"request", b"echo", b"next"], 0))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_busy_wakeup_holds_then_rounds_while_busy(self):
        poller = self.make(0.001)
        poller.busy = 2
        readers = [Reader(self), Reader(self)]
        for reader in readers:
            poller.add(reader)
        self.send(readers[0], b"a")
        self.send(readers[1], b"b")
        poller.doRead()  # served at once, then the poller holds
        self.assertEqual((poller.holds, self.reactor.readers), (1, []))
        for data in (b"c", b"d", b"e"):
            self.send(readers[0], data)
        self.assertEqual(len(readers[0].received), 1)
        self.reactor.advance(0.001)  # the round serves what arrived meanwhile: busy
        self.assertEqual(readers[0].received, [b"a", b"c", b"d", b"e"])
        self.assertEqual((self.reactor.readers, len(self.reactor.getDelayedCalls())),
                         ([], 1))
        self.reactor.advance(0.001)  # an empty round: back to readiness
        self.assertEqual(self.reactor.readers, [poller])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(poller.holds, 1)

    def test_no_hold_when_disabled(self):
        poller = self.make(0.0)
        reader = Reader(self)
        poller.add(reader)
        for data in (b"1", b"2", b"3"):
            self.send(reader, data)
            poller.doRead()
        self.assertEqual((len(reader.received), poller.holds), (3, 0))
        self.assertEqual(self.reactor.readers, [poller])

    def test_removing_the_last_socket_while_holding_cancels_the_round(self):
        poller = self.make(0.001)
        poller.busy = 1
        reader = Reader(self)
        poller.add(reader)
        self.send(reader, b"1")
        poller.doRead()
        self.assertEqual(poller.holds, 1)
        poller.remove(reader)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.readers, [])
        other = Reader(self)
        poller.add(other)  # watching again: back with the reactor at once
        self.assertEqual(self.reactor.readers, [poller])

    def test_a_failing_reader_does_not_stop_the_round(self):
        poller = self.make(0.001)
        poller.busy = 1
        bad, good = Reader(self), Reader(self)

        def fail():
            bad.sock.recv(2048)
            raise RuntimeError("boom")
        bad.doRead = fail
        poller.add(bad)
        poller.add(good)
        self.send(good, b"x")
        poller.doRead()
        self.assertEqual(poller.holds, 1)
        self.send(bad, b"y")
        self.send(good, b"z")
        self.reactor.advance(0.001)  # busy round, despite the failure
        self.reactor.advance(0.001)  # empty round
        self.assertEqual(good.received, [b"x", b"z"])
        self.assertEqual(self.reactor.readers, [poller])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
