"""Bounded JSON parsing for untrusted input (hardening finding 11)."""

import pytest

from ct.common.jsonsafe import JSONError, depth_of, loads


def test_deeply_nested_input_is_a_clear_error_not_a_recursion_error():
    with pytest.raises(JSONError, match="nested"):
        loads(b"[" * 8000 + b"]" * 8000)


def test_nesting_over_the_limit_is_refused_and_at_the_limit_accepted():
    assert loads(b"[" * 4 + b"]" * 4, max_depth=4) == [[[[]]]]
    with pytest.raises(JSONError, match="nested more than 4"):
        loads(b"[" * 5 + b"]" * 5, max_depth=4)


def test_size_and_encoding_errors_are_json_errors():
    with pytest.raises(JSONError, match="over 10 bytes"):
        loads(b'"' + b"x" * 20 + b'"', max_bytes=10)
    with pytest.raises(JSONError, match="not JSON"):
        loads(b"\xff\xfe")
    with pytest.raises(JSONError, match="not JSON"):
        loads(b"{")


def test_depth_of_counts_containers():
    assert depth_of(1, 10) == 0
    assert depth_of({"a": [1, {"b": []}]}, 10) == 4
