"""Bad input gets its documented error, and a well-behaved session on the same edge loses nothing.

The misbehaving clients use an independent websocket library (``websockets``, in a thread);
the well-behaved session uses the reference client in the reactor at the same time.
"""

from __future__ import annotations

import json

from twisted.internet import defer, threads
from twisted.trial import unittest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ct.protocol.wire import encode_upstream
from tests.edge.util import host_and_guests, start_edge, stream_frames, wait_for


def exchange(url, messages, then=None, wait_close=5.0):
    """Send ``messages``; read until the edge closes. Returns (replies, close code, reason)."""
    replies = []
    with connect(url, proxy=None, compression=None, max_size=None, open_timeout=5,
                 close_timeout=2) as ws:
        try:
            for m in messages:
                ws.send(m)
            if then is not None:
                then(ws, replies)
            while True:
                reply = ws.recv(timeout=wait_close)
                replies.append(json.loads(reply) if isinstance(reply, str) else reply)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            reason = e.rcvd.reason if e.rcvd else None
            return replies, code, reason
        except TimeoutError:
            return replies, None, "no close"


def host_message(**extra):
    return json.dumps({"type": "host", "v": 1, "name": "mallory", **extra})


class BadInputTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_each_bad_input_gets_its_error_and_good_session_loses_nothing(self):
        service, url = start_edge(self, CT_MAX_FRAME_BYTES="4096", CT_RATE_LIMIT="200",
                                  CT_RATE_BURST="400", CT_HANDSHAKE_TIMEOUT="0.5")
        ws_url = url.replace("http", "ws") + "/ws/session"

        # A well-behaved session streams throughout.
        received = []
        host, guest = yield host_and_guests(self, url, frames={
            "bob": lambda f: received.append(f.data)})
        total = 300
        stream_frames(self, host, total, per_tick=3, interval=0.02)

        def misbehave():
            results = {}
            results["bad-json"] = exchange(ws_url, ["{not json"])
            results["unknown-first"] = exchange(ws_url, [json.dumps({"type": "dance"})])
            results["binary-first"] = exchange(ws_url, [b"\x00\x00\x00\x00\x00hi"])
            results["version"] = exchange(ws_url, [host_message(v=2)])
            results["unknown-session"] = exchange(ws_url, [json.dumps(
                {"type": "join", "v": 1, "session": "nope", "token": "x", "name": "m"})])
            results["wrong-token"] = exchange(ws_url, [json.dumps(
                {"type": "join", "v": 1, "session": host.session, "token": "x" * 24,
                 "name": "m"})])
            results["oversized"] = exchange(ws_url, [host_message(),
                                                     encode_upstream(b"x" * 10_000)])
            results["bad-header"] = exchange(ws_url, [host_message(), b"\x80\x00\x00\x00\x00x"])

            def flood(ws, replies):
                try:
                    for _ in range(3000):
                        ws.send(encode_upstream(b"spam"))
                except ConnectionClosed:
                    pass  # closed mid-flood; the error frame is still queued for recv()
            results["flood"] = exchange(ws_url, [host_message()], then=flood)
            results["silent"] = exchange(ws_url, [])
            return results

        results = yield threads.deferToThread(misbehave)
        expected = {
            "bad-json": (4000, "bad-message"),
            "unknown-first": (4000, "bad-message"),
            "binary-first": (4000, "bad-message"),
            "version": (4001, "unsupported-version"),
            "unknown-session": (4004, "not-found"),
            "wrong-token": (4003, "forbidden"),
            "oversized": (1009, None),
            "bad-header": (4000, "bad-message"),
            "flood": (4029, "rate-limited"),
            "silent": (4002, "handshake-timeout"),
        }
        for case, (code, name) in expected.items():
            replies, close_code, reason = results[case]
            self.assertEqual(close_code, code, f"{case}: closed with {close_code} {reason}")
            if name is not None:
                errors = [r for r in replies if isinstance(r, dict) and r.get("type") == "error"]
                self.assertEqual(errors[-1]["code"], name, case)
                self.assertEqual(reason, name, case)
                self.assertTrue(errors[-1]["message"], case)

        yield wait_for(lambda: len(received) == total, timeout=30)
        self.assertEqual(received, [b"good-%d" % i for i in range(total)])
        self.assertEqual(guest.resumes + host.resumes, 0)
        errors = service.edge.relay.stats.errors
        self.assertEqual(errors.get("rate-limited"), 1)
        self.assertGreaterEqual(errors.get("bad-message"), 4)
