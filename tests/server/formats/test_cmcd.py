"""CTA-5004 CMCD: the edge's parser types every reserved key, and reads back what the player sends."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from server.formats.cmcd import (
    CMCD_HEADERS,
    CmcdError,
    _parse_items,
    _parse_plain,
    cmcd_headers,
    parse_cmcd,
    relative_url,
)


@pytest.mark.parametrize(("payload", "expected"), [
    ('br=3200,bs,d=4004,ot=av,sid="a,b\\"c"', {"br": 3200, "bs": True, "d": 4004, "ot": "av", "sid": 'a,b"c'}),
    ("pr=1.25, tb=6000", {"pr": 1.25, "tb": 6000}),
    ('com.example-x="y",com.example-n=5', {"com.example-x": "y", "com.example-n": 5}),
    ("", {}),
])
def test_parse_cmcd_types_values_as_cta_5004_says(payload: str, expected: dict[str, object]) -> None:
    assert parse_cmcd(payload) == expected


@pytest.mark.parametrize("payload", [
    "br=fast", "sid=unquoted", 'ot="v"', "ot=q", "bs=1", "br=1,", "br=1,,bl=2", "br=1;bl=2", "unknownkey=1",
    "br=1,br=2", 'sid="no end', 'cid="' + "x" * 65 + '"', "x" * 5000,
])
def test_parse_cmcd_rejects_malformed_payloads(payload: str) -> None:
    with pytest.raises(ValueError):
        parse_cmcd(payload)


def test_what_the_player_sends_parses_back_to_the_same_values() -> None:
    headers = cmcd_headers(bitrate_kbps=3200, buffer_ms=21_349.0, starved=True, duration_ms=4004.4, measured_kbps=25_449.0,
                           object_type="v", session_id='s"id\\1', content_id="demo", startup=True,
                           next_url="http://e/s/tok/demo/video/v1/3.m4s", base_url="http://e/s/tok/demo/video/v1/2.m4s")
    assert set(headers) == set(CMCD_HEADERS)
    merged = {key: value for header in headers.values() for key, value in parse_cmcd(header).items()}
    assert merged == {"br": 3200, "d": 4004, "ot": "v", "bl": 21300, "mtp": 25400, "nor": "3.m4s", "su": True,
                      "sid": 's"id\\1', "cid": "demo", "sf": "d", "st": "v", "bs": True}


def test_a_quiet_request_sends_no_status_header_and_no_false_booleans() -> None:
    headers = cmcd_headers(bitrate_kbps=300, buffer_ms=0.0, starved=False, duration_ms=4000.0, measured_kbps=0.0,
                           object_type="a", session_id="s", content_id="c", startup=False, next_url=None,
                           base_url="http://e/x")
    assert "CMCD-Status" not in headers
    assert parse_cmcd(headers["CMCD-Request"]) == {"bl": 0}


@pytest.mark.parametrize(("target", "base", "expected"), [
    ("http://e/t/video/v1/3.m4s", "http://e/t/video/v1/2.m4s", "3.m4s"),
    ("http://e/t/audio/a1/3.m4s", "http://e/t/video/v1/2.m4s", "../../audio/a1/3.m4s"),
    ("http://other/t/3.m4s", "http://e/t/2.m4s", "http://other/t/3.m4s"),
])
def test_nor_is_relative_to_the_requested_object(target: str, base: str, expected: str) -> None:
    assert relative_url(target, base) == expected


def test_nor_never_carries_a_signed_path_token_into_a_log() -> None:
    assert parse_cmcd('nor="/s/SECRET/demo/3.m4s"') == {"nor": "/s/<token>/demo/3.m4s"}


def test_a_cmcd_error_is_a_value_error() -> None:
    with pytest.raises(CmcdError):
        parse_cmcd("br=fast")
    assert issubclass(CmcdError, ValueError)


@given(st.lists(st.sampled_from(['br=3200', 'bl=21300', 'bs', 'su', 'ot=v', 'ot="v"', 'sid="6e2fb550-c457"',
                                 'sid="a,b"', 'sid="a b"', 'sid="x\\"y"', 'cid="c"', 'pr=1.25', 'pr=x', 'tb=',
                                 'nor="../2.m4s"', 'com.x-y=5', 'bad=1', 'br=1', ' br=2', 'mtp=25400 ', 'd=4004',
                                 'st=v', 'sf=d', 'v=1', 'sid="\t"', '"', '', 'BR=1']), max_size=6),
       st.sampled_from([",", ", ", ",,"]))
@example(items=['ot="v"', ''], separator=",")  # a bad value before a trailing ',': the same error as the full grammar
def test_the_plain_shape_parses_as_the_full_grammar_does(items: list[str], separator: str) -> None:
    payload = separator.join(items)
    plain: object
    full: object
    try:
        plain = _parse_plain(payload)
    except CmcdError as exc:
        plain = ("error", str(exc))
    try:
        full = _parse_items(payload)
    except CmcdError as exc:
        full = ("error", str(exc))
    if plain is not None:  # taken: the same values, or the same error, as the full grammar
        assert plain == full
