"""The shared-link simulator: N sessions on one trace share its capacity evenly, conserve bytes, and
one player alone is today's simulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from abr.types import Ladder
from netsim.link import LinkModel
from netsim.trace import Trace
from player.research.sim import PROFILES, result_of, run_session
from player.research.sim_shared import (
    RESPONSE_HEADER_BYTES,
    SharedLinkDriver,
    run_shared,
    simulate_shared,
    transfer_bytes,
    transfer_end_s,
)
from player.session import PlaybackSession
from player.video import Video
from tests.player.conftest import Scripted

CONSTANT = Trace(name="1kB/s", durations_s=np.array([1000.0]), bandwidth_bps=np.array([8000.0]))
NO_RTT = dataclasses.replace(PROFILES["default"], rtt_s=0.0)


def _video(sizes: list[int]) -> Video:
    return Video(name="v", ladder=Ladder(bitrates_bps=(1_000_000,), segment_duration_s=4.0),
                 sizes_bytes=np.array(sizes)[:, None], segment_count=len(sizes))


def _drive(video: Video, trace: Trace, players: int, joins_s: list[float] | None = None) -> SharedLinkDriver:
    sessions = [PlaybackSession(Scripted(), video, NO_RTT.session) for _ in range(players)]
    driver = SharedLinkDriver(sessions, video, trace, NO_RTT, joins_s=joins_s)
    driver.drive()
    return driver


def test_two_players_on_one_link_each_get_half() -> None:
    driver = _drive(_video([4000]), CONSTANT, 2)
    for d in driver.drivers:
        (record,) = d.records
        assert record.download_s == pytest.approx(8.0)  # 4000 B at 500 B/s each


def test_a_player_alone_on_the_link_gets_all_of_it_until_another_joins() -> None:
    driver = _drive(_video([4000]), CONSTANT, 2, joins_s=[0.0, 2.0])
    first, second = (d.records[0] for d in driver.drivers)
    # Alone 0-2 s: 2000 B; shared 2-6 s: 2000 B each; the second alone 6-8 s: its last 2000 B.
    assert first.download_s == pytest.approx(6.0)
    assert second.request_time_s == pytest.approx(0.0)  # its own session clock starts at its join
    assert second.download_s == pytest.approx(6.0)
    assert driver.now_s == pytest.approx(8.0)


def test_each_response_carries_its_header_bytes_on_the_shared_link() -> None:
    # As through the shaper: 4000 B segments behind 400 B of status line and headers each, two players
    # at 500 B/s each, then the second segment's response again. Records keep the segments' sizes.
    sessions = [PlaybackSession(Scripted(), _video([4000, 4000]), NO_RTT.session) for _ in range(2)]
    driver = SharedLinkDriver(sessions, _video([4000, 4000]), CONSTANT, NO_RTT, header_bytes=400)
    driver.drive()
    for d in driver.drivers:
        assert [r.download_s for r in d.records] == pytest.approx([8.8, 8.8])
        assert [r.size_bytes for r in d.records] == [4000, 4000]
    assert driver.now_s == pytest.approx(17.6)
    with pytest.raises(ValueError, match="header bytes"):
        SharedLinkDriver([PlaybackSession(Scripted(), _video([1]), NO_RTT.session)], _video([1]), CONSTANT, NO_RTT,
                         header_bytes=-1)


def test_backlogged_players_use_the_whole_capacity_and_never_more(envivio: Video) -> None:
    # A trace far below the lowest rung: every player is always downloading (no buffer cap waits).
    trace = Trace(name="slow", durations_s=np.array([3.0, 5.0, 2.0]), bandwidth_bps=np.array([3e5, 1e5, 6e5]))
    for players in (2, 3, 5):
        driver = _drive(envivio, trace, players, joins_s=[0.5 * i for i in range(players)])
        link = LinkModel(trace)
        received = sum(int(envivio.sizes_bytes[r.segment_index, r.quality]) for d in driver.drivers for r in d.records)
        capacity = link.bytes_until(driver.now_s) - link.bytes_until(0.0)
        assert received == pytest.approx(capacity, rel=1e-9)


@pytest.mark.parametrize("abr", ["bba", "mpc-robust", "bola"])
def test_run_shared_uses_the_whole_link_at_most(envivio: Video, abr: str) -> None:
    trace = Trace(name="steps", durations_s=np.array([20.0, 20.0]), bandwidth_bps=np.array([6e6, 2e6]))
    result = run_shared([abr] * 4, envivio, trace, PROFILES["default"], join_spacing_s=3.0)
    f = result.fairness
    assert f.players == 4 and 0 < f.jain_bitrate <= 1 and 0 < f.utilisation <= 1 + 1e-9
    assert f.qoe_spread >= 0 and result.joins_s == (0.0, 3.0, 6.0, 9.0)
    assert [p.trace_offset_s for p in result.players] == [0.0, 3.0, 6.0, 9.0]
    total = sum(transfer_bytes(p) for p in result.players)
    end = max(j + transfer_end_s(p) for p, j in zip(result.players, result.joins_s))
    assert total <= LinkModel(trace).bytes_until(end) * (1 + 1e-9)


@pytest.mark.parametrize("abr", ["bba", "mpc-robust", "bola"])
def test_one_player_is_todays_simulator(envivio: Video, abr: str) -> None:
    trace = Trace(name="steps", durations_s=np.array([20.0, 20.0]), bandwidth_bps=np.array([3e6, 1e6]))
    prof = PROFILES["default"]
    (shared,) = simulate_shared(abr, envivio, [trace], prof, players=1, offsets_s=[5.0])
    alone = run_session(abr, envivio, trace, prof, offset_s=5.0)
    (player,) = shared.players
    assert player.metrics == alone.metrics and np.array_equal(player.download_s, alone.download_s)
    assert shared.fairness.jain_bitrate == 1.0 and shared.fairness.qoe_spread == 0.0


def test_the_shared_driver_with_one_session_matches_the_single_link_model(envivio: Video) -> None:
    trace = Trace(name="steps", durations_s=np.array([7.0, 13.0]), bandwidth_bps=np.array([3e6, 1e6]))
    prof = PROFILES["default"]
    session = PlaybackSession(prof.make_abr("bba", envivio), envivio, prof.session)
    driver = SharedLinkDriver([session], envivio, trace, prof)
    driver.drive()
    shared = result_of("bba", envivio, trace, prof, session, driver.drivers[0].records, offset_s=0.0,
                       models=prof.qoe_models(envivio))
    alone = run_session("bba", envivio, trace, prof)
    np.testing.assert_array_equal(shared.qualities, alone.qualities)
    np.testing.assert_allclose(shared.download_s, alone.download_s, rtol=1e-9)


def test_bad_groups_are_clear_errors(envivio: Video) -> None:
    prof = PROFILES["default"]
    with pytest.raises(ValueError, match="at least one session"):
        SharedLinkDriver([], envivio, CONSTANT, prof)
    sessions = [PlaybackSession(Scripted(), envivio, prof.session) for _ in range(2)]
    with pytest.raises(ValueError, match="one join time"):
        SharedLinkDriver(sessions, envivio, CONSTANT, prof, joins_s=[0.0])
    with pytest.raises(ValueError, match="players per link"):
        simulate_shared("bba", envivio, [CONSTANT], prof, players=0)
    with pytest.raises(ValueError, match="join spacing"):
        run_shared(["bba"] * 2, envivio, CONSTANT, prof, join_spacing_s=-1.0)
    for joins in ([0.0], [0.5, 1.0], [0.0, -1.0]):
        with pytest.raises(ValueError, match="one join time >= 0 s per player, the first 0"):
            run_shared(["bba"] * 2, envivio, CONSTANT, prof, joins_s=joins)


def test_explicit_joins_are_the_spacing_they_spell_and_move_each_player_alone(envivio: Video) -> None:
    from netsim.sources import open_traces
    from player.bundled import TRACES_DIR

    (trace,) = open_traces([str(TRACES_DIR / "norway_bus_1")])
    prof = PROFILES["default"]
    spaced = run_shared(["bba"] * 3, envivio, trace, prof, join_spacing_s=2.0)
    same = run_shared(["bba"] * 3, envivio, trace, prof, joins_s=[0.0, 2.0, 4.0])
    assert same.joins_s == spaced.joins_s and same.fairness == spaced.fairness
    for a, b in zip(same.players, spaced.players):
        np.testing.assert_array_equal(a.download_s, b.download_s)
    moved = run_shared(["bba"] * 3, envivio, trace, prof, joins_s=[0.0, 2.0, 4.1])
    assert moved.joins_s == (0.0, 2.0, 4.1) and moved.players[2].trace_offset_s == pytest.approx(4.1)
    np.testing.assert_array_equal(moved.players[0].download_s[:1], spaced.players[0].download_s[:1])


@pytest.mark.parametrize("abr", ["bba", "bola", "mpc-robust"])
@pytest.mark.parametrize("spacing_s", [0.7, 2.0])
def test_staggered_joins_terminate_whatever_the_float_rounding_of_the_shifts(envivio: Video, abr: str,
                                                                            spacing_s: float) -> None:
    # Regression: a later player's buffer-full wake-up, moved onto the link clock and back, landed a
    # rounding error before itself and the driver spun at that instant forever.
    from netsim.sources import open_traces
    from player.bundled import TRACES_DIR

    (trace,) = open_traces([str(TRACES_DIR / "norway_bus_1")])
    result = run_shared([abr] * 3, envivio, trace, PROFILES["default"], join_spacing_s=spacing_s)
    assert all(p.metrics.segments == envivio.segment_count for p in result.players)


@pytest.mark.parametrize("abr", ["bba", "bola", "mpc-robust"])
def test_n_players_on_an_n_times_wider_link_each_play_as_one_player_alone(envivio: Video, abr: str) -> None:
    # Processor sharing: N identical players starting together on N x the bandwidth each see exactly
    # the trace, so each session is the single-player session (whose link model is another code path,
    # and which counts no header bytes).
    from netsim.sources import open_traces
    from player.bundled import TRACES_DIR

    (trace,) = open_traces([str(TRACES_DIR / "norway_ferry_10")])
    wide = Trace(name="wide", durations_s=trace.durations_s, bandwidth_bps=trace.bandwidth_bps * 3)
    alone = run_session(abr, envivio, trace, NO_RTT)
    shared = run_shared([abr] * 3, envivio, wide, NO_RTT, header_bytes=0)
    for player in shared.players:
        np.testing.assert_array_equal(player.qualities, alone.qualities)
        np.testing.assert_allclose(player.download_s, alone.download_s, rtol=1e-6, atol=1e-9)
    assert shared.fairness.jain_bitrate == pytest.approx(1.0) and shared.fairness.qoe_spread == pytest.approx(0.0)


def test_an_abandoning_abr_gives_up_downloads_on_a_shared_link(envivio: Video) -> None:
    # The first BOLA player, alone for 2 s on the link, overestimates it; once the second joins, its
    # high-rung downloads slow down and it abandons some, as the headless player behind a shaper does.
    from netsim.sources import open_traces
    from player.bundled import TRACES_DIR

    (trace,) = open_traces([str(TRACES_DIR / "norway_bus_1")])
    wide = Trace(name="wide", durations_s=trace.durations_s, bandwidth_bps=trace.bandwidth_bps * 2)
    result = run_shared(["bola"] * 2, envivio, wide, PROFILES["default"], join_spacing_s=2.0)
    assert sum(p.abandoned for p in result.players) > 0
    assert all(p.metrics.segments == envivio.segment_count for p in result.players)
    no_abandon = run_shared(["bola"] * 2, envivio, wide, dataclasses.replace(PROFILES["default"], abandonment=False),
                            join_spacing_s=2.0)
    assert sum(p.abandoned for p in no_abandon.players) == 0


@pytest.mark.parametrize("abr", ["bba", "bola"])
def test_header_bytes_alone_are_the_shared_drivers_with_one_session(envivio: Video, abr: str) -> None:
    # `response_header_bytes` in the single-link simulator (both engines, abandonment included) is
    # what the shared link charges each response: one session on it is the same session alone.
    from player.research.sim import run_batch

    trace = Trace(name="steps", durations_s=np.array([7.0, 13.0]), bandwidth_bps=np.array([3e6, 0.4e6]))
    prof = PROFILES["default"].with_player(response_header_bytes=RESPONSE_HEADER_BYTES)
    session = PlaybackSession(prof.make_abr(abr, envivio), envivio, prof.session)
    driver = SharedLinkDriver([session], envivio, trace, prof, header_bytes=RESPONSE_HEADER_BYTES)
    driver.drive()
    shared = result_of(abr, envivio, trace, prof, session, driver.drivers[0].records, offset_s=0.0,
                       models=prof.qoe_models(envivio), abandoned=driver.drivers[0].abandoned)
    alone = run_session(abr, envivio, trace, prof)
    without = run_session(abr, envivio, trace, PROFILES["default"])
    np.testing.assert_array_equal(shared.qualities, alone.qualities)
    np.testing.assert_allclose(shared.download_s, alone.download_s, rtol=1e-9)
    assert alone.abandoned == shared.abandoned
    assert not np.allclose(alone.download_s, without.download_s)  # 364 bytes more per response
    if abr == "bba":  # the lock-step engine charges them too
        (batch,) = run_batch(abr, envivio, [trace], prof)
        np.testing.assert_allclose(batch.download_s, alone.download_s, rtol=1e-9)
    with pytest.raises(ValueError, match="response header bytes"):
        PROFILES["default"].with_player(response_header_bytes=-1)
