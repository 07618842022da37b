"""An edge's heartbeats keep to a fixed schedule, whatever the steering API's answers cost
(server/edgepeers.py `send_heartbeats`), on a virtual clock: no wall time is measured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from server.edgemetrics import EdgeStats
from server.edgepeers import send_heartbeats


class _Enough(Exception):
    """Ends the beat loop once the test has seen enough beats."""


class _SlowSteering:
    """Stands in for the client session: each POST takes `post_s` of the virtual clock."""

    def __init__(self, post_durations_s: list[float], *, fail: bool = False) -> None:
        self.now_s = 100.0
        self.durations = list(post_durations_s)
        self.sent_at_s: list[float] = []
        self.fail = fail

    def clock(self) -> float:
        return self.now_s

    async def sleep(self, delay_s: float) -> None:
        assert delay_s >= 0.0, f"asked to sleep {delay_s} s"
        self.now_s += delay_s

    @contextlib.asynccontextmanager
    async def post(self, url: str, **kwargs: Any) -> AsyncIterator[Any]:
        if not self.durations:
            raise _Enough
        self.sent_at_s.append(self.now_s)
        self.now_s += self.durations.pop(0)
        if self.fail:
            raise aiohttp.ClientConnectionError("steering is down")

        class _Answer:
            status = 200

        yield _Answer()


async def _beats(steering: _SlowSteering, interval_s: float, stats: EdgeStats | None = None) -> list[float]:
    with pytest.raises(_Enough):
        await send_heartbeats(steering, edge_id="edge-0", steering_url="http://steering", headers={},  # type: ignore[arg-type]
                              interval_s=interval_s, beat=lambda: {"edge_id": "edge-0"}, stats=stats or EdgeStats(),
                              clock=steering.clock, sleep=steering.sleep)
    return [t - steering.sent_at_s[0] for t in steering.sent_at_s]


async def test_a_slow_answer_does_not_delay_the_next_beat() -> None:
    # Each answer takes 0.6 of an interval: beats still start once per interval, so an edge heard
    # every interval stays within steering's two-interval window (they were 1.6 intervals apart).
    steering = _SlowSteering([0.6] * 6)
    assert await _beats(steering, 1.0) == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


async def test_an_overrun_sends_at_once_and_skips_the_missed_slots() -> None:
    # The second answer takes 2.5 intervals: the third beat goes at once when it returns (3.5), not
    # in a burst for the slots it missed, and the schedule goes on from there.
    steering = _SlowSteering([0.1, 2.5, 0.1, 0.1])
    assert await _beats(steering, 1.0) == pytest.approx([0.0, 1.0, 3.5, 4.5])


async def test_failed_beats_keep_the_schedule_and_are_counted() -> None:
    steering, stats = _SlowSteering([0.3] * 4, fail=True), EdgeStats()
    assert await _beats(steering, 0.5, stats) == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert stats.heartbeat_failures == 4


async def test_nothing_to_report_sends_nothing_and_waits_an_interval() -> None:
    steering = _SlowSteering([0.2])
    reports = iter([None, None, {"edge_id": "edge-0"}])
    with pytest.raises(_Enough):
        await asyncio.wait_for(send_heartbeats(
            steering, edge_id="edge-0", steering_url="http://steering", headers={},  # type: ignore[arg-type]
            interval_s=1.0, beat=lambda: next(reports, {"edge_id": "edge-0"}), stats=EdgeStats(),
            clock=steering.clock, sleep=steering.sleep), timeout=5.0)
    assert steering.sent_at_s == [102.0]  # two empty intervals, then the first report
