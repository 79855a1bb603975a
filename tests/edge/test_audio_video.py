"""A/V: the edge hands participants ICE servers whose credentials its bundled relay accepts."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from twisted.internet import defer, utils
from twisted.trial import unittest

from tests.edge.util import host_and_guests, start_edge, wait_for

AIOICE_CLIENT = Path(__file__).resolve().parent.parent / "turn" / "aioice_client.py"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the relay listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


class AudioVideoTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_participants_get_ice_servers_that_the_bundled_relay_accepts(self):
        port = free_port()
        _, url = start_edge(self, CT_AV_ENABLED="true", CT_TURN_ENABLED="true",
                            CT_TURN_HOST="127.0.0.1",
                            CT_TURN_LISTEN_UDP=f"127.0.0.1:{port}",
                            CT_TURN_LISTEN_TCP=f"127.0.0.1:{port}", CT_TURN_LISTEN_TLS="none",
                            CT_TURN_RELAY_ADDRESS="127.0.0.1",
                            CT_TURN_RELAY_PORTS="40000-40100",
                            CT_TURN_ALLOW_PEERS="127.0.0.1/32")
        host, guest = yield host_and_guests(self, url)
        yield wait_for(lambda: host.ice_servers is not None and guest.ice_servers is not None)
        turn = [s for s in guest.ice_servers if "username" in s][0]
        self.assertEqual(turn["urls"], [f"turn:127.0.0.1:{port}?transport=udp",
                                        f"turn:127.0.0.1:{port}?transport=tcp"])
        self.assertTrue(turn["username"].endswith(f":{guest.session}.{guest.participant}"))
        for transport in ("udp", "tcp"):
            out = yield utils.getProcessOutput(
                sys.executable, [str(AIOICE_CLIENT), "127.0.0.1", str(port), transport,
                                 turn["username"], turn["credential"], "3"], errortoo=True)
            result = json.loads(out.decode().strip().splitlines()[-1])
            self.assertEqual((result["ok"], result.get("echoes")), (True, 3), result)
