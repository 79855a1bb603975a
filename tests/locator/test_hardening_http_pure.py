"""Pure checks behind the HTTP hardening: the Content-Type grammar (finding 29) and the
path matching of per-route body limits (finding 7)."""

from __future__ import annotations

import unittest

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.web.http import _parseContentType

from ct.common.web import _MEDIA_TYPE, request_path, valid_media_type


class MediaTypeTests(unittest.TestCase):
    """Pure checks of the Content-Type grammar and the body-limit path matching."""

    @settings(max_examples=200, deadline=None)
    @given(st.from_regex(_MEDIA_TYPE, fullmatch=True))
    def test_finding_29_twisted_parses_every_accepted_content_type(self, value):
        _parseContentType(value)  # must not raise: that was the unanswered request

    def test_finding_29_examples(self):
        for good in (b"application/json", b"application/x-www-form-urlencoded",
                     b'multipart/form-data; boundary="a b"', b"text/plain; charset=utf-8"):
            self.assertTrue(valid_media_type(good), good)
        for bad in (b"", b"json", b"';*)//;a*", b"a/b\x1c", b"a/b; c=\xff", b"a/b; c"):
            self.assertFalse(valid_media_type(bad), bad)

    def test_finding_7_request_path(self):
        self.assertEqual(request_path(b"/api/v1/regions?x=1"), b"/api/v1/regions")
        self.assertEqual(request_path(b"http://h:1/api/v1/regions"), b"/api/v1/regions")
        self.assertEqual(request_path(b"http://h:1"), b"/")

