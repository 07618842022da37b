"""The clairvoyant expert `abrkit train` imitates: Comyco's instant solver.

From a session's exact state (segment, trace time, buffer, last quality) the offline optimum
(`player.research.optimal.offline_optimal`) looks `horizon_segments` ahead with the true future trace
and values each quality of the next segment (its Q-values). `player.research.dagger_batch` asks the
same question for a lock-step batch at once; this is the one-session form (`--engine session`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from abr.qoe import QOE_MODELS, QoeModel
from abr.types import Observation
from netsim.link import LinkBatch
from netsim.trace import Trace
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import LatencyLookup, SimProfile, buffer_step, cap_sleep_s, download_step
from player.video import Video


@dataclass(frozen=True, kw_only=True, slots=True)
class ExpertConfig:
    """The instant solver: the offline optimum over the next `horizon_segments` segments from the
    session's state, on a state-merging grid of `grid_s`. Comyco plans 8 chunks ahead; 6 costs a third
    as much and trained policies as good on validation (docs/LEARNED.md reports the agreement of both
    with the full-session optimum). `rebuffer_penalty` overrides the QoE model's in the expert's values
    (a pessimistic expert); by default it is the QoE model's."""

    horizon_segments: int = 6
    grid_s: float = 1.0
    qoe: str = "lin"
    rebuffer_penalty: float | None = None  # per stall second in the expert's values (None: the QoE model's)

    def __post_init__(self) -> None:
        penalty = self.rebuffer_penalty
        if penalty is not None and not (penalty >= 0 and math.isfinite(penalty)):
            raise ValueError(f"rebuffer_penalty must be finite and >= 0, got {self.rebuffer_penalty}")
        if self.horizon_segments < 1:
            raise ValueError(f"horizon_segments must be >= 1, got {self.horizon_segments}")
        if not self.grid_s > 0:
            raise ValueError(f"grid_s must be > 0 s, got {self.grid_s}")
        if self.qoe not in QOE_MODELS:
            raise ValueError(f"unknown QoE model {self.qoe!r}; choose from {', '.join(QOE_MODELS)}")


def session_trace_time_s(obs: Observation, offset_s: float, prof: SimProfile) -> float:
    """The trace time at which `run_session` will start the download `obs` is asked about.

    `run_session` keeps session time and trace time together except for the request latency: with
    `latency_on_trace_clock` both clocks pass it; otherwise (the Pensieve profile) the session adds the
    RTT to each download's duration while the trace clock does not. Simulated sessions never abandon,
    so `segment_index` downloads have finished.
    """
    if prof.latency_on_trace_clock:
        return offset_s + obs.time_s
    return offset_s + obs.time_s - obs.segment_index * prof.rtt_s


def expert_values(video: Video, trace: Trace, prof: SimProfile, obs: Observation, trace_time_s: float,
                  config: ExpertConfig) -> np.ndarray:
    """(Q,) the best QoE reachable over the instant solver's horizon after choosing each quality for
    segment `obs.segment_index`: the segment's own QoE term plus the offline optimum of the following
    `horizon_segments - 1` segments from the state that choice leads to (Q-values of the expert)."""
    model = expert_qoe(config)
    bitrates = np.asarray(video.ladder.bitrates_bps, dtype=np.float64)
    utility = model.utility(bitrates, bitrates)
    rungs = bitrates.size
    n = obs.segment_index
    sleep = float(cap_sleep_s(np.array([obs.buffer_s]), prof.session)[0])  # 0 unless called over the cap
    start_s, buffer_s = trace_time_s + sleep, obs.buffer_s - sleep
    qualities = np.arange(rungs)
    link = LinkBatch([trace], payload_factor=prof.payload_factor)
    finish, elapsed = download_step(link, LatencyLookup([trace], prof), prof, np.full(rungs, start_s),
                                    video.sizes_bytes[n, qualities].astype(np.float64), np.zeros(rungs, dtype=np.int64))
    stall, after = buffer_step(np.full(rungs, buffer_s), elapsed, video.ladder.segment_duration_s,
                               started=n > 0 or buffer_s > 0)
    values = np.zeros(rungs)
    if n >= model.first_counted_segment:
        previous = utility if obs.last_quality is None else utility[obs.last_quality]
        values = utility - model.rebuffer_penalty * stall - model.switch_penalty * np.abs(utility - previous)
    end = min(video.segment_count, n + config.horizon_segments)
    if n + 1 < end:
        window = video.truncated(end)
        for q in range(rungs):
            values[q] += offline_optimal(window, trace, prof, qoe=model, config=OptimalConfig(grid_s=config.grid_s),
                                         start_segment=n + 1, start_trace_time_s=float(finish[q]),
                                         start_buffer_s=float(after[q]), start_quality=q).qoe
    return values


def expert_qoe(expert: ExpertConfig) -> QoeModel:
    """The QoE model the expert values qualities by: the configured one, with its stall price overridden."""
    model = QOE_MODELS[expert.qoe]
    if expert.rebuffer_penalty is not None:
        model = dataclasses.replace(model, rebuffer_penalty=expert.rebuffer_penalty)
    return model
