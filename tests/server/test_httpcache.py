"""The HTTP caching rules (server/httpcache.py), table-driven against RFC 9110 / RFC 9111."""

from __future__ import annotations

import pytest

from server.httpcache import RangeNotSatisfiable, etag_matches, if_range_matches, parse_range, ttl_s


@pytest.mark.parametrize(("header", "size_bytes", "expected"), [
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=2-5", 10, (2, 5)),
    ("bytes=2-", 10, (2, 9)),
    ("bytes=5-100", 10, (5, 9)),  # a last byte past the end is clipped
    ("bytes=-3", 10, (7, 9)),  # suffix: the last three bytes
    ("bytes=-30", 10, (0, 9)),
    ("BYTES = 1-2", 10, (1, 2)),
    ("items=0-1", 10, None),  # unknown unit: the whole object
    ("bytes=5-2", 10, None),  # last < first: invalid, ignored
    ("bytes=0-1,4-5", 10, None),  # several ranges: the whole object
    ("bytes=a-b", 10, None),
    ("bytes=-", 10, None),
    ("bytes 0-1", 10, None),
])
def test_parse_range_serves_one_range_and_ignores_what_it_may(header: str, size_bytes: int,
                                                             expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size_bytes) == expected


@pytest.mark.parametrize(("header", "size_bytes"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10),
                                                    ("bytes=-5", 0), ("bytes=0-", 0)])
def test_parse_range_refuses_ranges_past_the_end(header: str, size_bytes: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size_bytes)


@pytest.mark.parametrize(("header", "etag", "expected"), [
    ('"a"', '"a"', True),
    ('W/"a"', '"a"', True),  # weak comparison
    ('"a"', 'W/"a"', True),
    ('"b", "a"', '"a"', True),
    ("*", '"a"', True),
    ('"b"', '"a"', False),
    ("*", None, False),  # nothing to match without a validator
])
def test_if_none_match_uses_the_weak_comparison(header: str, etag: str | None, expected: bool) -> None:
    assert etag_matches(header, etag) is expected


@pytest.mark.parametrize(("if_range", "expected"), [
    ('"v1"', True),
    ('W/"v1"', False),  # If-Range needs a strong validator
    ('"v0"', False),
    ("Tue, 01 Jan 2030 00:00:00 GMT", True),
    ("Wed, 02 Jan 2030 00:00:00 GMT", False),
])
def test_if_range_needs_a_strong_etag_or_the_exact_date(if_range: str, expected: bool) -> None:
    assert if_range_matches(if_range, '"v1"', "Tue, 01 Jan 2030 00:00:00 GMT") is expected


def test_if_range_never_matches_a_weak_etag_of_ours() -> None:
    assert not if_range_matches('W/"v1"', 'W/"v1"', None)


@pytest.mark.parametrize(("cache_control", "expected"), [
    (None, 60.0),
    ("", 60.0),
    ("public", 60.0),
    ("max-age=5", 5.0),
    ("max-age=5, s-maxage=7", 7.0),  # s-maxage wins for a shared cache
    ('max-age="9"', 9.0),
    ("Max-Age=3", 3.0),
    ("max-age=oops", 60.0),
    ("no-cache", 0.0),  # store, but revalidate every time
    ("no-store", None),
    ("private, max-age=5", None),
])
def test_ttl_follows_the_origins_cache_control(cache_control: str | None, expected: float | None) -> None:
    assert ttl_s(cache_control, 60.0) == expected
