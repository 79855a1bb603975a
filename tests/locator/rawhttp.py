"""Byte-exact HTTP/1.1 over a real socket, for requests no well-behaved client would send.

Blocking, bounded by socket time-outs: use it from synchronous tests against daemons that
run in other processes (``tests/procutil.py``), never inside the test's reactor.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass, field

TIMEOUT = 15.0


@dataclass
class Response:
    status: int | None  # None: the server closed without answering
    headers: dict[bytes, list[bytes]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def connect(port: int, tls: bool = False, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="localhost")
    return sock


def head(method: bytes, target: bytes, headers=()) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_response(sock: socket.socket, limit: int = 1 << 20) -> Response:
    """Read until the server closes (we always send ``Connection: close``)."""
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while len(data) < limit:
        if time.monotonic() > deadline:
            raise AssertionError(f"no complete answer within {TIMEOUT} s: {data[:300]!r}")
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return parse(data)


def parse(data: bytes) -> Response:
    if not data:
        return Response(None)
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if status == 100:  # "100 Continue", then the real answer
        return parse(body)
    if b"chunked" in b"".join(headers.get(b"transfer-encoding", [])):
        body = dechunk(body)
    return Response(status, headers, body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2:]
    return out


def request(port: int, method: bytes, target: bytes, headers=(), body: bytes = b"",
            tls: bool = False) -> Response:
    """One request with a ``Content-Length`` body (when there is one); the answer."""
    if body:
        headers = [*headers, (b"Content-Length", str(len(body)).encode())]
    with connect(port, tls) as sock:
        sock.sendall(head(method, target, headers) + body)
        return read_response(sock)


def send_chunked(port: int, target: bytes, total: int, chunk: int = 8192,
                 method: bytes = b"POST", tls: bool = False) -> tuple[int, Response]:
    """Send up to ``total`` body bytes chunked, stopping as soon as the server answers;
    returns (bytes sent, answer)."""
    with connect(port, tls) as sock:
        sock.sendall(head(method, target, [(b"Transfer-Encoding", b"chunked")]))
        sent = 0
        deadline = time.monotonic() + TIMEOUT
        while sent < total:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server read {sent} body bytes for {TIMEOUT} s "
                                     "without answering")
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n" % chunk + b"x" * chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        else:
            try:
                sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        return sent, read_response(sock)
