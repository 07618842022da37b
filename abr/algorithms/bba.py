"""`bba`: BBA-0, the buffer-based algorithm of Huang et al. (SIGCOMM 2014, section 4).

Below the reservoir take the lowest rate, above reservoir + cushion the highest, and in between
follow a rate map f(B). `map="rate"` is the paper's: f linear from R_min to R_max over the cushion,
switching only when f crosses the next rate up (R+) or down (R-). `map="pensieve"` is Pensieve's
baseline (test/bb.py): quality int(top * (B - reservoir) / cushion), without hysteresis.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from abr.registry import parameters_from, register
from abr.types import BatchObservation, Decision, Observation

_MAPS = ("rate", "pensieve")


@dataclass(frozen=True, kw_only=True, slots=True)
class BbaParams:
    """Reservoir and cushion in seconds of buffer (the paper's Netflix values are 90 s and 126 s for
    240 s buffers; 5 s and 10 s are Pensieve's for its 60 s buffer), and the rate map."""

    reservoir_s: float = 5.0
    cushion_s: float = 10.0
    map: str = "rate"

    def __post_init__(self) -> None:
        if not self.reservoir_s >= 0:
            raise ValueError(f"reservoir_s must be >= 0 s, got {self.reservoir_s}")
        if not self.cushion_s > 0:
            raise ValueError(f"cushion_s must be > 0 s, got {self.cushion_s}")
        if self.map not in _MAPS:
            raise ValueError(f"unknown BBA map {self.map!r}; choose from {', '.join(_MAPS)}")


class Bba:
    """BBA-0: a pure function of the buffer level (and, for the rate map, the last quality)."""

    name = "bba"
    conformance_tags = frozenset({"bandwidth-monotone", "buffer-monotone", "batch"})
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"map": "pensieve"})

    def __init__(self, params: BbaParams) -> None:
        self.params = params

    def decide(self, obs: Observation) -> Decision:
        buffer_s, top = obs.buffer_s, obs.ladder.top
        reservoir_s, cushion_s = self.params.reservoir_s, self.params.cushion_s
        if self.params.map == "pensieve":
            # Pensieve compares `<` at the reservoir and `>=` at its end; keep its exact arithmetic.
            if buffer_s < reservoir_s:
                return Decision(quality=0, reason=f"buffer {buffer_s:.1f}s in reservoir -> q0")
            if buffer_s >= reservoir_s + cushion_s:
                return Decision(quality=top, reason=f"buffer {buffer_s:.1f}s above cushion -> q{top}")
            quality = int(top * (buffer_s - reservoir_s) / cushion_s)
            return Decision(quality=quality, reason=f"buffer {buffer_s:.1f}s in cushion -> q{quality}")
        if buffer_s <= reservoir_s or top == 0:
            return Decision(quality=0, reason=f"buffer {buffer_s:.1f}s in reservoir -> q0")
        if buffer_s >= reservoir_s + cushion_s:
            return Decision(quality=top, reason=f"buffer {buffer_s:.1f}s above cushion -> q{top}")
        rates = obs.ladder.bitrates_bps
        previous = obs.last_quality or 0
        f_bps = rates[0] + (rates[top] - rates[0]) * (buffer_s - reservoir_s) / cushion_s
        if f_bps >= rates[min(previous + 1, top)]:
            quality = bisect.bisect_left(rates, f_bps) - 1  # max{R_i : R_i < f(B)}
        elif f_bps <= rates[max(previous - 1, 0)]:
            quality = bisect.bisect_right(rates, f_bps)  # min{R_i : R_i > f(B)}
        else:
            quality = previous
        return Decision(quality=quality, reason=f"buffer {buffer_s:.1f}s in cushion, f(B) {f_bps / 1e6:.2f} "
                                                f"Mbit/s -> q{quality}")

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        buffer_s, top = obs.buffer_s, obs.ladder.top
        reservoir_s, cushion_s = self.params.reservoir_s, self.params.cushion_s
        if self.params.map == "pensieve":
            inside = (top * (buffer_s - reservoir_s) / cushion_s).astype(np.int64)  # int() truncates, B > reservoir
            return np.where(buffer_s < reservoir_s, 0, np.where(buffer_s >= reservoir_s + cushion_s, top, inside))
        if top == 0:
            return np.zeros(buffer_s.shape, dtype=np.int64)
        rates = np.asarray(obs.ladder.bitrates_bps, dtype=np.int64)
        previous = np.maximum(obs.last_quality, 0)
        f_bps = rates[0] + (rates[top] - rates[0]) * (buffer_s - reservoir_s) / cushion_s
        up = np.searchsorted(rates, f_bps, side="left") - 1
        down = np.searchsorted(rates, f_bps, side="right")
        quality = np.where(f_bps >= rates[np.minimum(previous + 1, top)], up,
                           np.where(f_bps <= rates[np.maximum(previous - 1, 0)], down, previous))
        return np.where(buffer_s <= reservoir_s, 0, np.where(buffer_s >= reservoir_s + cushion_s, top, quality))


@parameters_from(BbaParams)
def make_bba(**params: object) -> Bba:
    return Bba(BbaParams(**params))  # type: ignore[arg-type]


register("bba", make_bba, "BBA-0 buffer-based: reservoir/cushion rate map (map='pensieve' for Pensieve's)")
