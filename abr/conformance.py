"""Conformance checks that every registered algorithm must pass (scikit-learn's `parametrize_with_checks`).

A check is a named function `(algorithm name) -> None` that raises AssertionError saying what broke.
Universal checks apply to every algorithm. The others apply where an algorithm's class declares the
matching tag in `conformance_tags`:

    bandwidth-monotone  a faster download history never lowers a fresh instance's decision
    buffer-monotone     a fuller buffer never lowers the decision (same history before it)
    batch               `decide_batch` chooses exactly what `decide` chooses, session by session

An algorithm may list parameter sets in `conformance_variants` (default: only its defaults); every
check runs on each variant whose instance carries the check's tag. All inputs come from seeded
generators, so a failure reproduces.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from abr.registry import make
from abr.types import (
    Abandoning,
    AbrAlgorithm,
    BatchAbr,
    BatchObservation,
    Decision,
    Download,
    Ladder,
    Observation,
    Progress,
    supports_ladder,
)

LADDERS: dict[str, Ladder] = {
    "1-rung": Ladder(bitrates_bps=(1_000_000,), segment_duration_s=4.0),
    "pensieve": Ladder(bitrates_bps=(300_000, 750_000, 1_200_000, 1_850_000, 2_850_000, 4_300_000),
                       segment_duration_s=4.0),
    "10-rung": Ladder(bitrates_bps=(200_000, 400_000, 700_000, 1_100_000, 1_600_000, 2_500_000, 4_000_000,
                                    6_000_000, 9_000_000, 14_000_000), segment_duration_s=2.0),
}
SEEDS = range(6)
# The toy sessions below (`closed_loop`, `lock_step`) keep their own few-line buffer rule instead of
# the simulator's `player.research.sim.buffer_step`: `abr` imports nothing of ours but `abr`, and the
# buffer rule is the player's, not a decision. They only need plausible observations (an exact cap,
# no sleep quantum, no stall accounting), not the simulator's numbers.
BUFFER_CAP_S = 60.0


Factory = Callable[..., AbrAlgorithm]


@dataclass(frozen=True, slots=True)
class Check:
    """A named conformance check; `tag` is the algorithm tag it needs (None: every algorithm).

    `run(name)` checks the registered algorithm; `run(name, factory=f)` checks what `f(**params)` builds
    under that name instead (how the tests show that each check catches a broken algorithm)."""

    name: str
    run: Callable[..., None]
    tag: str | None = None


# -- instances and variants --------------------------------------------------------------------------------


def _factory(name: str, factory: Factory | None) -> Factory:
    return factory if factory is not None else (lambda **params: make(name, **params))


def variants(name: str, factory: Factory | None = None) -> tuple[Mapping[str, Any], ...]:
    """The parameter sets checked for `name`: its class's `conformance_variants`, else the defaults."""
    return tuple(getattr(_factory(name, factory)(), "conformance_variants", ({},)))


def tags(name: str, params: Mapping[str, Any] | None = None, factory: Factory | None = None) -> frozenset[str]:
    return frozenset(getattr(_factory(name, factory)(**(params or {})), "conformance_tags", frozenset()))


def _variants_with(name: str, tag: str | None, factory: Factory | None) -> list[Mapping[str, Any]]:
    return [v for v in variants(name, factory) if tag is None or tag in tags(name, v, factory)]


def _ladders(algorithm: AbrAlgorithm) -> list[tuple[str, Ladder]]:
    """The test ladders the algorithm decides on (all, unless it declares `check_ladder`)."""
    return [(name, ladder) for name, ladder in LADDERS.items() if supports_ladder(algorithm, ladder)]


def _label(name: str, params: Mapping[str, Any]) -> str:
    return name + (f"({', '.join(f'{k}={v!r}' for k, v in params.items())})" if params else "")


# -- generated inputs ------------------------------------------------------------------------------------------


def _video(ladder: Ladder, rng: np.random.Generator, segments: int) -> np.ndarray:
    """(segments + 1, Q) sizes around bitrate x duration; the extra row is look-ahead only."""
    nominal = np.asarray(ladder.bitrates_bps, dtype=np.float64) * ladder.segment_duration_s / 8.0
    return np.maximum(1, (nominal[None, :] * rng.uniform(0.6, 1.4, (segments + 1, 1))).astype(np.int64))


def _throughput_bps(ladder: Ladder, rng: np.random.Generator, mean_bps: float) -> float:
    """A sample around `mean_bps`, with occasional extremes (a dead link, a LAN burst)."""
    roll = rng.uniform()
    if roll < 0.04:
        return 1e3
    if roll < 0.08:
        return 1e10
    return mean_bps * float(rng.lognormal(0.0, 0.7))


def _upcoming(sizes: np.ndarray, index: int, with_sizes: bool) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(row) for row in sizes[index:index + 6].tolist()) if with_sizes else ()


def closed_loop(algorithm: AbrAlgorithm, ladder: Ladder, seed: int, *, segments: int = 30) -> Iterator[
        tuple[Observation | Progress, Decision | None]]:
    """A toy session driven by the algorithm's own decisions on a random link: yields every input the
    algorithm saw with what it answered (abandon probes included for `Abandoning` algorithms)."""
    rng = np.random.default_rng(seed)
    sizes = _video(ladder, rng, segments)
    mean_bps = float(np.median(ladder.bitrates_bps)) * float(rng.lognormal(0.0, 1.0))
    forced_first = bool(rng.integers(2))
    with_sizes = rng.uniform() < 0.8
    history: deque[Download] = deque(maxlen=int(rng.choice([3, 8, 20])))
    time_s = buffer_s = 0.0
    last: int | None = None
    index = 0
    while index < segments:
        if buffer_s > BUFFER_CAP_S:
            time_s += buffer_s - BUFFER_CAP_S
            buffer_s = BUFFER_CAP_S
        obs = Observation(time_s=time_s, buffer_s=buffer_s, segment_index=index, segment_count=segments,
                          ladder=ladder, last_quality=last, downloads=tuple(history),
                          next_sizes_bytes=_upcoming(sizes, index, with_sizes), rebuffering=buffer_s == 0,
                          buffer_cap_s=BUFFER_CAP_S)
        if index == 0 and forced_first:
            quality = min(1, ladder.top)
        else:
            decision = algorithm.decide(obs)
            yield obs, decision
            quality = decision.quality
            if not 0 <= quality <= ladder.top:
                return  # the range check reports it; nothing sensible to download
            if 0 < decision.delay_s < math.inf:
                time_s += decision.delay_s
                buffer_s = max(buffer_s - decision.delay_s, 0.0)
        size = int(sizes[index, quality])
        ttfb_s = float(rng.uniform(0.0, 0.2))
        duration_s = ttfb_s + size * 8.0 / _throughput_bps(ladder, rng, mean_bps)
        abandoned_at = None
        if isinstance(algorithm, Abandoning):
            for fraction in np.linspace(0.1, 0.9, 9):
                elapsed_s = duration_s * fraction
                received = int(size * max(0.0, (elapsed_s - ttfb_s) / (duration_s - ttfb_s)))
                progress = Progress(time_s=time_s + elapsed_s, buffer_s=max(buffer_s - elapsed_s, 0.0),
                                    segment_index=index, quality=quality, bytes_received=received, size_bytes=size,
                                    elapsed_s=elapsed_s, ladder=ladder, next_sizes_bytes=obs.next_sizes_bytes)
                answer = algorithm.should_abandon(progress)
                yield progress, answer
                if answer is not None:
                    abandoned_at = (elapsed_s, received)
                    break
        if abandoned_at is not None:
            elapsed_s, received = abandoned_at
            history.append(Download(segment_index=index, quality=quality, size_bytes=received, duration_s=elapsed_s,
                                    ttfb_s=ttfb_s, start_time_s=time_s, abandoned=True))
            time_s += elapsed_s
            buffer_s = max(buffer_s - elapsed_s, 0.0)
            continue  # decide the same segment again
        history.append(Download(segment_index=index, quality=quality, size_bytes=size, duration_s=duration_s,
                                ttfb_s=ttfb_s, start_time_s=time_s))
        time_s += duration_s
        buffer_s = max(buffer_s - duration_s, 0.0) + ladder.segment_duration_s
        last = quality
        index += 1


def edge_observations() -> Iterator[tuple[str, Observation]]:
    """Single observations at the edges, each meant for a fresh instance."""
    for ladder_name, ladder in LADDERS.items():
        top = ladder.top
        size = int(ladder.bitrates_bps[-1] * ladder.segment_duration_s / 8)
        sizes = tuple(tuple(int(b * ladder.segment_duration_s / 8) for b in ladder.bitrates_bps) for _ in range(6))

        def obs(**changes: Any) -> Observation:
            base = dict(time_s=40.0, buffer_s=8.0, segment_index=10, segment_count=48, ladder=ladder, last_quality=top,
                        downloads=tuple(Download(segment_index=i, quality=top, size_bytes=size, duration_s=2.0,
                                                 ttfb_s=0.05, start_time_s=4.0 * i) for i in range(8, 10)),
                        next_sizes_bytes=sizes)
            return Observation(**{**base, **changes})  # type: ignore[arg-type]

        fast = (Download(segment_index=9, quality=top, size_bytes=size, duration_s=1e-6, start_time_s=36.0),)
        slow = (Download(segment_index=9, quality=0, size_bytes=1, duration_s=30.0, ttfb_s=29.0, start_time_s=10.0),)
        yield from (
            (f"{ladder_name}: empty history, zero buffer",
             obs(time_s=0.0, buffer_s=0.0, segment_index=0, last_quality=None, downloads=(), rebuffering=True)),
            (f"{ladder_name}: zero buffer while stalled", obs(buffer_s=0.0, rebuffering=True)),
            (f"{ladder_name}: huge buffer", obs(buffer_s=1e4)),
            (f"{ladder_name}: last segment", obs(segment_index=47, next_sizes_bytes=sizes[:1])),
            (f"{ladder_name}: last segment, no look-ahead row", obs(segment_index=47, next_sizes_bytes=())),
            (f"{ladder_name}: missing next sizes", obs(next_sizes_bytes=())),
            (f"{ladder_name}: ragged next sizes", obs(next_sizes_bytes=(sizes[0], sizes[1][:1]))),
            (f"{ladder_name}: near-instant download", obs(downloads=fast)),
            (f"{ladder_name}: one byte in 30 s", obs(downloads=slow, last_quality=0)),
            (f"{ladder_name}: first segment of a one-segment video",
             obs(segment_index=0, segment_count=1, downloads=(), last_quality=None, buffer_s=0.0)),
        )


def _inputs(algorithm_factory: Callable[[], AbrAlgorithm]) -> Iterator[
        tuple[str, Observation | Progress, Decision | None, Ladder]]:
    """Everything the universal checks look at: edge observations and closed-loop sessions."""
    supported = {name for name, _ in _ladders(algorithm_factory())}
    for label, obs in edge_observations():
        if label.partition(":")[0] in supported:
            yield label, obs, algorithm_factory().decide(obs), obs.ladder
    for ladder_name, ladder in _ladders(algorithm_factory()):
        for seed in SEEDS:
            for step, (given, answer) in enumerate(closed_loop(algorithm_factory(), ladder, seed)):
                yield f"{ladder_name} session seed {seed} step {step}", given, answer, ladder


# -- universal checks --------------------------------------------------------------------------------------------


def check_decisions_in_range(name: str, *, factory: Factory | None = None) -> None:
    """Every quality is a valid index and every delay a finite non-negative time, on edge cases and in
    closed-loop sessions; abandon decisions too."""
    build = _factory(name, factory)
    for params in variants(name, factory):
        for label, given, answer, ladder in _inputs(lambda: build(**params)):
            if answer is None:
                continue
            assert isinstance(answer, Decision), f"{_label(name, params)} returned {answer!r}, not a Decision ({label})"
            assert isinstance(answer.quality, (int, np.integer)), \
                f"{_label(name, params)} returned quality {answer.quality!r} of type {type(answer.quality).__name__}"
            assert 0 <= answer.quality <= ladder.top, \
                f"{_label(name, params)} chose quality {answer.quality} outside 0..{ladder.top} ({label})"
            assert math.isfinite(answer.delay_s) and answer.delay_s >= 0, \
                f"{_label(name, params)} asked for a delay of {answer.delay_s} s ({label})"
            if isinstance(given, Progress):
                assert answer.quality < given.quality, (f"{_label(name, params)} abandoned quality {given.quality} "
                                                        f"for quality {answer.quality}, not a lower one ({label})")


def check_reasons_given(name: str, *, factory: Factory | None = None) -> None:
    """Every decision explains itself (the reason goes into the event log and the plots)."""
    build = _factory(name, factory)
    for params in variants(name, factory):
        for label, _given, answer, _ladder in _inputs(lambda: build(**params)):
            if answer is not None:
                assert isinstance(answer.reason, str) and answer.reason.strip(), \
                    f"{_label(name, params)} gave an empty reason for quality {answer.quality} ({label})"


def check_deterministic(name: str, *, factory: Factory | None = None) -> None:
    """Fresh instances fed the same observations decide the same (quality, delay and reason)."""
    build = _factory(name, factory)
    for params in variants(name, factory):
        for ladder_name, ladder in _ladders(build(**params)):
            for seed in SEEDS:
                first = list(closed_loop(build(**params), ladder, seed))
                replay = build(**params)
                for step, (given, answer) in enumerate(first):
                    again: Decision | None
                    if isinstance(given, Observation):
                        again = replay.decide(given)
                    else:
                        again = cast(Abandoning, replay).should_abandon(given)
                    assert again == answer, (f"{_label(name, params)} is not deterministic on {ladder_name} seed "
                                             f"{seed} step {step}: first {answer}, then {again}")


# -- tagged checks --------------------------------------------------------------------------------------------------


def _scaled_history(rng: np.random.Generator, ladder: Ladder, count: int, speedup: float) -> tuple[Download, ...]:
    """`count` downloads whose transfer (not TTFB) is `speedup` times faster; same draws for every speedup."""
    out = []
    for i in range(count):
        quality = int(rng.integers(len(ladder)))
        size = int(ladder.bitrates_bps[quality] * ladder.segment_duration_s / 8 * rng.uniform(0.5, 1.5))
        ttfb_s = float(rng.uniform(0.0, 0.1))
        transfer_s = float(rng.uniform(0.2, 8.0))
        out.append(Download(segment_index=i, quality=quality, size_bytes=size, duration_s=ttfb_s + transfer_s / speedup,
                            ttfb_s=ttfb_s, start_time_s=4.0 * i))
    return tuple(out)


SPEEDUPS = (0.01, 0.1, 0.3, 0.7, 1.0, 1.5, 3.0, 10.0, 100.0)


def check_monotone_in_bandwidth(name: str, *, factory: Factory | None = None) -> None:
    """With everything else equal, a faster download history never gives a fresh instance a lower quality."""
    build = _factory(name, factory)
    for params in _variants_with(name, "bandwidth-monotone", factory):
        for ladder_name, ladder in _ladders(build(**params)):
            for seed in range(40):
                setup = np.random.default_rng(1000 + seed)
                count = int(setup.integers(1, 9))
                buffer_s = float(setup.choice([0.0, 2.0, 6.0, 11.0, 14.0, 25.0, 70.0]))
                last = int(setup.integers(len(ladder)))
                sizes = _video(ladder, setup, 6)
                history_seed = int(setup.integers(1 << 30))
                previous: tuple[float, int] | None = None
                for speedup in SPEEDUPS:
                    downloads = _scaled_history(np.random.default_rng(history_seed), ladder, count, speedup)
                    obs = Observation(time_s=4.0 * count + 1.0, buffer_s=buffer_s, segment_index=count,
                                      segment_count=count + 20, ladder=ladder, last_quality=last, downloads=downloads,
                                      next_sizes_bytes=_upcoming(sizes, 0, True), buffer_cap_s=BUFFER_CAP_S)
                    quality = build(**params).decide(obs).quality
                    if previous is not None:
                        assert quality >= previous[1], (
                            f"{_label(name, params)} chose q{quality} with downloads {speedup}x as fast but "
                            f"q{previous[1]} at {previous[0]}x ({ladder_name}, seed {seed}, buffer {buffer_s} s)")
                    previous = (speedup, quality)


BUFFER_LEVELS_S = (0.0, 0.5, 2.0, 4.0, 5.5, 8.0, 10.0, 12.5, 15.0, 20.0, 30.0, 45.0, 60.0, 200.0)


def check_monotone_in_buffer(name: str, *, factory: Factory | None = None) -> None:
    """After the same observation history, a fuller buffer never gives a lower quality."""
    build = _factory(name, factory)
    for params in _variants_with(name, "buffer-monotone", factory):
        for ladder_name, ladder in _ladders(build(**params)):
            for seed in SEEDS:
                recorded = [given for given, _ in closed_loop(build(**params), ladder, seed, segments=12)
                            if isinstance(given, Observation)]
                if len(recorded) < 2:
                    continue
                *prefix, final = recorded
                previous: tuple[float, int] | None = None
                for level_s in BUFFER_LEVELS_S:
                    algorithm = build(**params)
                    for obs in prefix:
                        algorithm.decide(obs)
                    quality = algorithm.decide(dataclasses.replace(final, buffer_s=level_s,
                                                                   rebuffering=level_s == 0)).quality
                    if previous is not None:
                        assert quality >= previous[1], (
                            f"{_label(name, params)} chose q{quality} at buffer {level_s} s but q{previous[1]} at "
                            f"{previous[0]} s ({ladder_name}, seed {seed}, after {len(prefix)} decisions)")
                    previous = (level_s, quality)


def lock_step(ladder: Ladder, seed: int, *, sessions: int = 9, segments: int = 25) -> Generator[
        tuple[BatchObservation, list[Observation]], np.ndarray, None]:
    """Sessions advancing together as the batched simulator runs them: each step yields the batch view
    and the per-session scalar views of the same state. `send` each step's (B,) qualities back."""
    rng = np.random.default_rng(seed)
    sizes = _video(ladder, rng, segments)
    history = int(rng.choice([5, 8, 20]))
    forced_first = bool(rng.integers(2))
    mean_bps = float(np.median(ladder.bitrates_bps)) * rng.lognormal(0.0, 1.0, sessions)
    time_s = np.zeros(sessions)
    buffer_s = np.zeros(sessions)
    last = np.full(sessions, -1, dtype=np.int64)
    downloads: list[deque[Download]] = [deque(maxlen=history) for _ in range(sessions)]
    for index in range(segments):
        over = np.maximum(buffer_s - BUFFER_CAP_S, 0.0)
        time_s, buffer_s = time_s + over, buffer_s - over
        if index == 0 and forced_first:
            quality = np.full(sessions, min(1, ladder.top), dtype=np.int64)
        else:
            depth = len(downloads[0])
            batch = BatchObservation(
                time_s=time_s.copy(), buffer_s=buffer_s.copy(), segment_index=index, segment_count=segments,
                ladder=ladder, last_quality=last.copy(),
                download_bytes=np.array([[d.size_bytes for d in h] for h in downloads], dtype=np.float64).reshape(
                    sessions, depth),
                download_s=np.array([[d.duration_s for d in h] for h in downloads]).reshape(sessions, depth),
                next_sizes_bytes=sizes[index:index + 6], buffer_cap_s=BUFFER_CAP_S)
            scalar = [Observation(time_s=float(time_s[j]), buffer_s=float(buffer_s[j]), segment_index=index,
                                  segment_count=segments, ladder=ladder,
                                  last_quality=None if last[j] < 0 else int(last[j]), downloads=tuple(downloads[j]),
                                  next_sizes_bytes=_upcoming(sizes, index, True), rebuffering=buffer_s[j] == 0,
                                  buffer_cap_s=BUFFER_CAP_S) for j in range(sessions)]
            quality = np.asarray((yield batch, scalar), dtype=np.int64)
        for j in range(sessions):
            size = int(sizes[index, quality[j]])
            duration_s = size * 8.0 / (mean_bps[j] * float(rng.lognormal(0.0, 0.5))) + 0.08
            downloads[j].append(Download(segment_index=index, quality=int(quality[j]), size_bytes=size,
                                         duration_s=duration_s, ttfb_s=0.08, start_time_s=float(time_s[j])))
            time_s[j] += duration_s
            buffer_s[j] = max(buffer_s[j] - duration_s, 0.0) + ladder.segment_duration_s
        last = quality


def check_batch_matches_scalar(name: str, *, factory: Factory | None = None) -> None:
    """`decide_batch` returns, for every session, exactly the quality `decide` returns for it."""
    build = _factory(name, factory)
    for params in _variants_with(name, "batch", factory):
        for ladder_name, ladder in _ladders(build(**params)):
            for seed in SEEDS[:4]:
                batched = build(**params)
                assert isinstance(batched, BatchAbr), f"{_label(name, params)} is tagged 'batch' without decide_batch"
                steps = lock_step(ladder, seed, segments=20 if len(ladder) < 10 else 8)
                singles: list[AbrAlgorithm] | None = None
                try:
                    batch, scalar = next(steps)
                    while True:
                        singles = singles or [build(**params) for _ in scalar]
                        expected = [alg.decide(obs).quality for alg, obs in zip(singles, scalar)]
                        got = np.asarray(batched.decide_batch(batch))
                        assert got.shape == (len(scalar),), \
                            f"{_label(name, params)}.decide_batch returned shape {got.shape}, want ({len(scalar)},)"
                        mismatch = np.flatnonzero(got != np.asarray(expected))
                        assert mismatch.size == 0, (
                            f"{_label(name, params)} batch and scalar disagree on {ladder_name} seed {seed} segment "
                            f"{batch.segment_index}: sessions {mismatch.tolist()} batch {got[mismatch].tolist()} vs "
                            f"scalar {np.asarray(expected)[mismatch].tolist()}")
                        batch, scalar = steps.send(got)
                except StopIteration:
                    pass


CHECKS: tuple[Check, ...] = (
    Check("decisions_in_range", check_decisions_in_range),
    Check("reasons_given", check_reasons_given),
    Check("deterministic", check_deterministic),
    Check("monotone_in_bandwidth", check_monotone_in_bandwidth, tag="bandwidth-monotone"),
    Check("monotone_in_buffer", check_monotone_in_buffer, tag="buffer-monotone"),
    Check("batch_matches_scalar", check_batch_matches_scalar, tag="batch"),
)


def applies(check: Check, name: str, factory: Factory | None = None) -> bool:
    """Whether `check` runs for `name`: universal, or some variant carries its tag."""
    return check.tag is None or bool(_variants_with(name, check.tag, factory))


def run_checks(name: str, factory: Factory | None = None) -> list[str]:
    """Run every applicable check on `name`; returns the names of the checks run."""
    ran = []
    for check in CHECKS:
        if applies(check, name, factory):
            check.run(name, factory=factory)
            ran.append(check.name)
    return ran
