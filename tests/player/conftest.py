"""Helpers shared by the player tests: content and an ABR that answer exactly what a test scripts."""

from __future__ import annotations

from abr.types import Decision, Ladder, Observation


class FixedContent:
    def __init__(self, ladder: Ladder, count: int) -> None:
        self.ladder = ladder
        self.segment_count = count

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        rows = range(segment_index, min(segment_index + count, self.segment_count))
        return tuple(tuple(int(b * self.ladder.segment_duration_s / 8) for b in self.ladder.bitrates_bps) for _ in rows)


class Scripted:
    """Returns the scripted decisions in order and remembers what it saw."""

    name = "scripted"

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> Decision:
        self.seen.append(obs)
        return self.decisions.pop(0) if self.decisions else Decision(quality=0, reason="default")
