"""`mpc` and `mpc-robust`: model predictive control (Yin et al., SIGCOMM 2015).

Both predict the throughput (harmonic mean of the last 5 samples; RobustMPC divides it by
1 + the largest relative prediction error of the last 5, section 4.3), then search every quality
plan over the next `horizon` segments for the best QoE and take the plan's first quality. The
default QoE is Pensieve's QoE_lin: sum of bitrates (Mbit/s) - mu x rebuffer (s) - sum of |bitrate
changes| (Mbit/s), with mu = the top rung's bitrate in Mbit/s (4.3 on Pensieve's ladder); `utility`
log or hd swaps the bitrate utility, and `quality` optimises the segments' own quality scores
(`Observation.next_quality`, e.g. SSIM or PSNR in dB: a quality-aware QoE as Comyco and Puffer's
Fugu use). The exhaustive search replaces FastMPC's offline table (section 4.2): same decisions,
no discretisation. The search and its tie-breaking follow Pensieve's test/mpc.py, which produced
the reference numbers.

Speed: per (ladder, horizon) the plans, their utility sums and their switch costs per start quality
are precomputed (per decision for quality scores, which change per segment); only the rebuffer
term depends on buffer and throughput, and it is computed level by level over the prefix tree of
plans (6, 36, ..., 6^5 nodes), each level reusing its parent's buffer.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from abr.algorithms.common import batch_harmonic_mean, batch_samples_bps, mbps
from abr.estimators import DownloadLog, HarmonicMean, sample_bps
from abr.qoe import BITRATE_UTILITIES
from abr.registry import parameters_from, register
from abr.types import BatchObservation, Decision, Ladder, Observation

_BITS_PER_MB = 8e6  # Pensieve predicts in MB/s (kB/ms) and sizes its look-ahead in MB
_BATCH_BLOCK_ELEMENTS = 1 << 15  # sessions x plans per block in decide_batch: arrays stay in L2 cache


@dataclass(frozen=True, kw_only=True, slots=True)
class MpcParams:
    """`horizon` segments looked ahead (5 in Yin et al. section 5 and Pensieve), `window` samples in the
    harmonic mean, the QoE optimised (`utility` of each segment: lin, log, hd of its bitrate or its
    quality score; `rebuffer_penalty` per stalled second, None: the top rung's utility, Pensieve's
    4.3 on its ladder; `switch_penalty` per unit of utility change), and `pensieve_indexing`: size
    the plan with segments index+1 .. index+horizon as Pensieve's test/mpc.py does (an off-by-one the
    reference reproduces) instead of index .. index+horizon-1."""

    horizon: int = 5
    window: int = 5
    utility: Literal["lin", "log", "hd", "quality"] = "lin"
    rebuffer_penalty: float | None = None
    switch_penalty: float = 1.0
    pensieve_indexing: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.horizon <= 8:
            raise ValueError(f"horizon must be 1..8 segments (the search grows as ladder^horizon), got {self.horizon}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1 sample, got {self.window}")
        if self.rebuffer_penalty is not None and not (self.rebuffer_penalty >= 0 and math.isfinite(self.rebuffer_penalty)):
            raise ValueError(f"rebuffer_penalty must be finite and >= 0, got {self.rebuffer_penalty}")
        if self.utility not in ("lin", "log", "hd", "quality"):
            raise ValueError(f"utility must be lin, log, hd or quality, got {self.utility!r}")
        if not (self.switch_penalty >= 0 and math.isfinite(self.switch_penalty)):
            raise ValueError(f"switch_penalty must be finite and >= 0, got {self.switch_penalty}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RobustMpcParams(MpcParams):
    """MPC parameters plus `error_window`: how many past relative errors the discount looks at."""

    error_window: int = 5

    def __post_init__(self) -> None:
        MpcParams.__post_init__(self)
        if self.error_window < 1:
            raise ValueError(f"error_window must be >= 1, got {self.error_window}")


@dataclass(frozen=True, slots=True, eq=False)
class _Plans:
    """Every plan of one horizon over one ladder, laid out (first quality, last, ..., second quality)
    so the search's inner numpy loops run over long axes."""

    utility: np.ndarray  # (Q, Q^(h-1)) sum of the plan's utilities
    switch: np.ndarray  # (Q, Q, Q^(h-1)) [start quality] sum of |utility changes| from it


@functools.lru_cache(maxsize=16)
def _layout(count: int, horizon: int) -> np.ndarray:
    """(Q^h, h) qualities of every plan, in plan order (q_0 .. q_(h-1)), rows in the search's layout."""
    layout = np.array(list(itertools.product(range(count), repeat=horizon)), dtype=np.int64).reshape(-1, horizon)
    plans = np.concatenate([layout[:, :1], layout[:, :0:-1]], axis=1)
    plans.setflags(write=False)
    return plans


@functools.lru_cache(maxsize=64)
def _plans(values: tuple[float, ...], horizon: int, scale: float) -> _Plans:
    # A memo of a pure function of its arguments (no observable state): every instance shares the tables.
    # `values` are per-rung utilities x `scale`; for lin the integer bitrates with scale 1e6, summed as
    # integers and divided once, as Pensieve's kbit/s sums / 1000: equal plans tie exactly, as there.
    count = len(values)
    plans = _layout(count, horizon)
    rung = np.asarray(values)
    rates = rung[plans]
    steps = np.abs(np.diff(rates, axis=1)).sum(axis=1)
    switches = np.abs(rates[:, 0][None, :] - rung[:, None]) + steps[None, :]
    tables = _Plans(utility=(rates.sum(axis=1) / scale).reshape(count, -1),
                    switch=(switches / scale).reshape(count, count, -1))
    for array in (tables.utility, tables.switch):
        array.setflags(write=False)
    return tables


def _rung_tables(params: MpcParams, ladder: Ladder, horizon: int) -> _Plans:
    """Plan tables of a bitrate utility (lin, log, hd) on this ladder."""
    if params.utility == "lin":
        return _plans(ladder.bitrates_bps, horizon, 1e6)
    rates = np.asarray(ladder.bitrates_bps, dtype=np.float64)
    return _plans(tuple(BITRATE_UTILITIES[params.utility](rates, rates).tolist()), horizon, 1.0)


def _score_rows(ladder: Ladder, rows: np.ndarray | tuple[tuple[float, ...], ...], offset: int,
                horizon: int) -> np.ndarray:
    """(horizon, Q) quality scores of the planned segments; past the last known row, the last row."""
    wanted = [tuple(r) for r in rows[offset:offset + horizon] if len(r) == len(ladder)]
    if not wanted:
        raise ValueError("mpc with utility 'quality' needs the segments' quality scores (Observation.next_quality): "
                         "the content carries none")
    while len(wanted) < horizon:
        wanted.append(wanted[-1])
    return np.array(wanted, dtype=np.float64)


def _score_tables(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(utility sums (Q, R), switch sums inside each plan (Q, R), first segment's score (Q, R)) for
    per-segment scores (h, Q), in the search's layout."""
    count = scores.shape[1]
    plans = _layout(count, scores.shape[0])
    values = scores[np.arange(scores.shape[0])[None, :], plans]
    inner = np.abs(np.diff(values, axis=1)).sum(axis=1)
    return (values.sum(axis=1).reshape(count, -1), inner.reshape(count, -1), values[:, 0].reshape(count, -1))


def _lookahead_mb(ladder: Ladder, rows: np.ndarray | tuple[tuple[int, ...], ...], offset: int,
                  horizon: int) -> np.ndarray:
    """(horizon, Q) sizes in MB of the planned segments; a row the content does not offer (past the
    end, or sizes unknown) is estimated as bitrate x duration."""
    wanted = rows[offset:offset + horizon]
    if len(wanted) == horizon and all(len(row) == len(ladder) for row in wanted):
        return np.array(wanted, dtype=np.float64) / 1e6
    estimate = np.asarray(ladder.bitrates_bps, dtype=np.float64) * ladder.segment_duration_s / 8.0
    sizes = np.empty((horizon, len(ladder)))
    for k in range(horizon):
        sizes[k] = wanted[k] if k < len(wanted) and len(wanted[k]) == len(ladder) else estimate
    return sizes / 1e6


def _rebuffer_s(start_buffer_s: np.ndarray, sizes_mb: np.ndarray, rate_mbs: np.ndarray,
                segment_s: float) -> np.ndarray:
    """(B, Q, Q^(h-1)) rebuffer time of every plan (laid out as `_Plans`) for B sessions.

    Pensieve's buffer model per segment: the download takes size/rate; a shortfall is rebuffering and
    empties the buffer; then one segment is added (no cap). Each level extends every plan prefix by
    every quality, reusing the prefix's buffer. gap > 0 exactly when buffer < download time, and
    adding max(gap, 0) / keeping seg - min(gap, 0) round exactly as Pensieve's if/else, so plans tie
    (and ties break) as in the reference.
    """
    sessions = start_buffer_s.shape[0]
    download_s = sizes_mb[None, :, :] / rate_mbs[:, None, None]  # (B, h, Q)
    gap = download_s[:, 0, :, None] - start_buffer_s[:, None, None]  # (B, Q first, 1)
    stall_s = np.maximum(gap, 0.0)
    buffer_s = segment_s - np.minimum(gap, 0.0)
    last = sizes_mb.shape[0] - 1
    for level in range(1, last + 1):
        # (B, Q first, Q new, prefixes): the new quality goes right after the first one.
        gap = download_s[:, level, None, :, None] - buffer_s[:, :, None, :]
        grown = np.maximum(gap, 0.0)
        grown += stall_s[:, :, None, :]
        stall_s = grown.reshape(sessions, grown.shape[1], -1)
        if level < last:  # the last level's buffer is never read
            np.minimum(gap, 0.0, out=gap)
            buffer_s = np.subtract(segment_s, gap, out=gap).reshape(sessions, gap.shape[1], -1)
    return stall_s


def _best_first(reward: np.ndarray) -> np.ndarray:
    """(B,) first quality of the best plan from (B, Q first, rest) rewards. Pensieve keeps the last
    plan in itertools.product order reaching the maximum (>=), i.e. the highest first quality reaching it."""
    per_first = reward.max(axis=2)
    return per_first.shape[1] - 1 - np.argmax(per_first[:, ::-1], axis=1)


class Mpc:
    """MPC with the plain harmonic-mean prediction (FastMPC's decisions, by exhaustive search)."""

    name = "mpc"
    # Not "bandwidth-monotone": the best plan may start lower at a higher predicted rate, banking buffer
    # for a bigger step later (and RobustMPC's error discount moves with the history's shape).
    conformance_tags = frozenset({"batch"})
    conformance_variants: tuple[dict[str, object], ...] = ({}, {"pensieve_indexing": True})

    def __init__(self, params: MpcParams) -> None:
        self.params = params
        self._log = DownloadLog()
        self._harmonic = HarmonicMean(window=params.window)
        self._last_segment = -1  # decide_batch: the segment of the previous call
        self._scores: dict[int, np.ndarray] = {}  # quality utility: the scores of the segment last decided

    # -- prediction -----------------------------------------------------------------------------------

    def _feed(self, obs: Observation) -> None:
        for download in self._log.new(obs.downloads):
            self._harmonic.feed(download)

    def _predict(self, harmonic_bps: float) -> tuple[float, str]:
        """Predicted rate in MB/s and how it was made."""
        return harmonic_bps / _BITS_PER_MB, f"hm {mbps(harmonic_bps)}"

    # -- decisions --------------------------------------------------------------------------------------

    def _horizon(self, segment_index: int, segment_count: int) -> int:
        return max(1, min(self.params.horizon, segment_count - segment_index))

    def decide(self, obs: Observation) -> Decision:
        self._feed(obs)
        harmonic_bps = self._harmonic.estimate_bps()
        horizon = self._horizon(obs.segment_index, obs.segment_count)
        last = np.array([-1 if obs.last_quality is None else obs.last_quality])
        objective = self._objective(obs.ladder, horizon, obs.next_quality, obs.segment_index, last)
        if harmonic_bps is None:
            return Decision(quality=0, reason="no throughput sample yet -> q0")
        rate_mbs, how = self._predict(harmonic_bps)
        if not rate_mbs > 0:
            return Decision(quality=0, reason=f"{how}: no throughput -> q0")
        ladder = obs.ladder
        sizes_mb = _lookahead_mb(ladder, obs.next_sizes_bytes, int(self.params.pensieve_indexing), horizon)
        stall_s = _rebuffer_s(np.array([obs.buffer_s]), sizes_mb, np.array([rate_mbs]), ladder.segment_duration_s)
        utility, switch, penalty = objective
        quality = int(_best_first(self._reward(utility, stall_s, switch, penalty))[0])
        return Decision(quality=quality, reason=f"{how}, buffer {obs.buffer_s:.1f}s, {horizon} ahead -> q{quality}")

    def _objective(self, ladder: Ladder, horizon: int, next_quality: np.ndarray | tuple[tuple[float, ...], ...] | None,
                   segment_index: int, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(plan utility sums (Q, R), switch sums from each session's last segment (B, Q, R), stall
        penalty) of the QoE this instance optimises, for sessions whose last quality is `last` (-1: none)."""
        params = self.params
        start = np.maximum(last, 0)
        if params.utility != "quality":
            tables = _rung_tables(params, ladder, horizon)
            if params.rebuffer_penalty is not None:
                penalty = params.rebuffer_penalty
            elif params.utility == "lin":
                penalty = ladder.bitrates_bps[-1] / 1e6  # Pensieve's 4.3 on its ladder
            else:
                rates = np.asarray(ladder.bitrates_bps, dtype=np.float64)
                penalty = float(BITRATE_UTILITIES[params.utility](rates[-1:], rates)[0])
            return tables.utility, tables.switch[start], penalty
        rows = () if next_quality is None else next_quality
        scores = _score_rows(ladder, rows, int(params.pensieve_indexing), horizon)
        utility, inner, first = _score_tables(scores)
        # The segment before this one: its scores were the first row of the previous decision's
        # observation (kept below); the first decision compares with its own segment's scores.
        previous = self._scores.get(segment_index - 1, np.asarray(rows[0], dtype=np.float64))
        self._scores = {segment_index: np.asarray(rows[0], dtype=np.float64)}
        u_last = np.where(last >= 0, previous[start], first[start, 0])
        switch = inner[None, :, :] + np.abs(first[None, :, :] - u_last[:, None, None])
        penalty = params.rebuffer_penalty if params.rebuffer_penalty is not None else float(scores[:, -1].mean())
        return utility, switch, penalty

    def _reward(self, utility: np.ndarray, stall_s: np.ndarray, switch: np.ndarray, penalty: float) -> np.ndarray:
        # Pensieve's order of operations: (bitrates - penalty * rebuffer) - switches.
        return utility - penalty * stall_s - self.params.switch_penalty * switch

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        rate_mbs = self._batch_rates(obs)
        ladder = obs.ladder
        horizon = self._horizon(obs.segment_index, obs.segment_count)
        utility, switch, penalty = self._objective(ladder, horizon, obs.next_quality, obs.segment_index,
                                                   np.asarray(obs.last_quality))
        sizes_mb = _lookahead_mb(ladder, obs.next_sizes_bytes, int(self.params.pensieve_indexing), horizon)
        quality = np.zeros(obs.batch_size, dtype=np.int64)
        known = np.flatnonzero(rate_mbs > 0)  # NaN (no sample yet) and 0 choose quality 0, as decide does
        block = max(1, _BATCH_BLOCK_ELEMENTS // utility.size)
        for lo in range(0, known.size, block):
            rows = known[lo:lo + block]
            stall_s = _rebuffer_s(obs.buffer_s[rows], sizes_mb, rate_mbs[rows], ladder.segment_duration_s)
            quality[rows] = _best_first(self._reward(utility, stall_s, switch[rows], penalty))
        return quality

    def _batch_rates(self, obs: BatchObservation) -> np.ndarray:
        """(B,) predicted rate in MB/s (NaN without samples)."""
        self._advance(obs)
        return batch_harmonic_mean(batch_samples_bps(obs, self.params.window)) / _BITS_PER_MB

    def _advance(self, obs: BatchObservation) -> int:
        """How many downloads are new since the previous call (one per segment in lock-step)."""
        if obs.segment_index <= self._last_segment:
            raise ValueError("a batch MPC instance serves one lock-step run: segment_index must increase")
        history = obs.download_bytes.shape[1]
        new = history if self._last_segment < 0 else min(history, obs.segment_index - self._last_segment)
        self._last_segment = obs.segment_index
        return new


class RobustMpc(Mpc):
    """RobustMPC: the harmonic mean divided by 1 + the largest recent relative prediction error."""

    name = "mpc-robust"

    def __init__(self, params: RobustMpcParams) -> None:
        super().__init__(params)
        self.params: RobustMpcParams = params
        self._previous_bps: float | None = None  # the prediction made before the newest sample
        self._errors: deque[float] = deque(maxlen=params.error_window)
        self._batch_previous: np.ndarray | None = None
        self._batch_errors: deque[np.ndarray] = deque(maxlen=params.error_window)

    def _feed(self, obs: Observation) -> None:
        for download in self._log.new(obs.downloads):
            sample = sample_bps(download)
            if sample is None:
                continue
            # Relative error of the last prediction against the sample it predicted (0 for the first).
            if self._previous_bps is None:
                error = 0.0
            else:
                error = abs(self._previous_bps - sample) / sample if sample > 0 else math.inf
            self._errors.append(error)
            self._harmonic.feed(download)
            self._previous_bps = self._harmonic.estimate_bps()

    def _predict(self, harmonic_bps: float) -> tuple[float, str]:
        error = max(self._errors, default=0.0)
        return harmonic_bps / _BITS_PER_MB / (1 + error), f"hm {mbps(harmonic_bps)} / (1+{error:.2f})"

    def _batch_rates(self, obs: BatchObservation) -> np.ndarray:
        new = self._advance(obs)
        history = obs.download_bytes.shape[1]
        window = self.params.window
        samples = batch_samples_bps(obs, history) if history else np.zeros((obs.batch_size, 0))
        for column in range(history - new, history):
            sample = samples[:, column]
            if self._batch_previous is None:
                error = np.zeros(obs.batch_size)
            else:
                with np.errstate(divide="ignore"):
                    error = np.where(sample > 0, np.abs(self._batch_previous - sample) / sample, np.inf)
            self._batch_errors.append(error)
            self._batch_previous = batch_harmonic_mean(samples[:, max(0, column + 1 - window):column + 1])
        if self._batch_previous is None:
            return np.full(obs.batch_size, np.nan)
        worst = functools.reduce(np.maximum, self._batch_errors)
        return self._batch_previous / _BITS_PER_MB / (1 + worst)


@parameters_from(MpcParams)
def make_mpc(**params: object) -> Mpc:
    return Mpc(MpcParams(**params))  # type: ignore[arg-type]


@parameters_from(RobustMpcParams)
def make_robust_mpc(**params: object) -> RobustMpc:
    return RobustMpc(RobustMpcParams(**params))  # type: ignore[arg-type]


register("mpc", make_mpc, "MPC (FastMPC decisions): exhaustive 5-segment QoE plan on the harmonic mean")
register("mpc-robust", make_robust_mpc, "RobustMPC: MPC on the harmonic mean discounted by the max recent error")
