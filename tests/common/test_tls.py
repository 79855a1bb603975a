"""HTTPS listeners offer only forward-secret AEAD suites (finding 14), against a real
``twistd ctedge`` with real TLS clients (Python's ``ssl``, and ``openssl s_client``)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import warnings
from pathlib import Path

from twisted.trial import unittest

from tests.procutil import Daemon
from tests.tlsutil import write_self_signed

REFUSED = ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
           "ECDHE-RSA-AES256-SHA384"]
ACCEPTED = ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-CHACHA20-POLY1305"]


def tls12_context(cipher: str | None = None, maximum=ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the suite is under test here, not the certificate
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        if maximum < ssl.TLSVersion.TLSv1_2:
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    if cipher:
        context.set_ciphers(cipher + ":@SECLEVEL=0")
    return context


class HTTPSCipherTests(unittest.TestCase):
    timeout = 90

    def start_edge(self, listen: str = "ssl:0:interface=127.0.0.1") -> int:
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir(parents=True)
        cert, key = write_self_signed(tmp, "localhost", rsa_key=True)
        edge = Daemon("ctedge", {"CT_HTTP_LISTEN": "none", "CT_PROBE_INTERVAL": "0",
                                 "CT_HTTPS_LISTEN": listen, "CT_TLS_CERT": str(cert),
                                 "CT_TLS_KEY": str(key), "CT_DATA_DIR": str(tmp),
                                 "CT_DASHBOARD_PASSWORD": "tls-test-password"})
        self.addCleanup(edge.stop)
        return edge.port("SSL")

    def handshake(self, port: int, context: ssl.SSLContext) -> tuple[str, str, bytes]:
        """(suite, protocol, the first bytes of GET /health) or ssl.SSLError."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
                data = b""
                while len(data) < 100000:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return tls.cipher()[0], tls.version(), data

    def test_finding_14_cbc_and_rsa_key_exchange_refused_ecdhe_aead_accepted(self):
        port = self.start_edge()
        for cipher in REFUSED:
            with self.assertRaises(ssl.SSLError, msg=cipher):
                self.handshake(port, tls12_context(cipher))
        for cipher in ACCEPTED:
            suite, version, data = self.handshake(port, tls12_context(cipher))
            self.assertEqual((suite, version), (cipher, "TLSv1.2"))
            self.assertTrue(data.startswith(b"HTTP/1.0 200"), data[:100])
            self.assertEqual(json.loads(data.split(b"\r\n\r\n", 1)[1])["status"], "ok")
        _, version, _ = self.handshake(port, tls12_context(maximum=ssl.TLSVersion.TLSv1_3))
        self.assertEqual(version, "TLSv1.3")
        with self.assertRaises(ssl.SSLError):  # TLS 1.1 and older: refused
            self.handshake(port, tls12_context("DEFAULT", maximum=ssl.TLSVersion.TLSv1_1))

    def test_finding_14_openssl_s_client_aes128_sha_refused(self):
        openssl = shutil.which("openssl")
        if openssl is None:
            raise unittest.SkipTest("the openssl command is not installed")
        port = self.start_edge()

        def s_client(cipher: str) -> subprocess.CompletedProcess:
            return subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}",
                                   "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0"],
                                  input=b"", capture_output=True, timeout=30)

        refused = s_client("AES128-SHA")
        self.assertNotEqual(refused.returncode, 0)
        accepted = s_client("ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual(accepted.returncode, 0, accepted.stderr)
        self.assertIn(b"ECDHE-RSA-AES128-GCM-SHA256", accepted.stdout)

    def test_https_on_a_tcp_endpoint_string(self):
        port = self.start_edge("tcp:0:interface=127.0.0.1")
        _, version, data = self.handshake(
            port, tls12_context(maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED))
        self.assertEqual(version, "TLSv1.3")
        self.assertTrue(data.startswith(b"HTTP/1.0 200"), data[:100])


class HTTPSEndpointParsingTests(unittest.TestCase):
    def setUp(self):
        tmp = Path(self.mktemp())
        tmp.mkdir()
        self.cert, self.key = write_self_signed(tmp)
        (tmp / "a:b.pem").write_bytes(self.key.read_bytes())
        self.colon_key = tmp / "a:b.pem"

    def test_plain_listener_and_tls_arguments(self):
        from twisted.internet.endpoints import quoteStringArgument

        from ct.common.listen import HTTPSEndpoint

        for given, plain in (("ssl:1443", "tcp:1443"),
                             (r"ssl:0:interface=\:\:1", r"tcp:0:interface=\:\:1"),
                             ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
                             ("ssl:0:privateKey=" + quoteStringArgument(str(self.colon_key))
                              + ":certKey=" + quoteStringArgument(str(self.cert))
                              + ":sslmethod=TLSv1_METHOD", "tcp:0")):
            endpoint = HTTPSEndpoint(None, given, str(self.cert), str(self.key))
            self.assertEqual((endpoint.plain, str(endpoint)), (plain, given))
