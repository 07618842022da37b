"""L2A-LL and LoL+: the parts of dash.js's rules that can be checked by hand."""

from __future__ import annotations

import pytest

import abr
from abr.algorithms.l2a import simplex_projection
from abr.types import Download, Ladder, Observation

LADDER = Ladder(bitrates_bps=(200_000, 600_000, 1_000_000), segment_duration_s=0.5)


def obs(downloads: tuple[Download, ...], *, buffer_s: float, last: int | None, latency_s: float = 1.0,
        index: int = 10) -> Observation:
    return Observation(time_s=float(index), buffer_s=buffer_s, segment_index=index, segment_count=1000, ladder=LADDER,
                       last_quality=last, downloads=downloads, latency_s=latency_s, playback_rate=1.0)


def chunked(rate_bps: float, index: int, quality: int = 0) -> Download:
    size = int(LADDER.bitrates_bps[quality] * 0.5 / 8)
    return Download(segment_index=index, quality=quality, size_bytes=size, duration_s=0.5, ttfb_s=0.02,
                    start_time_s=index * 0.5, active_s=size * 8 / rate_bps)


@pytest.mark.parametrize(("values", "expected"), [
    ([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]),  # already on the simplex
    ([2.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    ([0.6, 0.6, 0.0], [0.5, 0.5, 0.0]),
    ([-1.0, 0.2, 0.4], [0.0, 0.4, 0.6]),
])
def test_simplex_projection(values: list[float], expected: list[float]) -> None:
    projected = simplex_projection(values)
    assert projected == pytest.approx(expected)
    assert sum(projected) == pytest.approx(1.0)


def run(name: str, rates_bps: list[float], *, buffer_s: float = 1.2) -> list[int]:
    algorithm = abr.make(name)
    downloads: tuple[Download, ...] = ()
    qualities = []
    last = None
    for i, rate in enumerate(rates_bps):
        decision = algorithm.decide(obs(downloads[-20:], buffer_s=buffer_s, last=last, index=i))
        assert decision.reason
        qualities.append(decision.quality)
        last = decision.quality
        downloads = (*downloads, chunked(rate, i, decision.quality))
    return qualities


def test_l2a_climbs_one_rung_at_a_time_and_drops_when_the_link_does() -> None:
    qualities = run("l2a", [5e6] * 30 + [300e3] * 30)
    steady = qualities[2:30]
    assert all(b - a <= 1 for a, b in zip(steady, steady[1:]))  # stepwise ascent
    assert max(qualities[:30]) == LADDER.top
    assert qualities[-1] == 0  # 300 kbit/s cannot carry 600 kbit/s


def test_lolp_down_shifts_when_the_buffer_is_low() -> None:
    algorithm = abr.make("lolp")
    downloads = tuple(chunked(2e6, i, 2) for i in range(5))
    # 0.2 s of buffer and 1 Mbit/s segments at 1.8 Mbit/s safe: 0.28 s to fetch, under the 0.3 s minimum.
    decision = algorithm.decide(obs(downloads, buffer_s=0.2, last=2))
    assert decision.quality < 2
    assert "buffer low" in decision.reason


def test_lolp_prefers_high_rungs_on_a_fast_link_and_low_ones_on_a_slow_one() -> None:
    fast = run("lolp", [5e6] * 40)
    slow = run("lolp", [250e3] * 40)
    assert fast[-1] == LADDER.top
    assert slow[-1] == 0


def test_lolp_is_deterministic_for_a_seed() -> None:
    assert run("lolp", [1e6, 3e6, 500e3] * 10) == run("lolp", [1e6, 3e6, 500e3] * 10)
