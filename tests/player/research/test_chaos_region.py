"""The region-outage scenario's measurements, on event logs written by hand (the end-to-end run is in
test_chaos.py, slow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from player.research.chaos_region import first_segment_from, segment_ttfb_by_region, session_region

EU, US = "http://127.0.0.1:1001", "http://127.0.0.1:2001"


def _req(t: float, host: str, *, error: str | None = None, ttfb_s: float = 0.1, path: str = "/s/tok/t/v/1.m4s",
         ) -> dict[str, Any]:
    return {"type": "request", "chaos_t": t, "url": host + path, "error": error, "ttfb_s": ttfb_s}


@dataclass
class _Log:
    events: list[dict[str, Any]] = field(default_factory=list)


def test_recovery_is_the_first_segment_from_another_region_after_the_outage() -> None:
    events = [_req(9.0, US), _req(10.5, EU, error="ClientOSError"), _req(10.6, US, error="HTTP 503"),
              _req(10.7, US, path="/healthz"), _req(11.2, US)]
    assert first_segment_from(events, {US}, 10.0) == 11.2  # not the one before, a failed one or a non-segment
    assert first_segment_from(events, {US}, 11.3) is None


def test_ttfb_by_region_before_and_after_the_split() -> None:
    logs = [_Log([_req(1, EU, ttfb_s=0.02), _req(2, EU, ttfb_s=0.04), _req(12, US, ttfb_s=0.3)]),
            _Log([_req(1, US, ttfb_s=0.05), _req(12, US, ttfb_s=0.07, error="timeout")])]
    assert segment_ttfb_by_region(logs, ("eu", "us"), 10.0) == {
        "eu": {"before": 0.03, "after": 0.3}, "us": {"before": 0.05, "after": None}}
    assert [session_region(("eu", "us"), i) for i in range(3)] == ["eu", "us", "eu"]
    assert session_region((), 0) is None
