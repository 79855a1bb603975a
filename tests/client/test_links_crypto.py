"""Reference client pieces without sockets: join links and payload encryption."""

from __future__ import annotations

from twisted.trial import unittest

from ct.client.crypto import DecryptError, SessionKey
from ct.client.links import JoinLink, parse_link, websocket_url


class LinkTests(unittest.TestCase):
    def test_round_trip_keeps_key_in_fragment(self):
        link = JoinLink("https://ct.example.org", "abc123", "tok-en", "S0meKey", "sticky.1")
        text = str(link)
        self.assertEqual(text, "https://ct.example.org/join/abc123?token=tok-en"
                               "&ctstickiness=sticky.1#key=S0meKey")
        self.assertEqual(parse_link(text), link)

    def test_server_under_a_path_prefix(self):
        link = parse_link("https://host:8443/ct/join/s1?token=t#key=k")
        self.assertEqual((link.server, link.session), ("https://host:8443/ct", "s1"))

    def test_bad_links_are_refused(self):
        for bad in ("ftp://h/join/s?token=t", "https://h/s?token=t", "https://h/join/s"):
            self.assertRaises(ValueError, parse_link, bad)

    def test_websocket_urls(self):
        self.assertEqual(websocket_url("https://h:1443", "session"), "wss://h:1443/ws/session")
        self.assertEqual(websocket_url("http://h", "presence"), "ws://h/ws/presence")


class CryptoTests(unittest.TestCase):
    def test_encrypt_decrypt_and_binding_to_session(self):
        key = SessionKey.generate()
        box = key.encrypt(b"secret code", b"session-1")
        self.assertNotIn(b"secret code", box)
        self.assertEqual(key.decrypt(box, b"session-1"), b"secret code")
        self.assertRaises(DecryptError, key.decrypt, box, b"session-2")
        self.assertRaises(DecryptError, SessionKey.generate().decrypt, box, b"session-1")
        tampered = box[:-1] + bytes([box[-1] ^ 1])
        self.assertRaises(DecryptError, key.decrypt, tampered, b"session-1")

    def test_key_text_round_trip(self):
        key = SessionKey.generate()
        self.assertEqual(SessionKey.from_text(key.to_text()).key, key.key)
        self.assertRaises(ValueError, SessionKey.from_text, "c2hvcnQ")
