"""The fast hit's hand-built access-log line (server/edgelog.py) is the line `JsonAccessLogger.write_entry`
writes for the same request, CMCD and its metrics included, whatever the client sends."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from server.edgecmcd import CmcdLogFields
from server.edgelog import CmcdJson, HitLogLine, json_text
from server.edgemetrics import EdgeStats
from server.formats.cmcd import CMCD_HEADERS
from server.observability import JsonAccessLogger

PATH = "/s/<token>/demo/video/v0/1.m4s"
ITEMS = ["br=3200", "bl=21300", "mtp=25400", "d=4000", "ot=v", "ot=av", "sf=d", "st=v", "su", "bs", "pr=1.25",
         'sid="6e2fb550-c457-11e9"', 'cid="demo"', 'nor="2.m4s"', 'nor="/s/abcdefghijklmnopqrstuvwxyz012345/x.m4s"',
         "x-custom=7", "x-flag", "tb=8000", "rtp=12000", "v=1",
         # not the common shape, or not valid: the full parser decides
         "br=abc", "ot=zz", "sid=bare", "unknown=1", " br=1", "bl=1 ", 'sid="a,b"', 'sid="a\\"b"', "", "br=1=2",
         'cid="caf\u00e9"', "x-u=\u00e9t\u00e9", "BR=1", "bs=?0", "su=true"]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, _Lines]]:
    logger = logging.getLogger("abrkit.test-edgelog")
    handler = _Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def _both_lines(logger: logging.Logger, lines: _Lines, hit_log: HitLogLine, raw_query: str,
                headers: CIMultiDictProxy[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, EdgeStats]:
    """(the hand-built line, write_entry's line, the full path's CMCD counts) for one request."""
    monkeypatch.setattr(time, "time", lambda: 1796462264.9155)
    hit_log.write(request_id="77f66bfc876a8219000000e7bb3422a0", path_json=json_text(PATH), size_bytes=100_000,
                  duration_s=0.0001234, remote_json=json_text("127.0.0.1"), raw_query=raw_query, headers=headers)
    full_stats = EdgeStats()
    JsonAccessLogger.for_service("edge")(logger, "").write_entry(
        request_id="77f66bfc876a8219000000e7bb3422a0", method="GET", path=PATH, path_redacted=True, status=200,
        size_bytes=100_000, duration_s=0.0001234, remote="127.0.0.1", extra={"edge_id": "e-1", "cache": "HIT"},
        deferred=(CmcdLogFields(raw_query, headers, full_stats),))
    monkeypatch.undo()
    fast, full = lines.lines[-2:]
    return fast, full, full_stats


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query_items=st.none() | st.lists(st.sampled_from(ITEMS), max_size=6),
       encode=st.sampled_from(["all", "commas-literal", "lower"]),
       header_items=st.dictionaries(st.sampled_from(CMCD_HEADERS), st.lists(st.sampled_from(ITEMS), max_size=4),
                                    max_size=3),
       other_query=st.booleans())
def test_the_hand_built_line_is_write_entrys_line(captured: tuple[logging.Logger, _Lines],
                                                  query_items: list[str] | None, encode: str,
                                                  header_items: dict[str, list[str]], other_query: bool) -> None:
    logger, lines = captured
    stats = EdgeStats()
    hit_log = HitLogLine(logger, "edge", "e-1", stats)
    raw_query = "a=1" if other_query else ""
    if query_items is not None:
        payload = quote(",".join(query_items), safe="")
        if encode == "commas-literal":
            payload = payload.replace("%2C", ",")
        elif encode == "lower":
            payload = payload.replace("%2C", "%2c")
        raw_query = "&".join(part for part in (raw_query, "CMCD=" + payload) if part)
    headers = CIMultiDictProxy(CIMultiDict({"Host": "edge", **{name: ",".join(items)
                                                               for name, items in header_items.items()}}))
    with pytest.MonkeyPatch.context() as monkeypatch:
        for _ in range(2):  # the second time from remembered items
            fast, full, full_stats = _both_lines(logger, lines, hit_log, raw_query, headers, monkeypatch)
            assert fast == full
            json.loads(fast)
    assert (stats.cmcd_requests, stats.cmcd_errors) == (2 * full_stats.cmcd_requests, 2 * full_stats.cmcd_errors)


def test_common_payloads_come_from_remembered_items_and_odd_ones_from_the_full_parser() -> None:
    cmcd = CmcdJson()
    headers = CIMultiDictProxy(CIMultiDict({"CMCD-Session": 'sid="s-1"'}))
    query = "CMCD=" + quote("bl=21300,br=3200,ot=v", safe="")
    assert cmcd.object_text(query, headers) == '{"bl":21300,"br":3200,"ot":"v","sid":"s-1"}'
    assert cmcd.object_text("", CIMultiDictProxy(CIMultiDict())) == ""
    for odd in ("br=1,br=2", "br=x", "br=1,", 'sid="a\\"b"', " br=1"):
        assert cmcd.object_text("CMCD=" + quote(odd, safe=""), CIMultiDictProxy(CIMultiDict())) is None
    # A key sent in the query and again in a header: the full parser reports the clash.
    clash = CIMultiDictProxy(CIMultiDict({"CMCD-Object": "br=3200"}))
    assert cmcd.object_text(query, clash) is None


def test_remembered_items_are_bounded() -> None:
    cmcd = CmcdJson()
    empty = CIMultiDictProxy(CIMultiDict())
    for n in range(10_000):
        assert cmcd.object_text(f"CMCD=bl%3D{n * 100}", empty) == f'{{"bl":{n * 100}}}'
    assert len(cmcd._items) <= 4096
