"""The feature schema of the learned ABR: what a policy sees, built from the `Observation` only.

One function, `batch_features`, builds the (B, F) matrix from plain arrays; the scalar path
(`observation_features`) and the batch path (`batch_observation_features`) both go through it, and
every reduction is an explicit left-to-right loop over columns, so a session's row is bit-identical
whichever path built it (the learned policy's `decide_batch` must equal its `decide`).

The inputs are those of Pensieve's state (Mao et al., SIGCOMM 2017, section 4.2) and Comyco's
(Huang et al., ACM MM 2019, section 4): buffer, last bitrate, recent throughputs and download times,
next segment sizes, segments left; plus estimated download times per rung, which Comyco's network
learns from those inputs and a small model is better handed directly. All are normalised to O(1).
Bump `SCHEMA_VERSION` whenever a feature's meaning changes: saved models name the version they need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abr.types import BatchObservation, Ladder, Observation

SCHEMA_VERSION = 1
HISTORY = 8  # past downloads seen (Pensieve's S_LEN)
HARMONIC_WINDOW = 5  # samples in the throughput estimate (Pensieve's and MPC's)
LOOKAHEAD = 5  # upcoming segments whose sizes are averaged
_BUFFER_SCALE_S = 10.0  # Pensieve divides the buffer and download times by 10 s
_BUFFER_CLIP_S = 100.0
_REMAINING_SCALE_S = 240.0  # remaining media time is given as a fraction of 4 minutes (clipped at 1)
_LOG2_CLIP = (-8.0, 4.0)  # throughput / top bitrate, log2: 1/256 .. 16 times the top rung
_DOWNLOAD_CLIP = 5.0  # download times, in units of 10 s
_ESTIMATE_CLIP = 10.0  # estimated download time of a rung, in segment durations
_SIZE_CLIP = 10.0  # segment size / nominal size (bitrate x duration)


@dataclass(frozen=True, kw_only=True, slots=True)
class FeatureSchema:
    """The version and ordered names of the features for a ladder of `ladder_size` rungs."""

    version: int
    names: tuple[str, ...]
    ladder_size: int

    @property
    def size(self) -> int:
        return len(self.names)


def schema(ladder_size: int) -> FeatureSchema:
    """The current schema for a ladder of `ladder_size` rungs."""
    if ladder_size < 1:
        raise ValueError(f"a ladder has at least one rung, got {ladder_size}")
    rungs = range(ladder_size)
    names = (
        ("buffer_10s", "last_bitrate_frac", "history_frac", "remaining_frac")
        + tuple(f"log2_tput_top_{k}" for k in range(HISTORY))
        + tuple(f"download_10s_{k}" for k in range(HISTORY))
        + ("log2_hm_top", "log2_tput_std")
        + tuple(f"est_download_seg_q{q}" for q in rungs)
        + tuple(f"next_size_nominal_q{q}" for q in rungs)
        + tuple(f"ahead_size_nominal_q{q}" for q in rungs)
    )
    return FeatureSchema(version=SCHEMA_VERSION, names=names, ladder_size=ladder_size)


def bounds(ladder_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of every feature in `schema(ladder_size)` order."""
    rungs = ladder_size
    low = np.concatenate([[0.0, 0.0, 0.0, 0.0], np.full(HISTORY, _LOG2_CLIP[0]), np.zeros(HISTORY),
                          [_LOG2_CLIP[0], 0.0], np.zeros(3 * rungs)])
    span = _LOG2_CLIP[1] - _LOG2_CLIP[0]  # the standard deviation of values in a range is at most half of it
    high = np.concatenate([[_BUFFER_CLIP_S / _BUFFER_SCALE_S, 1.0, 1.0, 1.0], np.full(HISTORY, _LOG2_CLIP[1]),
                           np.full(HISTORY, _DOWNLOAD_CLIP), [_LOG2_CLIP[1], span / 2.0],
                           np.full(rungs, _ESTIMATE_CLIP), np.full(2 * rungs, _SIZE_CLIP)])
    return low, high


def _nominal_bytes(ladder: Ladder) -> np.ndarray:
    return np.asarray(ladder.bitrates_bps, dtype=np.float64) * ladder.segment_duration_s / 8.0


def upcoming_rows(ladder: Ladder, next_sizes_bytes: tuple[tuple[int, ...], ...] | np.ndarray) -> np.ndarray:
    """(LOOKAHEAD, Q) sizes of the next segments; rows the observation lacks (past the end, unknown
    or ragged) are the nominal bitrate x duration, as MPC estimates them."""
    out = np.tile(_nominal_bytes(ladder), (LOOKAHEAD, 1))
    for k, row in enumerate(next_sizes_bytes[:LOOKAHEAD]):
        if len(row) == len(ladder):
            out[k] = np.asarray(row, dtype=np.float64)
    return out


def _row_sum(columns: np.ndarray) -> np.ndarray:
    """Sum over axis 1 column by column, left to right (the same order for any batch size)."""
    total = np.zeros(columns.shape[0])
    for j in range(columns.shape[1]):
        total = total + columns[:, j]
    return total


def batch_features(*, ladder: Ladder, buffer_s: np.ndarray, last_quality: np.ndarray, download_bytes: np.ndarray,
                   download_s: np.ndarray, upcoming_bytes: np.ndarray, segments_left: np.ndarray) -> np.ndarray:
    """(B, F) features in `schema(len(ladder))` order.

    `last_quality` is -1 before the first segment; `download_bytes`/`download_s` are (B, H) oldest
    first (H may be 0; only the last `HISTORY` are used); `upcoming_bytes` is (B, LOOKAHEAD, Q) as
    `upcoming_rows` gives it.
    """
    sessions = buffer_s.shape[0]
    top_bps = float(ladder.bitrates_bps[-1])
    bitrates = np.asarray(ladder.bitrates_bps, dtype=np.float64)
    seg_s = ladder.segment_duration_s
    depth = min(download_bytes.shape[1], HISTORY)
    sizes = download_bytes[:, download_bytes.shape[1] - depth:].astype(np.float64)
    seconds = download_s[:, download_s.shape[1] - depth:].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(seconds > 0, sizes * 8.0 / seconds, np.inf)
        log_rate = np.clip(np.log2(rate / top_bps), *_LOG2_CLIP)  # log2(0) = -inf clips to the floor

    features = np.empty((sessions, schema(len(ladder)).size))
    features[:, 0] = np.clip(buffer_s, 0.0, _BUFFER_CLIP_S) / _BUFFER_SCALE_S
    last = np.asarray(last_quality, dtype=np.int64)
    features[:, 1] = np.where(last >= 0, bitrates[np.maximum(last, 0)] / top_bps, 0.0)
    features[:, 2] = depth / HISTORY
    features[:, 3] = np.minimum(np.asarray(segments_left, dtype=np.float64) * seg_s / _REMAINING_SCALE_S, 1.0)
    col = 4
    # History, newest in the last column; missing samples repeat the oldest one (or the lowest rung
    # before any download) so a short history looks like a steady link, not a dead one.
    if depth:
        fill = log_rate[:, :1]
    else:
        fill = np.full((sessions, 1), max(np.log2(bitrates[0] / top_bps), _LOG2_CLIP[0]))
    padded = np.concatenate([np.repeat(fill, HISTORY - depth, axis=1), log_rate], axis=1)
    features[:, col:col + HISTORY] = padded
    col += HISTORY
    times = np.concatenate([np.zeros((sessions, HISTORY - depth)), np.clip(seconds / _BUFFER_SCALE_S, 0.0,
                                                                            _DOWNLOAD_CLIP)], axis=1)
    features[:, col:col + HISTORY] = times
    col += HISTORY
    # Harmonic mean of the last samples (in bit/s; the lowest rung before any download).
    window = min(depth, HARMONIC_WINDOW)
    if window:
        recent = rate[:, depth - window:]
        with np.errstate(divide="ignore"):
            harmonic = np.where(np.any(recent <= 0, axis=1), 0.0, window / _row_sum(1.0 / recent))
    else:
        harmonic = np.full(sessions, bitrates[0])
    features[:, col] = np.clip(np.log2(np.maximum(harmonic, 1e-300) / top_bps), *_LOG2_CLIP)
    mean = _row_sum(padded) / HISTORY
    features[:, col + 1] = np.sqrt(_row_sum((padded - mean[:, None]) ** 2) / HISTORY)
    col += 2
    rungs = len(ladder)
    with np.errstate(divide="ignore"):
        estimate = upcoming_bytes[:, 0, :] * 8.0 / np.maximum(harmonic, 1e-300)[:, None] / seg_s
    features[:, col:col + rungs] = np.clip(estimate, 0.0, _ESTIMATE_CLIP)
    col += rungs
    nominal = _nominal_bytes(ladder)
    features[:, col:col + rungs] = np.clip(upcoming_bytes[:, 0, :] / nominal, 0.0, _SIZE_CLIP)
    col += rungs
    ahead = np.zeros((sessions, rungs))
    for k in range(LOOKAHEAD):
        ahead = ahead + upcoming_bytes[:, k, :]
    features[:, col:col + rungs] = np.clip(ahead / LOOKAHEAD / nominal, 0.0, _SIZE_CLIP)
    return features


def observation_features(obs: Observation) -> np.ndarray:
    """(1, F) features of one observation (the scalar path; abandoned downloads count as samples)."""
    downloads = obs.downloads[-HISTORY:]
    return batch_features(
        ladder=obs.ladder, buffer_s=np.array([obs.buffer_s]),
        last_quality=np.array([-1 if obs.last_quality is None else obs.last_quality]),
        download_bytes=np.array([[float(d.size_bytes) for d in downloads]]).reshape(1, len(downloads)),
        download_s=np.array([[d.duration_s for d in downloads]]).reshape(1, len(downloads)),
        upcoming_bytes=upcoming_rows(obs.ladder, obs.next_sizes_bytes)[None],
        segments_left=np.array([obs.segments_left]),
    )


def batch_observation_features(obs: BatchObservation) -> np.ndarray:
    """(B, F) features of a lock-step batch; row j equals `observation_features` of session j."""
    rows = upcoming_rows(obs.ladder, np.asarray(obs.next_sizes_bytes))
    return batch_features(
        ladder=obs.ladder, buffer_s=np.asarray(obs.buffer_s, dtype=np.float64), last_quality=obs.last_quality,
        download_bytes=obs.download_bytes, download_s=obs.download_s,
        upcoming_bytes=np.broadcast_to(rows, (obs.batch_size, *rows.shape)),
        segments_left=np.full(obs.batch_size, obs.segment_count - obs.segment_index),
    )
