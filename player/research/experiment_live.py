"""`abrkit run --live`: live ABR algorithms in simulation and in emulation, on the same traces.

Emulation serves a packaged title as the stack's live channel (its clock `speed` times the wall
clock, `abrkit serve --live --speed K`) and plays it with the headless live player through the
shaper, `concurrency` sessions at once. Simulation plays the same channel (the title's segment sizes
looped, the MPD's ladder, sizes unknown ahead as in an MPD) through the same link model with the same
live policy; each simulated session joins the channel at the age its emulated twin found it, so the
two play the same segments and can be compared per trace: the gap is emulate - sim, paired.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netsim.shaper import Shaper
from netsim.trace import Trace
from player.client.fetch import FetchError
from player.client.harness import LinkConfig, TitleTarget, play_headless
from player.client.headless import PlayerConfig, distinct_bitrates
from player.client.liveplay import LivePlayConfig
from player.client.mpd import parse_mpd
from player.clocksync import ClockSyncConfig
from player.errors import CliError
from player.live import LiveConfig
from player.research.experiment import ResultStore
from player.research.experiment_cells import _lag_probe, _p99_ms
from player.research.experiment_live_gaps import format_judgement, judgement, live_gaps
from player.research.live_sim import ControlTraffic, LiveSimConfig, run_live_session
from player.research.sim_shared import RESPONSE_HEADER_BYTES
from player.research.stats import Interval, mean_ci
from player.research.sweep import trace_keys
from player.session import SessionConfig
from player.video import Video
from server.formats.names import MANIFEST_NAME, SEGMENTS_NAME
from server.formats.segments import load_segments_json

MODES = ("sim", "emulate")
LIVE_RESULTS_NAME = "live_results.jsonl"
Row = dict[str, Any]
# Per-session figures summarised per algorithm and mode (means with 95% CIs), and compared for the gap.
METRICS = ("latency_p50_s", "latency_p95_s", "stalls", "rebuffer_s", "avg_bitrate_kbps", "qoe_per_segment",
           "abandoned")
# The live QoE's terms (`abr.qoe.LiveQoe.terms`: the bitrate reward, then the penalties, >= 0), each
# per segment as `qoe_per_segment` is, in a row as `qoe_<term>_per_segment`: where a QoE gap comes from.
QOE_TERMS = ("bitrate", "rebuffer", "latency", "speed", "switch")
_BUFFER_CAP_S = 30.0  # both modes: live buffers never reach it (the latency target bounds them)
# The live player's other answers on its link (body bytes), when no emulated twin measured them: this
# stack's low-latency demo channel (MPD 3454 B, an xs:dateTime, a rung's rewritten init 929 B).
CONTROL_BODY_BYTES_ESTIMATE = {"manifest": 3500, "sync": 24, "init": 930}
# The HLS player's media playlist (body bytes) when no emulated twin measured it: this stack's LL-HLS
# playlist of the demo channel (its parts listed for the last 3 target durations), 2170-2324 B in
# `bench/live_run.py --protocol hls`'s emulated sessions.
HLS_PLAYLIST_BYTES_ESTIMATE = 2300
# Raise whenever the simulated twin's model changes, so a resumed run does not reuse older rows.
LIVE_SIM_MODEL_VERSION = "hlstwin1"
HOLD_BACK_TARGET_DURATIONS = 3  # RFC 8216 6.3.3 / server.live.hls: where the HLS player joins whole segments


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveRunConfig:
    """One live comparison. Durations in channel seconds after the join; `speed` is the emulated
    channel's (and players') clock speed-up; `target_latency_s` None takes the channel's (3 chunks +
    0.5 s at low latency, else 2 segments, as `abrkit serve --live` publishes it)."""

    abrs: tuple[str, ...]
    modes: tuple[str, ...] = MODES
    duration_s: float = 60.0
    speed: float = 1.0
    low_latency: bool = True
    chunk_s: float = 0.5
    target_latency_s: float | None = None
    rtt_ms: float = 80.0
    concurrency: int = 4  # emulated sessions at once
    start_spacing_s: float = 0.2  # wall seconds between emulated session starts
    sim_channel_age_s: float = 60.0  # the simulated channel's age at the join when there is no emulated twin
    stack_processes: bool = False  # serve the channel with one process per service (less load on this loop)
    # Leave the stack's time and the players' loop stalls out of the emulated players' clocks, the
    # channel following each player's clock (docs/LIVE-EMULATION.md, "The stack's time in live emulation").
    # None: left out, for either protocol (HLS counted it until its holds for publication ran on the
    # clock as they happen: docs/LIVE-EMULATION.md, "The wait counted while it happens"). False: the
    # reference, the stack's time counted.
    exclude_stack_time: bool | None = None
    # Also leave out each player loop's measured wait for a core (netsim.corewait; Linux), which the
    # heartbeat of the loop stalls finds only past its slack: for runs on a loaded machine. Needs the
    # stack's time left out (the channel then follows each player's clock). docs/LIVE-EMULATION.md,
    # "The loop's wait for a core".
    exclude_core_waits: bool = False
    # When the players re-sync their clocks (dash.js's schedule), and so their simulated twins' links
    clock_sync: ClockSyncConfig = field(default_factory=ClockSyncConfig)
    # The emulated players play the channel's MPD ("dash") or its HLS playlists ("hls": LL-HLS parts
    # at low latency unless `play_parts` is off, hls.js's lowLatencyMode)
    protocol: str = "dash"
    play_parts: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in ("dash", "hls"):
            raise ValueError(f"protocol must be dash or hls, got {self.protocol!r}")
        if self.exclude_stack_time is None:
            object.__setattr__(self, "exclude_stack_time", True)
        if self.exclude_core_waits and not self.exclude_stack_time:
            raise ValueError("leaving the loop's waits for a core out needs the stack's time left out too "
                             "(the channel follows the player's clock only then)")
        if not self.abrs or len(set(self.abrs)) != len(self.abrs):
            raise ValueError("give each ABR algorithm once, at least one")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be among {', '.join(MODES)}, got {self.modes}")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"the live duration must be > 0 s, got {self.duration_s}")
        if not (math.isfinite(self.speed) and 0.01 <= self.speed <= 1000):
            raise ValueError(f"speed must be in [0.01, 1000], got {self.speed}")
        if not 0.1 <= self.chunk_s <= 10:
            raise ValueError(f"chunk duration must be in [0.1, 10] s, got {self.chunk_s}")
        if self.target_latency_s is not None and not self.target_latency_s > 0:
            raise ValueError(f"target latency must be > 0 s, got {self.target_latency_s}")
        if self.rtt_ms < 0 or self.concurrency < 1 or self.start_spacing_s < 0:
            raise ValueError("RTT and start spacing must be >= 0, concurrency >= 1")


# -- the channel as the simulator sees it -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveChannelContent:
    """A packaged title as a live channel: `video` holds the segments the channel loops (the leading
    ones of full duration, video only) with the MPD's bandwidths as the ladder, as the live player
    reads it (HLS: the master playlist's BANDWIDTH, `channel_content(protocol="hls")`); `title_dir`
    is what the stack serves."""

    title_dir: Path
    video: Video
    # The bytes of each chunk the channel sends, (segment, rung, chunk) over one loop (one chunk per
    # segment without low latency): `video.sizes_bytes` are their sums. None: the simulator splits
    # each segment's size evenly across its chunks.
    chunk_sizes_bytes: np.ndarray | None = None

    @property
    def segment_duration_s(self) -> float:
        return self.video.ladder.segment_duration_s


def channel_content(title_dir: Path, *, low_latency: bool = True, chunk_s: float = 0.5,
                    protocol: str = "dash") -> LiveChannelContent:
    """The channel a live stack makes of `title_dir` (a clear error for what cannot be one), cut into
    `chunk_s` CMAF chunks at low latency: each segment's and chunk's bytes are what the stack's channel
    sends (`server.stack.live_video_chunk_sizes`), which the simulated twin then downloads. The
    packaged segments' sizes (segments.json) differ from them by a moof per chunk, and a segment's
    chunks carry unequal media (on the demo title 0.5-1.3 x an even split). The ladder is what the
    `protocol`'s player reads: the MPD's bandwidths (DASH), or the master playlist's BANDWIDTH (HLS:
    each variant's peak segment rate with its audio's, 2-43% above the MPD's on the demo title), so
    that a twin's ABR sees the rates its emulated player's does."""
    from abr.types import Ladder
    from server.stack import live_video_chunk_sizes

    if not (title_dir / SEGMENTS_NAME).is_file() or not (title_dir / MANIFEST_NAME).is_file():
        raise CliError(f"{title_dir}: a live run needs a packaged title (segments.json and manifest.mpd)")
    meta = load_segments_json(title_dir / SEGMENTS_NAME)
    nominal = meta.segment_duration_s
    durations = meta.video[0].segment_durations_s
    loop = 0
    while loop < len(durations) and abs(durations[loop] - nominal) < 1e-3:  # as server/live/channel.py loops
        loop += 1
    if loop < 1:
        raise CliError(f"{title_dir}: no segment of the full {nominal:g} s duration to loop")
    manifest = parse_mpd((title_dir / MANIFEST_NAME).read_bytes(), f"http://localhost/{title_dir.name}/{MANIFEST_NAME}")
    if manifest.video is None:
        raise CliError(f"{title_dir}: the manifest has no video")
    reps = distinct_bitrates(list(manifest.video.representations))
    by_id = {v.id: v for v in meta.video}
    missing = [r.id for r in reps if r.id not in by_id]
    if missing:
        raise CliError(f"{title_dir}: representations {missing} of the MPD are not in segments.json")
    try:
        sent = live_video_chunk_sizes(title_dir.parent, title_dir.name, low_latency=low_latency, chunk_s=chunk_s)
    except (ValueError, OSError) as exc:  # Mp4FormatError is a ValueError
        raise CliError(f"{title_dir}: cannot serve it as a live channel: {exc}") from None
    chunks = np.array([sent[r.id] for r in reps], dtype=np.int64).transpose(1, 0, 2)  # (segment, rung, chunk)
    if chunks.shape[0] != loop:
        raise CliError(f"{title_dir}: the channel loops {chunks.shape[0]} segments, segments.json {loop}")
    bitrates = tuple(r.bandwidth_bps for r in reps) if protocol == "dash" else _hls_ladder_bps(title_dir, len(reps))
    ladder = Ladder(bitrates_bps=bitrates, segment_duration_s=nominal)
    video = Video(name=f"{meta.title}-channel", ladder=ladder, sizes_bytes=chunks.sum(axis=2), segment_count=loop)
    return LiveChannelContent(title_dir=title_dir.resolve(), video=video, chunk_sizes_bytes=chunks)


def _hls_ladder_bps(title_dir: Path, rungs: int) -> tuple[int, ...]:
    """The video variants' BANDWIDTH in the title's master playlist, ascending, as the HLS player's
    ladder (player.client.hls: one rung per variant URI); one per rung of the MPD."""
    from player.client.hls import HlsError, MasterPlaylist, parse_playlist
    from server.formats.hls import MASTER_PLAYLIST_NAME

    path = title_dir / MASTER_PLAYLIST_NAME
    try:
        master = parse_playlist(path.read_bytes(), f"http://localhost/{title_dir.name}/{MASTER_PLAYLIST_NAME}")
    except (OSError, HlsError) as exc:
        raise CliError(f"{title_dir}: an HLS live run needs the title's master playlist: {exc}") from None
    if not isinstance(master, MasterPlaylist):
        raise CliError(f"{path}: not a master playlist")
    first: dict[str, int] = {}
    for variant in master.variants:  # a video listed once per audio group: its first listing
        first.setdefault(variant.uri, variant.bandwidth_bps)
    bandwidths = sorted(first.values())
    if len(bandwidths) != rungs or len(set(bandwidths)) != rungs:
        raise CliError(f"{path}: {len(bandwidths)} video variants of distinct BANDWIDTH needed, one per rung of "
                       f"the MPD ({rungs})")
    return tuple(bandwidths)


def channel_target_latency_s(config: LiveRunConfig, segment_duration_s: float) -> float:
    """The target both modes aim for: the configured one, else what the channel's MPD says."""
    if config.target_latency_s is not None:
        return config.target_latency_s
    return 3 * config.chunk_s + 0.5 if config.low_latency else 2 * segment_duration_s


def control_traffic(control_bytes: dict[str, int] | None = None,
                    clock_sync: ClockSyncConfig | None = None, *, join: bool = False, reload: str = "mpd",
                    target_duration_s: float | None = None) -> ControlTraffic:
    """The live player's other requests on its link (`ControlTraffic`): an MPD refresh every
    minimumUpdatePeriod, a UTCTiming request after those `clock_sync`'s schedule says (the player's
    own, `LivePlayConfig.clock_sync`), a rung's init segment before its first segment; bodies as the
    emulated twin measured them (`control_bytes`, its report's), else `CONTROL_BODY_BYTES_ESTIMATE`,
    each answer's headers as this stack sends them (a segment's too); with `join`, the join's clock
    sync requests before the session joins (a session that starts where its player started, not at
    its join). The HLS player's (`reload` other than "mpd": `ControlTraffic.reload`) reloads its
    media playlist instead, with no clock sync; its join is one reload, two when it plays parts."""
    estimate = {**CONTROL_BODY_BYTES_ESTIMATE, **({"manifest": HLS_PLAYLIST_BYTES_ESTIMATE} if reload != "mpd" else {})}
    body = {**estimate, **{k: v for k, v in (control_bytes or {}).items() if v}}
    sync = clock_sync or ClockSyncConfig()
    joins = sync.join_requests if reload == "mpd" else 2 if reload == "part" else 1
    return ControlTraffic(manifest_bytes=body["manifest"] + RESPONSE_HEADER_BYTES,
                          sync_bytes=body["sync"] + RESPONSE_HEADER_BYTES, init_bytes=body["init"] + RESPONSE_HEADER_BYTES,
                          media_header_bytes=RESPONSE_HEADER_BYTES, clock_sync=sync,
                          join_syncs=joins if join else 0, reload=reload, target_duration_s=target_duration_s)


def plays_chunks(config: LiveRunConfig) -> bool:
    """Whether the run's players play CMAF chunks (DASH at low latency) or LL-HLS parts; else whole segments."""
    return config.low_latency and (config.protocol == "dash" or config.play_parts)


def hls_reload(config: LiveRunConfig) -> str:
    """How the run's HLS player reloads its playlist (`ControlTraffic.reload`): the channel offers
    blocking reloads at low latency only (server.live.hls)."""
    if config.protocol == "dash":
        return "mpd"
    return ("part" if config.play_parts else "segment") if config.low_latency else "poll"


def sim_config(config: LiveRunConfig, content: LiveChannelContent, *, channel_age_s: float | None,
               control_bytes: dict[str, int] | None = None, request_excess_s: float = 0.0) -> LiveSimConfig:
    """The simulator's settings for one session: the live policy the player takes from the channel's
    MPD (its target; `PlaybackRate` 0.96-1.04 at low latency, else 0.95-1.05), the same link RTT, and
    the player's other requests on the link (`control_traffic`: bodies as its twin measured them).
    A twin of an emulated session (`channel_age_s` given: the age its player joined at) starts at that
    join, where its player's join sync had ended; one without starts as a player does, its join sync
    on its link, the channel `sim_channel_age_s` old. The HLS player (player/client/hlslive.py) aims
    for PART-HOLD-BACK when it plays parts, else HOLD-BACK (3 target durations), at the session's
    default rates (0.95-1.05), and plays whole segments unless it plays parts. `request_excess_s`:
    `LiveSimConfig.request_excess_s` (a diagnostic; 0 models the network alone)."""
    reload = hls_reload(config)
    target = channel_target_latency_s(config, content.segment_duration_s)
    low, high = (0.96, 1.04) if config.low_latency else (0.95, 1.05)
    target_duration_s = float(max(1, math.floor(content.segment_duration_s + 0.5)))  # EXT-X-TARGETDURATION
    if reload != "mpd":
        low, high = LiveConfig().min_rate, LiveConfig().max_rate
        if config.target_latency_s is None:
            target = max(target, 3 * config.chunk_s) if reload == "part" else HOLD_BACK_TARGET_DURATIONS * target_duration_s
    age = channel_age_s if channel_age_s is not None else config.sim_channel_age_s
    return LiveSimConfig(live=LiveConfig(target_latency_s=target, min_rate=low, max_rate=high),
                         segment_duration_s=content.segment_duration_s,
                         chunk_duration_s=config.chunk_s if plays_chunks(config) else None,
                         duration_s=config.duration_s, channel_age_s=max(age, target), rtt_s=config.rtt_ms / 1000,
                         session=SessionConfig(buffer_cap_s=_BUFFER_CAP_S), nominal_sizes=True,
                         request_excess_s=request_excess_s,
                         control=control_traffic(control_bytes, config.clock_sync, join=channel_age_s is None,
                                                 reload=reload, target_duration_s=target_duration_s))


def check_chunks(config: LiveRunConfig, content: LiveChannelContent) -> None:
    """A clear error when `content`'s chunks are not the ones the run's channel sends."""
    chunks = round(content.segment_duration_s / config.chunk_s) if config.low_latency else 1
    if content.chunk_sizes_bytes is not None and content.chunk_sizes_bytes.shape[2] != chunks:
        raise CliError(f"the channel's content was cut into {content.chunk_sizes_bytes.shape[2]} chunks per segment, "
                       f"the run plays {chunks}: make it with channel_content(..., low_latency, chunk_s) as the run's")


def sim_row(abr: str, trace: Trace, config: LiveRunConfig, content: LiveChannelContent, *,
            channel_age_s: float | None = None, trace_time_s: float | None = None,
            control_bytes: dict[str, int] | None = None, request_excess_s: float = 0.0) -> Row:
    """One simulated live session as a row; it joins at `channel_age_s` and at `trace_time_s` into the
    trace, its player's other answers `control_bytes` big (its emulated twin's, when there is one);
    `request_excess_s` added to each round trip (`LiveSimConfig.request_excess_s`, a diagnostic)."""
    check_chunks(config, content)
    chunks = content.chunk_sizes_bytes
    if chunks is not None and not plays_chunks(config):  # LL-HLS segments played whole: a segment's chunks in one answer
        chunks = chunks.sum(axis=2, keepdims=True)
    result = run_live_session(abr, content.video, trace,
                              sim_config(config, content, channel_age_s=channel_age_s, control_bytes=control_bytes,
                                         request_excess_s=request_excess_s),
                              offset_s=trace_time_s or 0.0, chunk_sizes_bytes=chunks)
    s = result.stats
    return {"mode": "sim", "abr": abr, "trace": trace.name, "error": None,
            "latency_p50_s": s.latency_p50_s, "latency_p95_s": s.latency_p95_s, "latency_max_s": s.latency_max_s,
            "join_s": s.join_s, "stalls": s.stalls, "rebuffer_s": s.rebuffer_s, "rate_changes": s.rate_changes,
            "seeks_to_live": s.seeks_to_live, "avg_bitrate_kbps": result.avg_bitrate_bps / 1e3,
            "qoe_per_segment": result.qoe_per_segment, "segments": int(result.qualities.size),
            "channel_age_s": channel_age_s, "throughput_p50_bps": result.throughput_p50_bps,
            "abandoned": result.abandoned, "resyncs_s": [round(t, 3) for t in result.resyncs_s], "wall_s": None,
            # whose chunk sizes the twin downloaded: the channel's own, or an even split of each segment
            "chunk_sizes": "channel" if content.chunk_sizes_bytes is not None else "even",
            "ttfb_p50_s": result.ttfb_p50_s, "playlist_reloads": result.playlist_reloads,
            **qoe_term_fields(result.qoe, int(result.qualities.size))}


def qoe_term_fields(terms: dict[str, float], segments: int) -> dict[str, float]:
    """A session's live QoE terms (`LiveQoe.terms`, summed over its `segments`) per segment, as a row's
    `qoe_<term>_per_segment` (`QOE_TERMS`): qoe_per_segment is the bitrate's less the others."""
    return {f"qoe_{term}_per_segment": terms[term] / max(segments, 1) for term in QOE_TERMS}


def twin_row(abr: str, trace: Trace, config: LiveRunConfig, content: LiveChannelContent, twin: Row, *,
             request_excess_s: float = 0.0) -> Row:
    """The simulated twin of emulated row `twin` ({}: none, a twin on its own): it joins at the
    channel age and trace time that session joined at, its player's other answers as big as it
    measured them (`request_excess_s`: `sim_row`'s)."""
    return sim_row(abr, trace, config, content, channel_age_s=twin.get("channel_age_s"),
                   trace_time_s=twin.get("joined_at_s"), request_excess_s=request_excess_s,
                   control_bytes={k: twin[f"{k}_bytes"] for k in CONTROL_BODY_BYTES_ESTIMATE if twin.get(f"{k}_bytes")})


# -- emulation --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_channel(content: LiveChannelContent, config: LiveRunConfig) -> AsyncIterator[TitleTarget]:
    """An embedded stack on free ports publishing the title as its live channel, its clock at
    `config.speed`, with a throwaway demo account."""
    from server.config import BackendPolicy, RateLimitPolicy, StackConfig
    from server.stack import start_stack_with_demo_user

    channel = "live" if content.title_dir.name != "live" else "live-channel"
    with tempfile.TemporaryDirectory(prefix="abrkit-live-run-") as state:
        stack_config = StackConfig(
            config_path=Path(state) / "stack.json", content_root=content.title_dir.parent, port=0, access_log=False,
            live_title=content.title_dir.name, live_channel=channel, low_latency=config.low_latency,
            live_chunk_s=config.chunk_s, live_speed=config.speed, processes=config.stack_processes,
            live_player_clocks=config.exclude_stack_time,
            # Already CHANNEL_LEAD_SEGMENTS segments old: a player's first playlist lists a complete
            # segment even when its clock, leaving out the stack's start-up, runs behind the channel's
            live_start_s=time.time() - CHANNEL_LEAD_SEGMENTS * content.segment_duration_s / config.speed,
            # One demo account for every viewer (as `abrkit run` emulation): no per-client limits.
            rate_limit=RateLimitPolicy(rate_per_s=1e6, burst=1_000_000),
            login_rate_limit=RateLimitPolicy(rate_per_s=1e6, burst=1_000_000), max_concurrent_per_client=100_000,
            backend_policy=BackendPolicy(timeout_s=60.0, failure_threshold=1_000_000, max_concurrent=100_000))
        async with start_stack_with_demo_user(stack_config) as (stack, credentials):
            yield TitleTarget(gateway_url=stack.gateway_url, title=channel, username=credentials.username,
                              password=credentials.password, protocol=config.protocol)


CHANNEL_LEAD_SEGMENTS = 2  # how old the emulated channel is when its stack starts


def live_link(trace: Trace, config: LiveRunConfig) -> LinkConfig:
    """The shaped link of one emulated live session. Bootstrap unshaped, as the simulator has none;
    the trace starts with the shaper. Leaving the stack's time and the loop's stalls out, the clock
    keeps to the heartbeat's bound, not exact timers (netsim.clock): the channel streams a segment's
    chunks on the wall clock from the lag its request said (server.live.origin), so each late pacing
    tick left out would make the rest of the segment come that much earlier on the player's clock,
    and the link carry it early. Under load that was seconds of channel time per segment at 10x: the
    link never idled between chunks, and the player's chunk-aware samples ran 10-25% above its
    simulated twin's (docs/LIVE-EMULATION.md, "The stack's time in live emulation")."""
    return LinkConfig(trace=trace, rtt_ms=config.rtt_ms, shape_bootstrap=False,
                      exclude_server_time=config.exclude_stack_time, exclude_loop_stalls=config.exclude_stack_time,
                      exact_timers=False, exclude_core_waits=config.exclude_core_waits)


async def emulate_row(abr: str, trace: Trace, config: LiveRunConfig, target: TitleTarget) -> Row:
    """One live session played by the headless live player through the shaper, as a row."""
    player = PlayerConfig(abr=abr, decode="none", speed=config.speed, audio=False,
                          session=SessionConfig(buffer_cap_s=_BUFFER_CAP_S))
    link = live_link(trace, config)
    live = LivePlayConfig(duration_s=config.duration_s, target_latency_s=config.target_latency_s,
                          clock_sync=config.clock_sync, play_parts=config.play_parts)
    started = time.monotonic()
    row: Row = {"mode": "emulate", "abr": abr, "trace": trace.name}
    shapers: list[Shaper] = []
    try:
        report = await play_headless(target, player, link=link, live=live, on_link=shapers.append)
    except (CliError, FetchError, OSError, asyncio.TimeoutError, ValueError) as exc:  # one failed session, not the run
        return {**row, "error": f"{type(exc).__name__}: {exc}"}
    info = report.live or {}
    if report.error is not None or not info:
        return {**row, "error": report.error or "no live report"}
    bitrates = [r.bitrate_bps for r in report.records]
    return {**row, "error": None, "latency_p50_s": info["latency_p50_s"], "latency_p95_s": info["latency_p95_s"],
            "latency_max_s": info["latency_max_s"], "join_s": info["join_s"], "stalls": info["stalls"],
            "rebuffer_s": info["rebuffer_s"], "rate_changes": info["rate_changes"],
            "seeks_to_live": info["seeks_to_live"], "avg_bitrate_kbps": float(np.mean(bitrates)) / 1e3 if bitrates
            else math.nan, "qoe_per_segment": info["qoe_live_per_segment"], "segments": len(bitrates),
            "channel_age_s": info["channel_age_s"], "joined_at_s": info.get("joined_at_s"),
            **{f"{kind}_bytes": size for kind, size in (info.get("control_bytes") or {}).items()},
            "throughput_p50_bps": info["throughput_p50_bps"], "abandoned": report.abandoned,
            "ttfb_p50_s": float(np.median([r.ttfb_s for r in report.records])) if report.records else None,
            "early_requests": info["early_requests"], "resyncs_s": info.get("resyncs_s", []),
            "playlist_reloads": info.get("playlist_reloads"), "stale_playlists": info.get("stale_playlists"),
            "clock_drift_s": info.get("clock_drift_s"), "wall_s": round(time.monotonic() - started, 3),
            # Answers ahead of the player's clock kept until it agreed (netsim.early), and for how long in all.
            "early_answers": sum(s.early_answers for s in shapers),
            "early_kept_s": round(sum(s.early_kept_s for s in shapers), 4),
            **qoe_term_fields(info["qoe_live"], len(report.records))}


async def emulate_all(config: LiveRunConfig, content: LiveChannelContent, traces: Sequence[Trace],
                      tick: Callable[[Row], object] = lambda row: None,
                      plan: Sequence[tuple[str, Trace, str]] | None = None) -> list[Row]:
    """Every (algorithm, trace) played against one live stack, `concurrency` at once (`plan`: these
    (algorithm, trace, row key) only, in this order; `tick` is told each row as it finishes)."""
    gate = asyncio.Semaphore(config.concurrency)
    lags_s: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags_s))
    cpu = os.times()
    async with serve_channel(content, config) as target:
        async def one(index: int, abr: str, trace: Trace, key: str) -> Row:
            async with gate:
                await asyncio.sleep((index % config.concurrency) * config.start_spacing_s)
                row = await emulate_row(abr, trace, config, target)
            row["key"] = key
            tick(row)
            return row

        if plan is None:
            plan = [(abr, trace, f"{abr}|{trace.name}") for trace in traces for abr in config.abrs]
        try:
            rows = list(await asyncio.gather(*(one(i, *cell) for i, cell in enumerate(plan))))
        finally:
            probe.cancel()
    # How late this loop (players, shapers and, unless in processes, the stack) woke, p99: a player's
    # clock at K x is K times as late in channel time.
    lag_ms = _p99_ms(lags_s)
    # ... and the CPU seconds a session cost this process (players, shapers; the stack too unless
    # in processes) and the stack's processes (counted once they have exited, at the stack's stop):
    # the work a concurrency asks of the machine, which its load moves little, unlike the lag.
    spent = os.times()
    players_s = (spent.user - cpu.user + spent.system - cpu.system) / max(len(rows), 1)
    stack_s = (spent.children_user - cpu.children_user + spent.children_system - cpu.children_system) / max(len(rows), 1)
    for row in rows:
        row.update(loop_lag_p99_ms=lag_ms, player_cpu_s_per_session=round(players_s, 3),
                   stack_cpu_s_per_session=round(stack_s, 3))
    return rows


# -- the comparison ---------------------------------------------------------------------------------


def run_live_comparison(config: LiveRunConfig, content: LiveChannelContent, traces: Sequence[Trace], *,
                        tick: Callable[[Row], object] = lambda row: None, out_dir: Path | None = None,
                        notify: Callable[[str], object] = lambda text: None) -> list[Row]:
    """Emulated sessions first (when asked), then each simulated one at its twin's channel age.

    With `out_dir`, resumable as `abrkit run` is (the same `ResultStore`): each finished session is
    one flushed line of OUT/live_results.jsonl, keyed by mode, algorithm, trace and the settings that
    change its result; a rerun skips the sessions found there without an error (a simulated one then
    joins at its stored twin's channel age) and returns the rows of the whole plan."""
    if not traces:
        raise CliError("no traces given")
    check_chunks(config, content)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"{out_dir}: exists and is not a directory")
    store = ResultStore(out_dir / LIVE_RESULTS_NAME, notify=notify) if out_dir is not None else None
    done = store.load() if store is not None else {}
    names = dict(zip((id(t) for t in traces), trace_keys([t.name for t in traces])))
    settings = settings_key(config, content)

    def key(mode: str, abr: str, trace: Trace) -> str:
        return f"{settings}|{mode}|{abr}|{names[id(trace)]}"

    def finished(k: str) -> bool:
        return k in done and not done[k].get("error")

    def record(k: str, row: Row) -> None:
        row["key"] = k
        if store is not None:
            store.append([row])
        done[k] = row
        tick(row)

    plan = [(mode, abr, trace) for mode in ("emulate", "sim") if mode in config.modes for trace in traces
            for abr in config.abrs]  # emulated first: each simulated twin needs its channel age
    skipped = sum(finished(key(*cell)) for cell in plan)
    if skipped:
        notify(f"skipping {skipped} of {len(plan)} sessions already in {store.path if store else ''}")
    try:
        emulate = [(abr, trace, key(mode, abr, trace)) for mode, abr, trace in plan
                   if mode == "emulate" and not finished(key(mode, abr, trace))]
        if emulate:
            asyncio.run(emulate_all(config, content, traces, plan=emulate, tick=lambda row: record(row["key"], row)))
        twins = {(abr, names[id(trace)]): done[key("emulate", abr, trace)]
                 for abr in config.abrs for trace in traces if finished(key("emulate", abr, trace))}
        for mode, abr, trace in plan:
            if mode == "sim" and not finished(key(mode, abr, trace)):
                # The emulated link's trace starts with the player's first shaped request (its clock
                # sync, at session time 0), so the trace time at its join is about the join's session time.
                record(key(mode, abr, trace), twin_row(abr, trace, config, content, twins.get((abr, names[id(trace)]), {})))
    except KeyboardInterrupt:
        if store is not None:
            notify(f"interrupted: finished sessions are saved in {store.path}; the same command runs the rest")
        raise
    finally:
        if store is not None:
            store.close()
    return [done[key(*cell)] for cell in plan if key(*cell) in done]


def settings_key(config: LiveRunConfig, content: LiveChannelContent) -> str:
    """A short digest of what a session's result depends on beyond its mode, algorithm and trace: a
    rerun with other settings into the same folder runs its sessions again instead of reusing these."""
    fields = {"duration_s": config.duration_s, "speed": config.speed, "low_latency": config.low_latency,
              "chunk_s": config.chunk_s if config.low_latency else None, "target_latency_s": config.target_latency_s,
              "rtt_ms": config.rtt_ms, "exclude_stack_time": config.exclude_stack_time,
              "segment_duration_s": content.segment_duration_s,
              "ladder_bps": list(content.video.ladder.bitrates_bps), "loop_segments": content.video.segment_count,
              "sim_model": LIVE_SIM_MODEL_VERSION, "clock_sync": dataclasses.asdict(config.clock_sync)}
    if config.protocol != "dash" or not config.play_parts:  # (so a DASH run's stored sessions keep their key)
        fields.update(protocol=config.protocol, play_parts=config.play_parts)
    if config.exclude_core_waits:  # (likewise)
        fields.update(exclude_core_waits=True)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def summarize_rows(rows: Sequence[Row]) -> dict[tuple[str, str], dict[str, Interval]]:
    """(mode, abr) -> metric -> mean with 95% CI over the finished sessions."""
    out: dict[tuple[str, str], dict[str, Interval]] = {}
    for key in dict.fromkeys((r["mode"], r["abr"]) for r in rows if not r.get("error")):
        chosen = [r for r in rows if (r["mode"], r["abr"]) == key and not r.get("error")]
        out[key] = {m: mean_ci([float(r[m]) for r in chosen if _finite(r.get(m))]) for m in METRICS}
    return out


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def format_live_run(rows: Sequence[Row]) -> str:
    """The table (mode, algorithm: means ± 95% CI) and the gaps."""
    names = {"latency_p50_s": "lat p50 s", "latency_p95_s": "lat p95 s", "stalls": "stalls", "rebuffer_s": "stall s",
             "avg_bitrate_kbps": "kbit/s", "qoe_per_segment": "live QoE/seg", "throughput_p50_bps": "ABR sample",
             "abandoned": "abandoned", "ttfb_p50_s": "TTFB p50 s"}
    lines = [f"{'mode':<8} {'abr':<10} {'n':>3} " + " ".join(f"{names[m]:>17}" for m in METRICS)]
    for (mode, abr), metrics in summarize_rows(rows).items():
        n = max(i.n for i in metrics.values())
        lines.append(f"{mode:<8} {abr:<10} {n:>3} " + " ".join(f"{metrics[m]!s:>17}" for m in METRICS))
    gaps = live_gaps(rows)
    if gaps:
        lines.append("\nemulate - sim, paired per session, a trace's sessions averaged (n traces; 95% CI over them; "
                     "% of sim's mean ± the CI's half-width):")
        for g in gaps:
            pct = f"{g.relative_pct:+.1f}%" if math.isfinite(g.relative_pct) else ""
            if pct and math.isfinite(g.half_width_pct):
                pct += f" ± {g.half_width_pct:.1f}%"
            lines.append(f"  {g.abr:<10} {names[g.metric]:<13} n {g.difference.n:<3} sim {g.sim_mean:9.2f}  "
                         f"emulate {g.emulate_mean:9.2f}  diff {g.difference.mean:+.2f} "
                         f"[{g.difference.low:+.2f}, {g.difference.high:+.2f}]" + (f"  ({pct})" if pct else ""))
        lines += ["", format_judgement(rows)]
    return "\n".join(lines)


def write_live_run(rows: Sequence[Row], out_dir: Path, *, meta: dict[str, Any]) -> list[Path]:
    """OUT/sessions.csv (one line per session) and OUT/summary.json (settings, summaries, gaps)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["mode", "abr", "trace", "error", "latency_p50_s", "latency_p95_s", "latency_max_s", "join_s", "stalls",
              "rebuffer_s", "rate_changes", "seeks_to_live", "avg_bitrate_kbps", "qoe_per_segment", "segments",
              "channel_age_s", "joined_at_s", "throughput_p50_bps", "ttfb_p50_s", "abandoned", "early_requests", "wall_s",
              "loop_lag_p99_ms", "player_cpu_s_per_session", "stack_cpu_s_per_session",
              "manifest_bytes", "sync_bytes", "init_bytes", "playlist_reloads", "stale_playlists", "clock_drift_s",
              *(f"qoe_{term}_per_segment" for term in QOE_TERMS)]
    sessions = out_dir / "sessions.csv"
    with sessions.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    summary = {"settings": meta,
               "summaries": [{"mode": mode, "abr": abr, **{m: vars_of(i) for m, i in metrics.items()}}
                             for (mode, abr), metrics in summarize_rows(rows).items()],
               "gaps": [{"abr": g.abr, "metric": g.metric, "sim_mean": g.sim_mean, "emulate_mean": g.emulate_mean,
                         "difference": vars_of(g.difference), "relative_pct": g.relative_pct,
                         "half_width_pct": g.half_width_pct} for g in live_gaps(rows)],
               "judgement": judgement(rows),
               "failed": sum(1 for r in rows if r.get("error"))}
    path = out_dir / "summary.json"
    # Strict JSON (jq, browsers): a figure with no value (a mean over nothing, a % of 0) is null.
    path.write_text(json.dumps(_no_nan(summary), indent=1, default=_json_default, allow_nan=False) + "\n",
                    encoding="utf-8")
    return [sessions, path]


def vars_of(interval: Interval) -> dict[str, float]:
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "n": interval.n}


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
