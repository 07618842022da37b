"""An experiment's cells (one session each: mode, ABR, trace, and its player on a shared link), the
settings of emulated ones, and the results line each writes (`player.research.experiment` runs them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from abr.qoe import QOE_MODELS, SessionMetrics, session_metrics_batch
from abr.registry import parse_spec
from netsim.link import LinkBatch, LinkModel
from netsim.sharing import replay
from netsim.trace import Trace
from player.client.fetch import FetchConfig
from player.client.headless import PlaybackReport, PlayerConfig
from player.research.sim import LatencyLookup, SessionResult, SimProfile, download_step
from player.research.sim_shared import SHARED_LINK_MODEL_VERSION
from player.session import SegmentRecord
from player.video import Video

Row = dict[str, Any]


def _p99_ms(lags_s: Sequence[float]) -> float | None:
    return round(float(np.percentile(lags_s, 99)) * 1000, 2) if lags_s else None


async def _lag_probe(lags_s: list[float], period_s: float = 0.05) -> None:
    """Appends how late the event loop wakes, every `period_s`, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(period_s)
        lags_s.append(loop.time() - start - period_s)


@dataclass(frozen=True, kw_only=True, slots=True)
class Cell:
    """One session to run. `speed` is None in simulation (its results do not depend on a clock)."""

    mode: str
    abr: str
    trace: str  # unique trace key: the name, `#2` etc. for repeats
    offset_s: float
    speed: float | None
    variant: str  # other settings results depend on: profile (sim); profile and decoding (emulate)
    content: str  # content digest
    # With several players per link (`player.research.experiment_shared`): which one this is, of how
    # many, and the spacing of their joins (wall seconds of trace time).
    player: int = 0
    players: int = 1
    join_spacing_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.player < self.players:
            raise ValueError(f"player {self.player} of {self.players} does not exist")

    @property
    def key(self) -> str:
        speed = "-" if self.speed is None else f"{self.speed:g}"
        parts = [self.mode, self.abr, self.trace, f"{self.offset_s:.3f}", speed, self.variant, self.content]
        if self.players > 1:  # one player alone keeps the key it always had (today's simulator)
            parts.append(f"link={self.players}x{self.join_spacing_s:g}s,model={SHARED_LINK_MODEL_VERSION}"
                         f"#{self.player}")
        return "|".join(parts)

    @property
    def group(self) -> tuple[str, ...]:
        """The cells that share this cell's link have the same group."""
        return (self.mode, self.abr, self.trace, f"{self.offset_s:.3f}")


# The simulator's player never gives up on a download: a link that delivers nothing for a while (an
# outage, a trace at zero) only makes it slower. The emulated player plays the same model, so its
# stall timeouts (session seconds; player.client.fetch) stay far past any outage a trace or a fault
# schedule holds: they only end a session whose stack hung. Elsewhere (`abrkit play`, chaos) the
# player keeps FetchConfig's 8 s, which cut a stalled download and fetch it again.
EMULATION_FETCH = FetchConfig(first_byte_timeout_s=120.0, read_timeout_s=120.0)


def emulation_fetch(profile: SimProfile) -> FetchConfig:
    """`EMULATION_FETCH` with the profile's abandonment checks (`player.abandon`): the emulated
    player offers its downloads at the checks the simulator offers them (Sabre's schedule too)."""
    return replace(EMULATION_FETCH, abandon=profile.abandon_rule)


@dataclass(frozen=True, kw_only=True, slots=True)
class EmulationSettings:
    profile: SimProfile  # player policy, ABR parameters and RTT (the profile's base latency)
    decode: str
    start_spacing_s: float
    plugins: tuple[str, ...] = ()
    video: Video | None = None  # the simulator's view of the title: emulated sessions are scored on it


def player_config(cell: Cell, settings: EmulationSettings) -> PlayerConfig:
    """The headless player of an emulated cell: the profile's player policy, abandonment switch
    (`--no-abandon` holds in both modes) and ABR parameters."""
    profile = settings.profile
    name, _ = parse_spec(cell.abr)
    assert cell.speed is not None
    params = {**profile.objective_params(name, None), **profile.abr_params.get(name, {})}
    return PlayerConfig(abr=cell.abr, abr_params=params, session=profile.session, speed=cell.speed,
                        decode=settings.decode, abandonment=profile.abandonment)


# -- rows -------------------------------------------------------------------------------------------

_TIMELINE = ("request_time_s", "download_s", "quality", "bitrate_bps", "size_bytes", "rebuffer_s",
             "buffer_before_s", "buffer_after_s")
_INTEGER_COLUMNS = ("quality", "bitrate_bps", "size_bytes")


def _rounded(values: Sequence[float] | np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def base_row(cell: Cell) -> Row:
    return {"key": cell.key, "mode": cell.mode, "abr": cell.abr, "trace": cell.trace, "trace_offset_s": cell.offset_s,
            "speed": cell.speed, "variant": cell.variant, "content": cell.content}


def _metrics_fields(metrics: SessionMetrics) -> Row:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.as_dict().items()}


def sim_row(cell: Cell, result: SessionResult) -> Row:
    timeline = {
        "request_time_s": _rounded(result.request_time_s), "download_s": _rounded(result.download_s),
        "quality": result.qualities.tolist(), "bitrate_bps": result.bitrates_bps.astype(int).tolist(),
        "size_bytes": result.size_bytes.astype(int).tolist(), "rebuffer_s": _rounded(result.rebuffer_s),
        "buffer_before_s": _rounded(result.buffer_before_s), "buffer_after_s": _rounded(result.buffer_s),
    }
    return {**base_row(cell), **_metrics_fields(result.metrics), "error": None, "timeline": timeline}


def model_download_s(trace: Trace, profile: SimProfile, offset_s: float, records: Sequence[SegmentRecord],
                     audio_records: Sequence[SegmentRecord] = ()) -> np.ndarray:
    """How long each emulated request in `records` takes in the link model the shaper applies (the
    simulator's `default` download model: goodput = trace rate, latency on the trace clock), made
    when it was made; with `audio_records`, those requests share the link with them. The link's
    time 0 (`offset_s` into the trace) is the first media request: session time before it (the
    pre-roll: license, keys, init segments) is no link time."""
    if not records:
        return np.zeros(0)
    shaper_model = replace(profile, payload_factor=1.0, latency_on_trace_clock=True)
    link_t0_s = offset_s - min(r.request_time_s for r in (*records, *audio_records))
    times = link_t0_s + np.array([r.request_time_s for r in records])
    if audio_records:
        latency = LatencyLookup([trace], shaper_model)
        both = [*records, *audio_records]
        made = link_t0_s + np.array([r.request_time_s for r in both])
        waits = latency.at(made, np.zeros(len(both), dtype=np.int64))
        finish = replay(LinkModel(trace), [(float(t), float(w), float(r.size_bytes)) for t, w, r in zip(made, waits, both)])
        return np.asarray(finish[: len(records)]) - times
    sizes = np.array([r.size_bytes for r in records], dtype=np.float64)
    _, elapsed = download_step(LinkBatch([trace]), LatencyLookup([trace], shaper_model), shaper_model, times, sizes,
                               np.zeros(len(records), dtype=np.int64))
    return elapsed


def rescored(report: PlaybackReport, video: Video, profile: SimProfile) -> SessionMetrics:
    """An emulated session's metrics as the simulator scores its sessions: the profile's QoE models on
    this video (stall penalty, per-segment quality, Sabre's report), so sim and emulation rows compare."""
    records = report.records
    if not records:
        return report.metrics
    column = np.asarray
    index = column([r.segment_index for r in records])
    chosen = column([r.quality for r in records])
    quality = None
    if video.quality is not None and index.max() < video.quality.shape[0]:
        quality = video.quality[index, chosen][:, None]
    return session_metrics_batch(
        bitrates_bps=column([r.bitrate_bps for r in records], dtype=np.float64)[:, None],
        rebuffer_s=column([r.rebuffer_s for r in records])[:, None], ladder_bps=video.ladder.bitrates_bps,
        segment_duration_s=video.ladder.segment_duration_s, startup_s=np.array([report.metrics.startup_s]),
        rebuffer_count=np.array([report.metrics.rebuffer_count]), models=profile.qoe_models(video),
        sabre_gamma_p=profile.sabre_gamma_p, quality=quality)[0]


def emulate_row(cell: Cell, report: PlaybackReport, trace: Trace, profile: SimProfile, wall_s: float,
                video: Video | None = None) -> Row:
    """A results line of an emulated session (scored as the simulator scores, given the `video`)."""
    records = report.records
    timeline: dict[str, list[float]] = {}
    for name in (*_TIMELINE, "ttfb_s"):  # `sim_row`'s columns and ttfb_s, from the records
        column = [getattr(r, name) for r in records]
        timeline[name] = column if name in _INTEGER_COLUMNS else _rounded(column)
    timeline["model_download_s"] = _rounded(model_download_s(trace, profile, cell.offset_s, records,
                                                             report.audio_records))
    metrics = rescored(report, video, profile) if video is not None else report.metrics
    return {**base_row(cell), **_metrics_fields(metrics), "error": report.error,
            "frames_decoded": report.frames_decoded, "frames_failed": report.frames_failed,
            "requests": report.requests, "failed_requests": report.failed_requests, "abandoned": report.abandoned,
            "preroll_s": report.preroll_s, "wall_s": round(wall_s, 3), "timeline": timeline}


def session_result(row: Row) -> SessionResult:
    """A results line as the simulator's `SessionResult`, so sweep summaries and plots apply to both modes."""
    t = row["timeline"]
    metrics = SessionMetrics(
        segments=row["segments"], startup_s=row["startup_s"], rebuffer_s=row["rebuffer_s"],
        rebuffer_count=row["rebuffer_count"], rebuffer_ratio=row["rebuffer_ratio"],
        avg_bitrate_bps=row["avg_bitrate_bps"], switches=row["switches"], avg_switch_bps=row["avg_switch_bps"],
        qoe={m: row[f"qoe_{m}"] for m in QOE_MODELS if f"qoe_{m}" in row},
    )
    array = np.asarray
    return SessionResult(
        abr=row["abr"], trace=row["trace"], qualities=array(t["quality"], dtype=np.int64),
        bitrates_bps=array(t["bitrate_bps"], dtype=np.float64), rebuffer_s=array(t["rebuffer_s"]),
        buffer_s=array(t["buffer_after_s"]), buffer_before_s=array(t["buffer_before_s"]),
        download_s=array(t["download_s"]), size_bytes=array(t["size_bytes"], dtype=np.int64),
        request_time_s=array(t["request_time_s"]), metrics=metrics, trace_offset_s=row["trace_offset_s"],
    )
