"""The live HLS player's playlist reloads on the link they share with its media (`PlaylistFlow`)."""

from __future__ import annotations

import math

import pytest

from netsim.link import LinkModel
from netsim.synthetic import constant
from player.live import LiveSchedule
from player.research.live_playlists import PlaylistFlow

RATE_BYTES_S = 100_000.0  # 0.8 Mbit/s
# Parts every 0.5 s from session time 0 on (the channel has been live 60 s), 2 s segments.
SCHEDULE = LiveSchedule(availability_start_s=-60.0, segment_duration_s=2.0, chunk_duration_s=0.5)


def _flow(reload: str = "part", *, join_reloads: int = 0, period_s: float = 0.0, start_s: float = 0.1) -> PlaylistFlow:
    """4 kB playlists, a round trip of 0.1 s, on a constant link."""
    return PlaylistFlow(LinkModel(constant(RATE_BYTES_S * 8, duration_s=600.0)), offset_s=0.0, rtt=lambda _: 0.1,
                        schedule=SCHEDULE, reload=reload, playlist_bytes=4_000, period_s=period_s, start_s=start_s,
                        join_reloads=join_reloads, refreshes=True, planned=[])


def test_a_blocking_reloads_answer_crosses_from_the_publication_it_waits_for() -> None:
    # Joined at 0.1 s with the playlist listing the part published at 0.0 s: the first reload (sent at
    # once, at the server at 0.2 s) waits for the part at 0.5 s, its 4 kB cross from then (40 ms), and
    # the next one goes out as it lands, held for 1.0 s.
    flow = _flow()
    assert flow.listed_by(0.5) == pytest.approx(0.54)
    assert flow.sent_s[1:3] == pytest.approx([0.5, 1.0])
    assert [first for first, _ in flow.planned[:2]] == pytest.approx([0.5, 1.0])


def test_a_reload_answered_with_a_media_transfer_shares_the_link() -> None:
    # A 20 kB part from its publication at 0.5 s crosses with the 4 kB playlist answered then: the
    # playlist lands after 8 kB (twice its bytes), the part after both (24 kB).
    flow = _flow()
    flow.advance(0.5)
    assert flow.transfer(0.5, 20_000) == pytest.approx(0.74)
    assert flow.listed_s[1] == pytest.approx(0.58)
    # A 1 kB part gets its share: it ends after 2 kB, the playlist after both.
    flow = _flow()
    flow.advance(0.5)
    assert flow.transfer(0.5, 1_000) == pytest.approx(0.52)
    assert flow.listed_by(0.5) == pytest.approx(0.55)


def test_no_playlist_lists_what_is_never_published() -> None:
    # An infinite publication time (a part that never comes): answered at once, not by crossing
    # reloads forever.
    flow = _flow()
    assert flow.listed_by(math.inf) == -math.inf
    assert flow.listed_by(0.5) == pytest.approx(0.54)  # the flow is untouched by the question


def test_crossed_by_asks_about_the_past_without_timing_the_future() -> None:
    flow = _flow()
    assert not flow.crossed_by(0.5, 0.53)  # still crossing
    assert flow.crossed_by(0.5, 0.6)
    assert not flow.crossed_by(1.0, 0.6)  # not yet answered
    end = flow.transfer(1.0, 20_000)  # so the next answer still shares with the media after the question
    assert end == pytest.approx(1.24) and flow.listed_by(1.0) == pytest.approx(1.08)


def test_the_joins_reloads_cross_one_after_another() -> None:
    # A plain reload at 0.1 s (answered at 0.2 s, landed 0.24 s), then one blocking for the part its
    # answer hinted (0.5 s): joined once it has landed.
    flow = _flow(join_reloads=2)
    assert flow.joined_s == pytest.approx(0.54) and flow.joined_with == 0
    assert flow.listed_s[:2] == pytest.approx([0.24, 0.54])


def test_polls_come_a_target_duration_apart_or_half_of_one_after_nothing_new() -> None:
    # A 1.5 s target on 2 s segments: now and then a poll lists no new segment, and the next comes
    # half a target later (RFC 8216 6.3.4); each after the last landed, a round trip and 40 ms of bytes.
    flow = _flow("poll", period_s=1.5, start_s=0.0)
    flow.advance(20.0)
    gaps = [round(b - a, 6) for a, b in zip(flow.listed_s[1:], flow.listed_s[2:], strict=False)]
    assert set(gaps) == {1.64, 0.89} and gaps.count(1.64) > gaps.count(0.89)
