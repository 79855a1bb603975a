"""Finding 5 end to end: a real edge with the bundled relay, its ICE credentials, aioice.

Credentials are short-lived and scoped to one participant; a participant holds at most the
default quota of allocations; leaving or being removed, and the end of the session, revoke
the credentials and delete their allocations.
"""

from __future__ import annotations

import json
import sys

from twisted.application.internet import TimerService
from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from ct.turn import stun
from tests.edge.test_audio_video import AIOICE_CLIENT, free_port
from tests.edge.util import host_and_guests, start_edge, wait_for

from .support import UdpClient, error_code


class BundledRelayCredentialTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def setUp(self):
        self.turn_port = free_port()
        self.service, url = start_edge(
            self, CT_AV_ENABLED="true", CT_TURN_ENABLED="true", CT_TURN_HOST="127.0.0.1",
            CT_TURN_LISTEN_UDP=f"127.0.0.1:{self.turn_port}",
            CT_TURN_LISTEN_TCP=f"127.0.0.1:{self.turn_port}", CT_TURN_LISTEN_TLS="none",
            CT_TURN_RELAY_ADDRESS="127.0.0.1", CT_TURN_RELAY_PORTS="40000-40200",
            CT_TURN_ALLOW_PEERS="127.0.0.1/32")
        self.relay = self.service.turn.turn_server
        self.host, self.guest = yield host_and_guests(self, url)
        yield wait_for(lambda: self.host.ice_servers and self.guest.ice_servers)

    def credential(self, client):
        turn = [s for s in client.ice_servers if "username" in s][0]
        return turn["username"], turn["credential"]

    def udp_client(self, client):
        username, password = self.credential(client)
        udp = UdpClient(reactor, ("127.0.0.1", self.turn_port), username=username,
                        password=password)
        self.addCleanup(udp.close)
        return udp

    @defer.inlineCallbacks
    def aioice(self, client):
        username, password = self.credential(client)
        out = yield utils.getProcessOutput(
            sys.executable, [str(AIOICE_CLIENT), "127.0.0.1", str(self.turn_port), "udp",
                             username, password, "2"], errortoo=True)
        return json.loads(out.decode().strip().splitlines()[-1])

    def allocations_of(self, client):
        user = f"{client.session}.{client.participant}"
        return [a for a in self.relay.table.by_key.values() if a.username.endswith(":" + user)]

    @defer.inlineCallbacks
    def test_finding_5_short_scoped_credentials_and_default_quotas(self):
        username, _ = self.credential(self.guest)
        expiry, user = username.split(":")
        self.assertEqual(user, f"{self.guest.session}.{self.guest.participant}")
        self.assertLessEqual(abs(int(expiry) - reactor.seconds() - 600), 5)
        config = self.relay.config
        self.assertEqual((config.max_allocations, config.user_quota, config.bandwidth),
                         (1000, 10, 1024 * 1024))
        # One participant's credential: ten allocations, not the eleventh.
        replies = []
        for _ in range(11):
            replies.append((yield self.udp_client(self.guest).allocate_call()))
        self.assertEqual([error_code(r) for r in replies], [0] * 10 + [486])
        self.assertEqual(len(self.allocations_of(self.guest)), 10)
        # Another participant has its own quota.
        self.assertEqual(error_code((yield self.udp_client(self.host).allocate_call())), 0)

    @defer.inlineCallbacks
    def test_finding_5_removal_and_session_end_revoke_credentials_and_allocations(self):
        held = self.udp_client(self.guest)
        self.assertEqual(error_code((yield held.allocate_call())), 0)
        result = yield self.aioice(self.guest)
        self.assertEqual((result["ok"], result.get("echoes")), (True, 2), result)
        self.host.kick(self.guest.participant)
        yield wait_for(lambda: not self.allocations_of(self.guest))
        refresh = yield held.call(stun.REFRESH, [(stun.LIFETIME, stun.encode_u32(600))])
        self.assertIn(error_code(refresh), (401, 437))
        result = yield self.aioice(self.guest)
        self.assertFalse(result["ok"], result)
        self.assertIn("401", result["error"])
        self.assertGreaterEqual(self.relay.stats.refusals["revoked REST API credentials"], 1)
        # The host's credentials still work, until the session ends.
        host_held = self.udp_client(self.host)
        self.assertEqual(error_code((yield host_held.allocate_call())), 0)
        result = yield self.aioice(self.host)
        self.assertEqual((result["ok"], result.get("echoes")), (True, 2), result)
        self.host.end()
        yield wait_for(lambda: not self.allocations_of(self.host))
        result = yield self.aioice(self.host)
        self.assertFalse(result["ok"], result)
        self.assertIn("401", result["error"])

    @defer.inlineCallbacks
    def test_finding_5_connected_participants_get_fresh_credentials_before_expiry(self):
        refreshers = [s for s in self.service if isinstance(s, TimerService)
                      and s.call[0].__name__ == "hand_everyone_fresh_ones"]
        self.assertEqual([s.step for s in refreshers], [300.0])
        old, _ = self.credential(self.guest)
        self.guest.ice_servers = None
        refreshers[0].call[0]()
        yield wait_for(lambda: self.guest.ice_servers)
        new, _ = self.credential(self.guest)
        self.assertEqual(new.split(":")[1], old.split(":")[1])
