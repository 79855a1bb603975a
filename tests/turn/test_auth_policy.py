"""Credentials, nonces and peer policy (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.trial import unittest

from ct.turn import auth, stun
from ct.common.addresses import AddressError, parse_networks
from ct.turn.policy import PeerPolicy


class RestCredentialTests(unittest.TestCase):
    def test_rest_credentials_match_coturn_scheme(self):
        username, password = auth.rest_credentials("s3cret", "alice", 3600, 1_700_000_000.5)
        self.assertEqual(username, "1700003600:alice")
        expected = base64.b64encode(
            hmac.new(b"s3cret", b"1700003600:alice", hashlib.sha1).digest()).decode()
        self.assertEqual(password, expected)

    def test_rest_expiry_forms(self):
        self.assertEqual(auth.rest_expiry("100:bob"), 100)
        self.assertEqual(auth.rest_expiry("bob:100"), 100)
        self.assertEqual(auth.rest_expiry("100"), 100)
        self.assertIsNone(auth.rest_expiry("bob"))
        self.assertIsNone(auth.rest_expiry("bob:carol"))

    def test_credentials(self):
        creds = auth.Credentials("r", {"static": "pw"}, secret="s")
        self.assertEqual(creds.password("static", 0), ("pw", ""))
        user, password = auth.rest_credentials("s", "u", 60, 1000)
        self.assertEqual(creds.password(user, 1000), (password, ""))
        self.assertEqual(creds.password(user, 1060), (None, "expired REST API credentials"))
        self.assertEqual(creds.password("nobody", 0), (None, "unknown user"))
        self.assertEqual(auth.Credentials("r").password(user, 1000), (None, "unknown user"))


class NonceTests(unittest.TestCase):
    def test_nonce_lifecycle(self):
        minter = auth.NonceMinter(lifetime=600, key=b"k" * 16)
        nonce = minter.mint(1000)
        self.assertTrue(nonce.startswith("obMatJos2"))
        self.assertEqual(minter.check(nonce, 1599), "ok")
        self.assertEqual(minter.check(nonce, 1600), "stale")
        self.assertEqual(minter.check(nonce.replace(".", ".x"), 1000), "invalid")
        self.assertEqual(auth.NonceMinter(600, key=b"j" * 16).check(nonce, 1000), "invalid")
        self.assertEqual(minter.check("garbage", 1000), "invalid")


class AuthenticateTests(unittest.TestCase):
    def setUp(self):
        self.creds = auth.Credentials("realm", {"alice": "pw"})
        self.nonces = auth.NonceMinter(key=b"k" * 16)

    def request(self, user="alice", password="pw", nonce=None, integrity="sha1",
                algorithm=None, realm="realm"):
        nonce = self.nonces.mint(0) if nonce is None else nonce
        attrs = [(stun.USERNAME, user.encode()), (stun.REALM, realm.encode()),
                 (stun.NONCE, nonce.encode())]
        alg = stun.ALGORITHM_MD5
        if algorithm is not None:
            alg = algorithm
            attrs += [(stun.PASSWORD_ALGORITHMS, stun.encode_password_algorithms([1, 2])),
                      (stun.PASSWORD_ALGORITHM, alg.to_bytes(2, "big") + b"\0\0")]
        key = stun.long_term_key(user, realm, password, alg)
        data = stun.encode_message(stun.ALLOCATE, stun.REQUEST, b"t" * 12, attrs,
                                   key=key, integrity=integrity)
        return stun.parse_message(data)

    def test_good(self):
        result = auth.authenticate(self.request(), self.creds, self.nonces, 1)
        self.assertEqual((result.error, result.username, result.integrity), (0, "alice", "sha1"))

    def test_sha256_with_sha256_password_algorithm(self):
        m = self.request(integrity="sha256", algorithm=stun.ALGORITHM_SHA256)
        result = auth.authenticate(m, self.creds, self.nonces, 1)
        self.assertEqual((result.error, result.integrity), (0, "sha256"))
        self.assertEqual(result.key, stun.long_term_key("alice", "realm", "pw", 2))

    def test_errors(self):
        bare = stun.parse_message(stun.encode_message(stun.ALLOCATE, stun.REQUEST, b"t" * 12))
        self.assertEqual(auth.authenticate(bare, self.creds, self.nonces, 1).error, 401)
        cases = [
            (self.request(password="bad"), 401, "bad MESSAGE-INTEGRITY"),
            (self.request(user="bob"), 401, "unknown user"),
            (self.request(realm="other"), 401, "foreign realm"),
            (self.request(nonce="foreign"), 438, "invalid nonce"),
            (self.request(algorithm=7), 400, "unsupported password algorithm"),
        ]
        for message, code, reason in cases:
            result = auth.authenticate(message, self.creds, self.nonces, 1)
            self.assertEqual((result.error, result.reason), (code, reason))
        stale = auth.authenticate(self.request(), self.creds, self.nonces, 10_000)
        self.assertEqual((stale.error, stale.reason), (438, "stale nonce"))


class PolicyTests(unittest.TestCase):
    def test_default_denies(self):
        policy = PeerPolicy()
        for host in ("127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.169.254",
                     "224.0.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "ff02::1", "::",
                     "::ffff:127.0.0.1", "100.64.0.1"):
            self.assertIsNotNone(policy.refusal(host), host)
        for host in ("198.51.100.7", "8.8.8.8", "2001:db8::1"):
            self.assertIsNone(policy.refusal(host), host)
        self.assertEqual(policy.refusal("127.0.0.1"), "loopback peer")
        self.assertEqual(policy.refusal("10.0.0.1"), "private peer")

    def test_allow_list(self):
        policy = PeerPolicy(allowed=parse_networks(["127.0.0.0/8", "10.5.0.0/16"]))
        self.assertIsNone(policy.refusal("127.0.0.1"))
        self.assertIsNone(policy.refusal("10.5.1.1"))
        self.assertIsNotNone(policy.refusal("10.6.1.1"))
        self.assertRaises(AddressError, parse_networks, ["nonsense"])


class EmbeddedIpv4PolicyTests(unittest.TestCase):
    """Finding 6: IPv6 forms that reach IPv4 (or the relay itself) are refused."""

    def test_finding_6_translation_and_deprecated_ranges_refused_by_default(self):
        policy = PeerPolicy(own=("203.0.113.7", "0.0.0.0"))
        expected = {
            "64:ff9b::a9fe:a9fe": "NAT64 peer",  # 169.254.169.254, cloud metadata
            "64:ff9b::808:808": "NAT64 peer",
            "64:ff9b:1::a9fe:a9fe": "local-use NAT64 peer",
            "::a9fe:a9fe": "IPv4-compatible peer",
            "::808:808": "IPv4-compatible peer",
            "2002:a9fe:a9fe::1": "6to4 peer",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo peer",
            "fec0::1": "site-local peer",
            "203.0.113.7": "relay's own address peer",
            "::ffff:203.0.113.7": "relay's own address peer",
            "::1": "loopback peer",
            "::": "unspecified peer",
        }
        self.assertEqual({host: policy.refusal(host) for host in expected}, expected)
        for host in ("203.0.113.8", "2001:db8::1", "2a00:1450::1", "8.8.8.8"):
            self.assertIsNone(policy.refusal(host), host)

    def test_finding_6_allow_list_does_not_reopen_the_embedded_ipv4(self):
        policy = PeerPolicy(allowed=parse_networks(["64:ff9b::/96", "2002::/16", "2001::/32",
                                                 "::/96"]))
        self.assertIsNone(policy.refusal("64:ff9b::808:808"))
        self.assertIsNone(policy.refusal("2002:808:808::1"))
        self.assertEqual(policy.refusal("64:ff9b::a9fe:a9fe"), "link-local peer (embedded IPv4)")
        self.assertEqual(policy.refusal("64:ff9b::7f00:1"), "loopback peer (embedded IPv4)")
        self.assertEqual(policy.refusal("2002:a00:1::1"), "private peer (embedded IPv4)")
        self.assertEqual(policy.refusal("::a9fe:a9fe"), "link-local peer (embedded IPv4)")
        # Teredo: the server (bits 32-63) and the client (last 32 bits, inverted) both count.
        self.assertEqual(policy.refusal("2001:0:a00:1:8000:63bf:3fff:fdd2"),
                         "private peer (embedded IPv4)")
        self.assertEqual(policy.refusal("2001:0:4136:e378:8000:63bf:80ff:fffe"),
                         "loopback peer (embedded IPv4)")
        self.assertIsNone(policy.refusal("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
        # An explicitly allowed IPv4 network is allowed inside IPv6 too.
        both = PeerPolicy(allowed=parse_networks(["64:ff9b::/96", "10.0.0.0/8"]))
        self.assertIsNone(both.refusal("64:ff9b::a00:1"))
