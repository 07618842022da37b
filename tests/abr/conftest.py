"""Shared fixtures for the ABR tests: ladders and builders of observations and download histories."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from abr.types import Download, Ladder, Observation

PENSIEVE_LADDER = Ladder(bitrates_bps=(300_000, 750_000, 1_200_000, 1_850_000, 2_850_000, 4_300_000),
                         segment_duration_s=4.0)

ObsFactory = Callable[..., Observation]
HistoryFactory = Callable[..., tuple[Download, ...]]


@pytest.fixture
def ladder() -> Ladder:
    """Pensieve's Envivio ladder: 6 rungs, 4 s segments."""
    return PENSIEVE_LADDER


@pytest.fixture
def two_rung_ladder() -> Ladder:
    return Ladder(bitrates_bps=(1_000_000, 3_000_000), segment_duration_s=4.0)


@pytest.fixture
def history() -> HistoryFactory:
    """Downloads with the given throughputs (bit/s), one per 4 s segment, each 1 s long plus `ttfb_s`."""

    def build(rates_bps: Sequence[float], *, ttfb_s: float = 0.0, quality: int = 0,
              transfer_s: float = 1.0) -> tuple[Download, ...]:
        return tuple(Download(segment_index=i, quality=quality, size_bytes=round(rate * transfer_s / 8),
                              duration_s=transfer_s + ttfb_s, ttfb_s=ttfb_s, start_time_s=4.0 * i)
                     for i, rate in enumerate(rates_bps))

    return build


@pytest.fixture
def make_obs(ladder: Ladder) -> ObsFactory:
    """An observation of the Pensieve ladder mid-session; keyword arguments override any field."""

    def build(**changes: Any) -> Observation:
        downloads = changes.get("downloads", ())
        fields: dict[str, Any] = dict(
            time_s=4.0 * len(downloads) + 1.0, buffer_s=10.0, segment_index=len(downloads), segment_count=48,
            ladder=ladder, last_quality=downloads[-1].quality if downloads else None, downloads=downloads,
            next_sizes_bytes=tuple(tuple(int(b * ladder.segment_duration_s / 8) for b in ladder.bitrates_bps)
                                   for _ in range(6)),
        )
        fields.update(changes)
        return Observation(**fields)

    return build
