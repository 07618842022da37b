"""The DASH live player's MPD and clock sync answers on the link they share with the media (`ControlFlow`)."""

from __future__ import annotations

import pytest

from netsim.link import LinkModel
from netsim.synthetic import constant
from player.clocksync import ClockSyncConfig, ClockSyncSchedule
from player.research.live_control import ControlFlow

RATE_BYTES_S = 100_000.0  # 0.8 Mbit/s
EVERY_REFRESH = ClockSyncConfig(time_between_sync_attempts_s=2.0, minimum_time_between_sync_attempts_s=2.0,
                                maximum_time_between_sync_attempts_s=2.0)


def _flow(*, sync_bytes: int = 0, clock_sync: ClockSyncConfig = ClockSyncConfig()) -> ControlFlow:
    """MPD answers of 4 kB every 2 s from session time 1 (a round trip of 0.1 s) on a constant link;
    the clock last synced at -10 s."""
    schedule = ClockSyncSchedule(clock_sync)
    schedule.synced(-10.0, 0.0)
    return ControlFlow(LinkModel(constant(RATE_BYTES_S * 8, duration_s=600.0)), offset_s=0.0, rtt=lambda _: 0.1,
                       manifest_bytes=4_000, sync_bytes=sync_bytes, period_s=2.0, first_request_s=1.0,
                       sync=schedule, planned=[])


def test_an_answer_on_an_idle_link_crosses_at_the_links_rate() -> None:
    flow = _flow()
    flow.advance(5.0)
    assert flow.refreshed_s == pytest.approx([1.14, 3.28])  # 1.1 s + 40 ms; a period and a round trip on
    assert flow.planned == [(pytest.approx(1.1), 4_000), (pytest.approx(3.24), 4_000), (pytest.approx(5.38), 4_000)]


def test_an_answer_crossing_with_a_longer_transfer_takes_twice_as_long_and_delays_it_by_its_bytes() -> None:
    flow = _flow()
    end = flow.transfer(0.5, 100_000)  # 1 s alone, from 0.5 s
    assert flow.refreshed_s == pytest.approx([1.1 + 0.08])  # half the rate from its first byte on
    assert end == pytest.approx(0.5 + 1.0 + 0.04)


def test_a_shorter_transfer_ends_first_and_the_answer_has_the_link_after() -> None:
    flow = _flow()
    end = flow.transfer(1.1, 1_000)  # 10 ms alone, as the answer's first byte crosses
    assert end == pytest.approx(1.12)  # 1 kB each at half the rate
    flow.advance(2.0)
    assert flow.refreshed_s == pytest.approx([1.15])  # the link is work-conserving: 5 kB from 1.1 s


def test_an_answer_arriving_mid_transfer_shares_from_its_first_byte() -> None:
    flow = _flow()
    end = flow.transfer(1.0, 20_000)  # 0.2 s alone: 10 kB before the answer's first byte at 1.1 s
    assert flow.refreshed_s == pytest.approx([1.18]) and end == pytest.approx(1.24)


def test_the_clock_sync_follows_its_refresh_and_shares_the_link_too() -> None:
    flow = _flow(sync_bytes=1_000, clock_sync=EVERY_REFRESH)
    end = flow.transfer(1.0, 200_000)  # 2 s alone
    assert [size for _, size in flow.planned[:3]] == [4_000, 1_000, 4_000]
    assert flow.resyncs_s == pytest.approx([1.18])  # as the MPD answer had crossed, shared
    # the UTCTiming answer from 1.28 s, shared (20 ms, done at 1.3 s); the next MPD a period after the
    # last one had crossed (dash.js: the re-sync does not push it back), a round trip
    assert flow.refreshed_s[0] == pytest.approx(1.3)
    assert flow.planned[2][0] == pytest.approx(1.18 + 2.0 + 0.1)
    assert end == pytest.approx(3.0 + 0.04 + 0.01)


def test_a_resync_still_crossing_at_the_period_holds_the_next_refresh_back() -> None:
    # a 250 kB UTCTiming answer (2.5 s alone) after the MPD crossed at 1.14 s: done at 3.74 s, past 1.14 + 2 s
    flow = _flow(sync_bytes=250_000, clock_sync=EVERY_REFRESH)
    flow.advance(10.0)
    assert flow.resyncs_s[0] == pytest.approx(1.14) and flow.refreshed_s[0] == pytest.approx(3.74)
    assert flow.planned[2][0] == pytest.approx(3.74 + 0.1)
