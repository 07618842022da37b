"""When a download in flight is offered to its ABR's `should_abandon`: one rule for every driver.

The simulator's drivers (a link of its own, a shared link, a session with audio, live) and the
headless player all follow `AbandonRule`, each download's checks kept by an `AbandonCheck`:

- a check is due `check_s` after the previous one, the first `check_s` after the request;
- it is offered if at least `check_bytes` more of the body are in than at the previous offer
  (the first: `check_bytes` of the body), with the bytes received by that time;
- otherwise, on the `"grid"` schedule it is skipped, so every check lies at request + k * `check_s`;
  on Sabre's schedule (`"sabre"`: Sabre's NetworkModel, min_progress_time and min_progress_size) it
  waits until those bytes are in, is offered then, and the next is due `check_s` after it.

The grid is the default: each check falls at a time known in advance, so the headless player runs
it on its clock's timer (`netsim.clock.WarpClock` in emulation: the exact time at any time-warp)
with the bytes received by then, as the simulator computes them on its link model. A check that
waits for bytes is offered when they arrive, which a player sees only as its chunks come; the Sabre
profile keeps that schedule for parity with Sabre.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["AbandonCheck", "AbandonRule", "AbandonSchedule"]

AbandonSchedule = Literal["grid", "sabre"]
SCHEDULES: tuple[AbandonSchedule, ...] = ("grid", "sabre")


@dataclass(frozen=True, kw_only=True, slots=True)
class AbandonRule:
    """The checks of a download in flight (see the module's docstring). Times in session seconds."""

    check_s: float = 0.05
    check_bytes: int = 1500
    schedule: AbandonSchedule = "grid"

    def __post_init__(self) -> None:
        if not self.check_s > 0 or self.check_bytes < 1:
            raise ValueError(f"abandon checks need an interval > 0 s and >= 1 byte, got {self.check_s!r} s and "
                             f"{self.check_bytes!r} bytes")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown abandon check schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")

    @property
    def waits_for_bytes(self) -> bool:
        """Whether a check short of bytes waits for them (Sabre's schedule) rather than being skipped."""
        return self.schedule == "sabre"

    def on_clock(self, speed: float) -> AbandonRule:
        """This rule on a clock that runs `speed` session seconds per second (a time-warped player's)."""
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed!r}")
        return self if speed == 1.0 else replace(self, check_s=self.check_s / speed)


class AbandonCheck:
    """One download's checks under `rule`, requested at `requested_s` (any clock: the driver's).

    Bytes are counted by the caller on any monotone counter (the body's bytes received, or a link's
    cumulative bytes) starting at `counted_from` when the body begins. A driver asks `due_s` for the
    next check's time and calls `offer_at` there; on Sabre's schedule a check short of bytes then
    `waiting`, and the driver offers it (`offer_at(..., force=True)`) when `wanted` is reached.
    """

    __slots__ = ("rule", "requested_s", "offered", "waiting", "_passed", "_previous_s")

    def __init__(self, rule: AbandonRule, requested_s: float, *, counted_from: float = 0.0) -> None:
        self.rule = rule
        self.requested_s = requested_s
        self.offered = counted_from  # the counter at the last offer (the body's start before the first)
        self.waiting = False  # a check is due but short of bytes (Sabre's schedule)
        self._passed = 0  # grid checks passed
        self._previous_s = requested_s  # the last offer (Sabre's schedule)

    @property
    def due_s(self) -> float:
        """Time of the next check (while `waiting`: the time it became due)."""
        if self.rule.waits_for_bytes:
            return self._previous_s + self.rule.check_s
        return self.requested_s + (self._passed + 1) * self.rule.check_s

    @property
    def wanted(self) -> float:
        """The counter's value the next offer needs."""
        return self.offered + self.rule.check_bytes

    def offer_at(self, now_s: float, counted: float, *, force: bool = False) -> bool:
        """A check at `now_s` (its due time, or for a waiting check the time its bytes came) with the
        counter at `counted`: True to offer the download now. `force`: the caller knows the bytes
        are in (a link model's inverse, short by float rounding)."""
        if force or counted >= self.wanted:
            self.offered = counted
            self.waiting = False
            self._previous_s = now_s
            self._passed += 1
            return True
        if self.rule.waits_for_bytes:
            self.waiting = True
        else:
            self._passed += 1
        return False

    def skip_to(self, now_s: float) -> None:
        """Pass the grid checks due before `now_s` without offering them (a driver that starts to
        watch a download late, with nothing of its body in before then)."""
        if not self.rule.waits_for_bytes:
            while self.due_s < now_s:
                self._passed += 1
