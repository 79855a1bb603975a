"""Server-side CPU per echo of our UDP data path, in one process, fast path and fallback.

A busy machine makes wall-clock and CPU-share figures noisy; this step is steadier. One
process holds the relay (no reactor: the test drives the listener's ``doRead`` and the
poller's ``serve``), ``sessions`` client sockets and one echo peer on loopback. Each round
every session sends ``window`` datagrams (ChannelData, or Send indications with
``--indications``), the listener relays them, the peer echoes them, the poller relays the
echoes; only the relay's calls are timed, with this thread's CPU clock (user + system,
so the system calls are in). Fixed batches make both paths do the same work.

    .venv/bin/python bench/turn/datapath_cost.py [--indications] [--rounds 3000]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from twisted.internet.task import Clock  # noqa: E402

from ct.turn import auth, stun  # noqa: E402
from ct.turn.policy import PeerPolicy  # noqa: E402
from ct.turn.server import TurnConfig  # noqa: E402
from ct.turn.sockets import UdpServerSocket  # noqa: E402
from ct.turn.tap import build_turn_server  # noqa: E402


class SilentReactor(Clock):
    """Time from a Clock; the sockets are served by this script."""

    def addReader(self, reader):
        pass

    def removeReader(self, reader):
        pass


def udp(host="127.0.0.1"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def drain(sock) -> list[bytes]:
    out = []
    for _ in range(10_000):
        try:
            out.append(sock.recv(70_000))
        except BlockingIOError:
            break
    return out


def measure(fast: bool, indications: bool, sessions: int, window: int, rounds: int) -> dict:
    reactor = SilentReactor()
    reactor.advance(1_700_000_000)
    config = TurnConfig(realm="bench", relay_host="127.0.0.1", relay_ports=(50000, 59999),
                        bandwidth=0, user_quota=0, max_allocations=0, unauthenticated_rate=0,
                        fast_path=fast)
    server = build_turn_server(config, auth.Credentials("bench", {"u": "p"}),
                               PeerPolicy(allowed=["127.0.0.0/8"]), reactor)
    listener = UdpServerSocket(server, "127.0.0.1", 0)
    assert (server.sockets.fast is not None) == fast, "fast path not built"
    peer = udp()
    peer_addr = peer.getsockname()
    key = stun.long_term_key("u", "bench", "p")
    clients, frames = [], []
    for _ in range(sessions):
        sock = udp()
        clients.append(sock)
        addr = sock.getsockname()
        nonce = server.nonces.mint(reactor.seconds()).encode()

        def signed(method, attrs):
            tid = os.urandom(12)
            body = [(t, v(tid) if callable(v) else v) for t, v in attrs]
            body += [(stun.USERNAME, b"u"), (stun.REALM, b"bench"), (stun.NONCE, nonce)]
            reply = server.handle_stun(stun.encode_message(method, stun.REQUEST, tid, body,
                                                           key=key), addr, addr, listener)
            assert stun.parse_message(reply).cls == stun.SUCCESS, method
        signed(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, b"\x11\0\0\0")])
        if indications:
            signed(stun.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, lambda tid: (
                stun.encode_xor_address(peer_addr[0], 0, tid)))])
            tid = os.urandom(12)
            frames.append(stun.encode_message(stun.SEND, stun.INDICATION, tid, [
                (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(*peer_addr, tid)),
                (stun.DATA_ATTR, b"\0" * 160)], add_fingerprint=False))
        else:
            signed(stun.CHANNEL_BIND, [
                (stun.CHANNEL_NUMBER, stun.encode_channel_number(0x4000)),
                (stun.XOR_PEER_ADDRESS, lambda tid: stun.encode_xor_address(*peer_addr, tid))])
            frames.append(stun.encode_channel_data(0x4000, b"\0" * 160))
    server_address = ("127.0.0.1", listener.port)
    poller = server.sockets.poller
    clock = time.thread_time
    spent = 0.0
    echoes = 0
    for _ in range(rounds):
        for sock, frame in zip(clients, frames):
            for _ in range(window):
                sock.sendto(frame, server_address)
        started = clock()
        listener.doRead()
        spent += clock() - started
        for _ in range(sessions * window):  # the peer echoes to the relay address
            try:
                data, addr = peer.recvfrom(70_000)
            except BlockingIOError:
                break
            peer.sendto(data, addr)
        started = clock()
        poller.serve()
        spent += clock() - started
        for sock in clients:
            echoes += len(drain(sock))
    listener.close()
    server.stop()
    for sock in clients + [peer]:
        sock.close()
    return {"echoes": echoes, "cpu_us_per_echo": spent * 1e6 / max(1, echoes)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indications", action="store_true",
                        help="Send/Data indications instead of ChannelData")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args(argv)
    for fast in (True, False):
        result = measure(fast, args.indications, args.sessions, args.window, args.rounds)
        print(f"{'fast path' if fast else 'Python path'}: "
              f"{'Send/Data' if args.indications else 'ChannelData'}, {result['echoes']} "
              f"echoes, relay CPU {result['cpu_us_per_echo']:.2f} µs per echo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
