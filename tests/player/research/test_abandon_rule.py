"""One abandonment rule (player.abandon) in every driver: the simulator on a link of its own
(`SessionDriver`), on a shared link (`SharedLinkDriver`, `AbandonChecks`) and the rule's own walk on
the link model (`link_checks`, which the headless player is held to in
tests/player/client/test_abandon_checks.py) offer the same checks, times and bytes, for the same
downloads, on either schedule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abr.types import Decision, Ladder, Observation, Progress
from netsim.link import LinkModel
from netsim.trace import Trace
from player.abandon import AbandonCheck, AbandonRule
from player.research.sim import PROFILES, run_session
from player.research.sim_abandon import link_checks
from player.research.sim_shared import SharedLinkDriver
from player.session import PlaybackSession
from player.video import Video

DEFAULT = PROFILES["default"]
LADDER = Ladder(bitrates_bps=(300_000, 1_200_000, 2_400_000), segment_duration_s=1.0)


class Watcher:
    """Top rung on odd segments, bottom on even ones; records every check, gives up the `give_up`-th."""

    name = "watcher"

    def __init__(self, give_up: int = 0) -> None:
        self.give_up = give_up
        self.seen: list[tuple[int, int, float, int]] = []  # (segment, quality, elapsed s, bytes)

    def decide(self, obs: Observation) -> Decision:
        top = obs.segment_index % 2 == 1 and not any(d.abandoned and d.segment_index == obs.segment_index
                                                     for d in obs.downloads)
        return Decision(quality=obs.ladder.top if top else 0)

    def should_abandon(self, progress: Progress) -> Decision | None:
        self.seen.append((progress.segment_index, progress.quality, progress.elapsed_s, progress.bytes_received))
        return Decision(quality=0) if len(self.seen) == self.give_up else None


def _video(segments: int) -> Video:
    sizes = np.array([[int(r * 1.0 / 8) for r in LADDER.bitrates_bps]] * segments, dtype=np.int64)
    return Video(name="v", ladder=LADDER, sizes_bytes=sizes, segment_count=segments)


def _alone(video: Video, trace: Trace, prof: object, give_up: int) -> tuple[Watcher, object]:
    abr = Watcher(give_up)
    result = run_session("watcher", video, trace, prof, abr=abr)  # type: ignore[arg-type]
    return abr, result


def _shared(video: Video, trace: Trace, prof: object, give_up: int) -> Watcher:
    abr = Watcher(give_up)
    session = PlaybackSession(abr, video, prof.session)  # type: ignore[attr-defined]
    SharedLinkDriver([session], video, trace, prof).drive()  # type: ignore[arg-type]
    return abr


traces = st.lists(st.tuples(st.floats(0.03, 0.6), st.sampled_from([0.0, 0.5e6, 1.5e6, 3e6, 6e6])),
                  min_size=2, max_size=12).filter(lambda steps: any(rate > 0 for _, rate in steps))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(steps=traces, schedule=st.sampled_from(["grid", "sabre"]), check_s=st.floats(0.02, 0.3),
       check_bytes=st.integers(1, 40_000), give_up=st.integers(0, 30))
def test_every_simulator_driver_offers_the_rules_checks(steps: list[tuple[float, float]], schedule: str,
                                                        check_s: float, check_bytes: int, give_up: int) -> None:
    trace = Trace(name="t", durations_s=np.array([d for d, _ in steps]), bandwidth_bps=np.array([r for _, r in steps]))
    prof = dataclasses.replace(DEFAULT, abandon_check_s=check_s, abandon_check_bytes=check_bytes,
                               abandon_schedule=schedule)
    video = _video(5)
    alone, _ = _alone(video, trace, prof, give_up)
    shared = _shared(video, trace, prof, give_up)
    assert [s[:2] for s in shared.seen] == [s[:2] for s in alone.seen]
    assert [s[2] for s in shared.seen] == pytest.approx([s[2] for s in alone.seen], abs=1e-9)
    assert [s[3] for s in shared.seen] == pytest.approx([s[3] for s in alone.seen], abs=1)
    # And each download's checks (none given up) are the rule's walk on the link model from its request.
    link, rule = LinkModel(trace), prof.abandon_rule
    never, result = _alone(video, trace, prof, 0)
    seen = iter(never.seen)
    for k in range(len(result.qualities)):  # type: ignore[attr-defined]
        start, size = float(result.request_time_s[k]), int(result.size_bytes[k])  # type: ignore[attr-defined]
        finish = start + float(result.download_s[k])  # type: ignore[attr-defined]
        walk = [(t - start, b) for t, b in link_checks(rule, link, size_bytes=size, start_s=start,
                                                       latency_s=DEFAULT.rtt_s, finish_s=finish)]
        offered = [next(seen)[2:] for _ in walk]  # (elapsed s, bytes)
        assert [t for t, _ in offered] == pytest.approx([t for t, _ in walk], abs=1e-9)
        assert [b for _, b in offered] == pytest.approx([b for _, b in walk], abs=1)


def test_the_grid_offers_at_request_plus_k_intervals_and_skips_a_check_short_of_bytes() -> None:
    check = AbandonCheck(AbandonRule(check_s=0.05, check_bytes=1000), 10.0)
    assert check.due_s == pytest.approx(10.05)
    assert not check.offer_at(10.05, 400)  # short: skipped, the grid goes on
    assert check.due_s == pytest.approx(10.10) and not check.waiting
    assert check.offer_at(10.10, 1000)
    assert not check.offer_at(10.15, 1999) and check.offer_at(10.20, 2000)  # 1000 more than the last offer
    assert check.due_s == pytest.approx(10.25)


def test_sabres_schedule_waits_for_the_bytes_and_goes_on_from_there() -> None:
    check = AbandonCheck(AbandonRule(check_s=0.05, check_bytes=1000, schedule="sabre"), 10.0)
    assert not check.offer_at(10.05, 400) and check.waiting and check.wanted == 1000
    assert check.offer_at(10.09, 1000) and not check.waiting
    assert check.due_s == pytest.approx(10.14)


def test_a_rule_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="interval > 0 s"):
        AbandonRule(check_s=0.0)
    with pytest.raises(ValueError, match="schedule"):
        AbandonRule(schedule="every-chunk")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schedule"):
        dataclasses.replace(DEFAULT, abandon_schedule="nope")
    assert AbandonRule().on_clock(10.0).check_s == pytest.approx(0.005)
