"""The interface records: `positional_maker` builds the same objects as the keyword constructors,
and `check_ladder` asks exactly the algorithms that declare a ladder check."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from abr.types import (
    Decision,
    Download,
    Ladder,
    LadderBound,
    Observation,
    UnsupportedLadder,
    check_ladder,
    positional_maker,
    supports_ladder,
)

LADDER = Ladder(bitrates_bps=(300_000, 750_000), segment_duration_s=4.0)


def distinct_values(cls: type) -> dict[str, object]:
    """A different value for every field, so a maker that puts one field's value into another fails."""
    samples: dict[str, object] = {
        "time_s": 1.5, "buffer_s": 2.5, "segment_index": 3, "segment_count": 40, "ladder": LADDER,
        "last_quality": 1, "downloads": (Download(segment_index=0, quality=0, size_bytes=9, duration_s=0.5),),
        "next_sizes_bytes": ((11, 12),), "rebuffering": True, "buffer_cap_s": 33.0, "next_quality": ((7.0, 8.0),),
        "latency_s": 4.25, "playback_rate": 1.05, "quality": 5, "size_bytes": 123_456, "duration_s": 0.75,
        "ttfb_s": 0.125, "start_time_s": 9.5, "abandoned": True, "active_s": 0.625, "delay_s": 0.375,
        "reason": "because",
    }
    return {f.name: samples[f.name] for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", [Observation, Download, Decision])
def test_positional_maker_builds_what_the_keyword_constructor_builds(cls: type) -> None:
    values = distinct_values(cls)
    names = list(values)[::-1]  # any order the caller names
    made = positional_maker(cls, *names)(*(values[name] for name in names))
    expected = cls(**values)
    assert made == expected and hash(made) == hash(expected) and repr(made) == repr(expected)
    assert type(made) is cls
    assert pickle.loads(pickle.dumps(made)) == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__(names[0], values[names[0]])


def test_positional_maker_fills_unnamed_fields_with_their_defaults() -> None:
    make = positional_maker(Download, "segment_index", "quality", "size_bytes", "duration_s")
    assert make(1, 2, 3, 0.5) == Download(segment_index=1, quality=2, size_bytes=3, duration_s=0.5)
    observation = positional_maker(Observation, "time_s", "buffer_s", "segment_index", "segment_count", "ladder",
                                   "last_quality")(0.0, 1.0, 2, 3, LADDER, None)
    assert observation == Observation(time_s=0.0, buffer_s=1.0, segment_index=2, segment_count=3, ladder=LADDER,
                                      last_quality=None)


def test_positional_maker_refuses_what_it_cannot_build() -> None:
    with pytest.raises(TypeError, match="segment_index has no default"):
        positional_maker(Download, "quality", "size_bytes", "duration_s")
    with pytest.raises(TypeError, match="no field"):
        positional_maker(Decision, "quality", "qualty")
    with pytest.raises(TypeError, match="named twice"):
        positional_maker(Decision, "quality", "quality")

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        x: int

    with pytest.raises(TypeError, match="not a slots dataclass"):
        positional_maker(NoSlots, "x")


class Bound:
    name = "bound"

    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=0)

    def check_ladder(self, ladder: Ladder) -> None:
        if len(ladder) != 3:
            raise UnsupportedLadder("three rungs only")


class Unbound:
    name = "unbound"
    check_ladder = None  # an attribute set to None does not declare a check (as the protocol treats it)

    def decide(self, obs: Observation) -> Decision:
        return Decision(quality=0)


@pytest.mark.parametrize("algorithm", [Bound(), Unbound(), object()])
def test_check_ladder_asks_what_the_protocol_would(algorithm: object) -> None:
    declares = isinstance(algorithm, LadderBound)
    assert supports_ladder(algorithm, LADDER) is not declares
    if declares:
        with pytest.raises(UnsupportedLadder, match="three rungs only"):
            check_ladder(algorithm, LADDER)
