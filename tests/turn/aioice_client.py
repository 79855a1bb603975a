"""Helper run as a subprocess by the TURN tests: aioice allocates and echoes via a peer.

Usage: python aioice_client.py HOST PORT udp|tcp|tls USERNAME PASSWORD [COUNT]
Starts a UDP echo peer on 127.0.0.1, allocates on the TURN server with aioice, sends
COUNT messages to the peer through the relay and prints one JSON line with the results.
"""

import asyncio
import json
import ssl
import sys

from aioice import turn


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.sources = set()

    def datagram_received(self, data, addr):
        self.sources.add(addr)
        self.transport.sendto(b"echo:" + data, addr)


class Receiver(asyncio.DatagramProtocol):
    def __init__(self):
        self.queue = asyncio.Queue()

    def connection_made(self, transport):
        pass

    def datagram_received(self, data, addr):
        self.queue.put_nowait((data, addr))

    def error_received(self, exc):
        self.queue.put_nowait((b"", repr(exc)))


async def main(host, port, transport, username, password, count):
    loop = asyncio.get_running_loop()
    peer_transport, echo = await loop.create_datagram_endpoint(
        Echo, local_addr=("127.0.0.1", 0))
    peer = peer_transport.get_extra_info("sockname")
    out = {"ok": False}
    try:
        context = None
        if transport == "tls":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            transport = "tcp"
        relay, receiver = await asyncio.wait_for(turn.create_turn_endpoint(
            Receiver, server_addr=(host, port), username=username, password=password,
            transport=transport, ssl=context), 10)
        out["relayed"] = list(relay.get_extra_info("sockname"))
        out["mapped"] = list(relay.get_extra_info("related_address"))
        echoes = 0
        for i in range(count):
            message = b"hello %d" % i
            relay.sendto(message, peer)
            data, addr = await asyncio.wait_for(receiver.queue.get(), 5)
            if data == b"echo:" + message and tuple(addr) == tuple(peer):
                echoes += 1
        out["echoes"] = echoes
        out["peer_saw"] = sorted(list(a) for a in echo.sources)
        relay.close()
        await asyncio.sleep(0.2)
        out["ok"] = True
    except Exception as e:  # reported to the test, which fails on it
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        peer_transport.close()
    print(json.dumps(out))


if __name__ == "__main__":
    h, p, t, u, pw = sys.argv[1:6]
    n = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    asyncio.run(main(h, int(p), t, u, pw, n))
