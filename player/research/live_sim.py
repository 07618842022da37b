"""Live sessions in the simulator: a `LiveSession` driven on virtual time through the link model.

`LiveDriver` plays a live channel over one trace. Without chunks a segment is fetched once it is
complete. In low-latency mode a request for the segment at the live edge is answered chunk by chunk
as the encoder makes them (CMAF chunks over chunked transfer): chunk c leaves the server when it
exists and the request has arrived, and crosses the link after the previous chunk; the session
plays each chunk as it lands. A download's `active_s` (the time its chunks were on the link,
`abr.estimators.chunk_active_s`) goes with it to the ABR. Abandonment is offered for whole segments
only (`LiveSession.abandonable`), never in low-latency mode.

The link carries more than media (`ControlTraffic`): the live player fetches the MPD every
`minimumUpdatePeriod`, after some of those updates re-syncs its clock with a UTCTiming request (the
schedule both follow: player/clocksync.py, dash.js's), and fetches a rung's init segment before its
first segment. Those bytes share the link with the media:
a chunk on the link while they cross ends that much later (the link is work-conserving; under fair
sharing a small answer that finishes first delays the larger one by exactly its bytes), and the
answers end later than alone, so the player's next request does too: the DASH player's MPD and
UTCTiming answers (player/research/live_control.py), the HLS player's playlists (live_playlists.py),
whose landing also lists what the player asks for next. Measured
against the shaper's own byte record, they are the ~4.9 kB per 4 s segment the emulated link
carried beyond the segments' bodies (docs/LIVE-SIM.md, "What else crosses the link").

The twin of a live HLS player (player/client/hlslive.py; `ControlTraffic.reload` other than "mpd")
sends what that player sends instead: no clock sync (its clock is the playlists' dates), the join's
playlist reloads, then the playing rendition's playlist reloaded by blocking reloads held at the
server until the next part ("part") or segment ("segment") is published, or polled every target
duration, half of one after a reload that listed nothing new ("poll"). A segment is requested only
once a reload has listed it (or hinted its first part), a rung switched to has its playlist
reloaded first, and LL-HLS parts are requests of their own, one after another, each with its headers
(those already published when the first goes out are asked for together).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from abr.estimators import ChunkArrival, chunk_active_s
from abr.qoe import LiveQoe
from abr.registry import make
from abr.types import Abandoning, AbrAlgorithm, Ladder
from netsim.link import LinkModel
from netsim.pacing import PACKET_BYTES
from netsim.trace import Trace
from player.abandon import AbandonRule
from player.clocksync import ClockSyncConfig, ClockSyncSchedule
from player.live import ABANDON_CHECK_BYTES, ABANDON_CHECK_S, LiveConfig, LiveSchedule, LiveSession, LiveStats
from player.research.live_control import AnswerFlow, ControlFlow
from player.research.live_playlists import HELD_ANSWER_RTTS, PlaylistFlow
from player.research.sim_abandon import first_abandonment
from player.research.stats import Interval, mean_ci
from player.session import Fetch, Finished, SessionConfig, SessionEvent, Wait
from player.video import Video

# The live player (player.client.liveplay) checks at Sabre's cadence as its chunks arrive: so does
# its simulator, on the one rule's Sabre schedule.
LIVE_ABANDON = AbandonRule(check_s=ABANDON_CHECK_S, check_bytes=ABANDON_CHECK_BYTES, schedule="sabre")
RELOADS = ("mpd", "part", "segment", "poll")  # ControlTraffic.reload
ARRIVALS_KEPT = 1024  # LiveDriver.arrival_log: the latest downloads (an hour of 2 s segments is 1,800)


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlTraffic:
    """What the live player (player.client.liveplay) fetches over its link besides media, as bytes
    on the link (body and response headers): the MPD every `refresh_period_s` (None: one segment, the
    player's fallback for a missing minimumUpdatePeriod) after the previous MPD answer had crossed,
    then, when `clock_sync`'s schedule says so (`ClockSyncSchedule.due`), a UTCTiming request
    (`sync_bytes`); and a rung's init segment (`init_bytes`), fetched before the first segment played
    at that rung; and each media answer's status line and headers (`media_header_bytes`), which cross
    the link before its first chunk (the origin sends them when the request arrives, the chunks as
    they are made; chunked transfer's framing, about 9 B a chunk, is left out). All zero: media only.
    Before the join, `join_syncs` UTCTiming requests one after another (the player's join sync:
    `ClockSyncConfig.join_requests`, 1 + 2), from session time 0: the session joins once their answers
    have crossed, and the refresh and re-sync schedules start there, as the player's do. 0: it joins at
    time 0 (a twin started at its emulated player's join, at the trace time and channel age it joined
    at: experiment_live.sim_row). The simulated clock never drifts, so the sync interval only widens."""

    manifest_bytes: int = 0
    sync_bytes: int = 0
    init_bytes: int = 0
    media_header_bytes: int = 0
    join_syncs: int = 0
    refresh_period_s: float | None = None
    clock_sync: ClockSyncConfig = field(default_factory=ClockSyncConfig)
    # "mpd": the DASH player's (above). The HLS player's (module docstring; `manifest_bytes` a media
    # playlist, `sync_bytes` unused): "part", a blocking reload per LL-HLS part; "segment", one per
    # segment; "poll", a reload every `target_duration_s` (None: a segment), half of one after a
    # reload that listed no new segment. `join_syncs` are then the join's reloads: a plain one, and
    # with "part" a second blocking for the part its answer hinted (HlsLivePlayer.sync_clock).
    reload: str = "mpd"
    target_duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.reload not in RELOADS:
            raise ValueError(f"reload must be one of {', '.join(RELOADS)}, got {self.reload!r}")
        if self.target_duration_s is not None and not self.target_duration_s > 0:
            raise ValueError(f"the target duration must be > 0 s, got {self.target_duration_s}")
        if min(self.manifest_bytes, self.sync_bytes, self.init_bytes, self.media_header_bytes, self.join_syncs) < 0:
            raise ValueError(f"control traffic sizes and counts must be >= 0, got {self}")
        if self.refresh_period_s is not None and not self.refresh_period_s > 0:
            raise ValueError(f"the manifest refresh period must be > 0 s, got {self.refresh_period_s}")

    @property
    def refreshes(self) -> bool:
        return self.manifest_bytes > 0 or (self.sync_bytes > 0 and not self.hls)

    @property
    def hls(self) -> bool:
        return self.reload != "mpd"


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveSimConfig:
    """One live experiment: the channel (segment and chunk durations), the player and the link."""

    live: LiveConfig = field(default_factory=LiveConfig)
    segment_duration_s: float = 2.0
    chunk_duration_s: float | None = 0.5  # None: whole segments (no low-latency mode)
    duration_s: float = 300.0  # of channel time after the join
    channel_age_s: float = 60.0  # the channel has been live this long when the session starts
    rtt_s: float = 0.08
    session: SessionConfig = field(default_factory=lambda: SessionConfig(buffer_cap_s=30.0))
    # True: the ABR sees upcoming segment sizes estimated from the ladder's bitrates, as a live player
    # reading an MPD does (player/client/liveplay.py `LiveContent`); False: the real sizes.
    nominal_sizes: bool = False
    control: ControlTraffic = field(default_factory=ControlTraffic)  # the player's other requests on the link
    # A diagnostic, not a network: time added to every request's round trip (`LiveDriver`), to ask
    # how much of a sim-vs-emulation gap the emulated player's and link's own time per request makes
    # (docs/LIVE-SIM.md, "Where the twin's stalls differ"). 0 in every model run.
    request_excess_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.duration_s > 0 or self.channel_age_s < 0 or self.rtt_s < 0:
            raise ValueError("a live run needs duration > 0 s, channel age >= 0 s and RTT >= 0 s")
        if not (math.isfinite(self.request_excess_s) and self.request_excess_s >= 0):
            raise ValueError(f"the request excess must be a finite time >= 0 s, got {self.request_excess_s}")
        if not self.channel_age_s >= self.live.target_latency_s:
            raise ValueError("the channel must have been live at least the target latency when the session joins")
        LiveSchedule(availability_start_s=0.0, segment_duration_s=self.segment_duration_s,
                     chunk_duration_s=self.chunk_duration_s)  # validates the durations

    def schedule(self) -> LiveSchedule:
        return LiveSchedule(availability_start_s=-self.channel_age_s, segment_duration_s=self.segment_duration_s,
                            chunk_duration_s=self.chunk_duration_s)


def _loop_rows(base: Video, config: LiveSimConfig) -> tuple[int, np.ndarray]:
    """How many segments the run can reach, and the base's row of each (with 8 to spare)."""
    count = math.ceil((config.channel_age_s + config.duration_s) / config.segment_duration_s)
    return count, np.arange(count + 8) % base.segment_count


def live_video(base: Video, config: LiveSimConfig) -> Video:
    """The channel as content: `base` (video only) looped for as many segments as the run can reach,
    each segment's sizes scaled from the base's segment duration to the channel's."""
    count, rows = _loop_rows(base, config)
    scale = config.segment_duration_s / base.ladder.segment_duration_s
    sizes = np.maximum(np.rint(base.sizes_bytes[rows] * scale), 1).astype(np.int64)
    ladder = Ladder(bitrates_bps=base.ladder.bitrates_bps, segment_duration_s=config.segment_duration_s)
    return Video(name=f"{base.name}-live", ladder=ladder, sizes_bytes=sizes, segment_count=count,
                 resolutions=base.resolutions)


def live_chunks(base: Video, chunk_sizes_bytes: np.ndarray, config: LiveSimConfig) -> np.ndarray:
    """Per-chunk sizes (segment, rung, chunk) of `base`, as a channel sends them, looped as
    `live_video` loops the segments. They must be the base's own: one row per segment and rung, the
    channel's chunks per segment, summing to the segment's size, at the channel's segment duration
    (real chunks are not rescaled). ValueError naming what does not fit."""
    expected = (base.segment_count, len(base.ladder), config.schedule().chunks_per_segment)
    if chunk_sizes_bytes.ndim != 3 or chunk_sizes_bytes.shape != expected:
        raise ValueError(f"chunk sizes must be (segments, rungs, chunks per segment) = {expected}, "
                         f"got {chunk_sizes_bytes.shape}")
    if abs(base.ladder.segment_duration_s - config.segment_duration_s) > 1e-9:
        raise ValueError(f"real chunk sizes are of {base.ladder.segment_duration_s:g} s segments, the channel "
                         f"has {config.segment_duration_s:g} s")
    if (chunk_sizes_bytes < 0).any() or not np.array_equal(chunk_sizes_bytes.sum(axis=2),
                                                           base.sizes_bytes[:base.segment_count]):
        raise ValueError("chunk sizes must be >= 0 and sum to each segment's size")
    return chunk_sizes_bytes[_loop_rows(base, config)[1]]


class NominalSizes:
    """`video` as a live player knows it: upcoming segment sizes are bitrate x duration (an MPD gives
    no sizes for segments not yet made), the bytes fetched stay the real ones."""

    def __init__(self, video: Video) -> None:
        self.ladder = video.ladder
        self.segment_count = video.segment_count
        self._estimate = tuple(int(b * video.ladder.segment_duration_s / 8) for b in video.ladder.bitrates_bps)

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        return tuple(self._estimate for _ in range(segment_index, min(segment_index + count, self.segment_count)))


class LiveDriver:
    """Plays a `LiveSession` over one trace in virtual time (contract in the module docstring).
    `trace_time_s` is the trace time at session time 0; `request_excess_s` is added to every
    request's round trip (`LiveSimConfig.request_excess_s`: a diagnostic)."""

    def __init__(self, session: LiveSession, video: Video, trace: Trace, *, rtt_s: float = 0.08,
                 payload_factor: float = 1.0, trace_time_s: float = 0.0, abandonment: bool = True,
                 abandon: AbandonRule = LIVE_ABANDON, control: ControlTraffic = ControlTraffic(),
                 chunk_sizes_bytes: np.ndarray | None = None, request_excess_s: float = 0.0) -> None:
        self.session = session
        self._excess_s = request_excess_s
        # Each chunk's bytes (segment, rung, chunk; `live_chunks`), as the channel sends them; None:
        # a segment's size split evenly across its chunks.
        self._chunks = chunk_sizes_bytes
        # As the VOD simulator (SimProfile.abandonment, player.abandon's rule): a whole-segment download
        # the session calls abandonable is offered to the ABR's should_abandon (player/research/sim_abandon.py).
        self._abandoning = session.abr if abandonment and isinstance(session.abr, Abandoning) else None
        self._abandon = abandon
        self.abandoned = 0
        self.trace = trace
        self.rtt_s = rtt_s
        self._sizes = video.sizes_bytes
        self._link = LinkModel(trace, payload_factor=payload_factor)
        self._offset_s = trace_time_s - session.time_s
        self._control = control  # the player's other requests
        self.planned: list[tuple[float, int]] = []  # every control answer so far, as queued
        self.resyncs_s: list[float] = []  # session time each clock re-sync began (the player's `resyncs_s`)
        self._sync = ClockSyncSchedule(control.clock_sync)
        self._rung = 0  # HLS: the rung whose playlist is reloaded (the join's: the lowest)
        self._held_rtts = HELD_ANSWER_RTTS if control.hls else 0.5
        self._switch_reloads: list[float] = []  # when each reload of a rung switched to had crossed
        # The latest downloads' (segment index, request time, its chunks' arrivals): bench/live_segments.py
        self.arrival_log: deque[tuple[int, float, tuple[ChunkArrival, ...]]] = deque(maxlen=ARRIVALS_KEPT)
        refresh_s = control.refresh_period_s or session.schedule.segment_duration_s
        # The answers share the link with the media as they cross: DASH's MPD and clock sync answers
        # (live_control.py), HLS's playlist reloads (live_playlists.py).
        self._flow: AnswerFlow | None = None
        self._dash: ControlFlow | None = None
        self._reloads: PlaylistFlow | None = None
        joined = session.time_s
        if control.hls:  # the join's reloads; blocking: at once for what the last playlist hinted; polling: a
            # target duration on
            self._flow = self._reloads = PlaylistFlow(
                self._link, offset_s=self._offset_s, rtt=self._rtt, schedule=session.schedule,
                reload=control.reload, playlist_bytes=control.manifest_bytes,
                period_s=0.0 if control.reload != "poll" else control.target_duration_s or refresh_s,
                start_s=joined, join_reloads=control.join_syncs, refreshes=control.refreshes, planned=self.planned)
            joined = self._reloads.joined_s
        else:
            for _ in range(control.join_syncs):  # the join's clock sync, one request after another
                joined = self._exchange(joined, control.sync_bytes)
            self._sync.synced(joined, 0.0)  # the join's
            if control.refreshes:
                self._flow = self._dash = ControlFlow(
                    self._link, offset_s=self._offset_s, rtt=self._rtt, manifest_bytes=control.manifest_bytes,
                    sync_bytes=control.sync_bytes, period_s=refresh_s, first_request_s=joined + refresh_s,
                    sync=self._sync, planned=self.planned)
                self.resyncs_s = self._dash.resyncs_s
        session.advance(joined)  # the session joins at its first action
        self._inits: set[int] = set()

    def drive(self) -> None:
        session = self.session
        while True:
            action = session.next_action()
            if isinstance(action, Finished):
                if self._flow is not None:  # the answers crossed by the end (the player's re-syncs, reloads so far)
                    self._flow.advance(session.time_s)
                return
            if isinstance(action, Wait):
                session.advance(session.time_s + action.duration_s)
                continue
            assert isinstance(action, Fetch)
            self._fetch(action)

    def _fetch(self, fetch: Fetch) -> None:
        session, schedule, offset = self.session, self.session.schedule, self._offset_s
        size = int(self._sizes[fetch.segment_index, fetch.quality])
        requested = session.time_s
        rtt = self._rtt(requested)
        by_part = False  # HLS parts: each chunk its own request (else one answer)
        if self._control.hls and self._control.refreshes:
            requested, by_part = self._hls_listed(fetch, requested)
            rtt = self._rtt(requested)
        if self._control.init_bytes and fetch.quality not in self._inits:
            # The rung's init segment comes first, one request after another (LivePlayer._init).
            self._inits.add(fetch.quality)
            requested = self._transfer(requested + rtt, self._control.init_bytes)
            rtt = self._rtt(requested)
        n = schedule.chunks_per_segment
        if self._chunks is not None:
            parts = [int(b) for b in self._chunks[fetch.segment_index, fetch.quality]]
        else:  # no chunk sizes known (a size table): CMAF chunks of equal media, their bytes split evenly
            parts = [size // n + (1 if c < size % n else 0) for c in range(n)]
        if n == 1 and self._abandoning is not None and session.abandonable:
            ready = max(requested + rtt, schedule.chunk_available_s(fetch.segment_index, 0) + rtt / 2)
            finish = self._link.finish_time(ready + offset, size) - offset
            hit = first_abandonment(session, self._link, self._abandoning, size_bytes=size, start_s=requested + offset,
                                    latency_s=ready - requested, finish_s=finish + offset,
                                    rule=self._abandon)
            if hit is not None:  # told where the check left the session (`hit[0] - offset` can be an ulp before)
                session.on_abandon(session.time_s, bytes_received=hit[1],
                                   ttfb_s=self._finish(ready, min(PACKET_BYTES, size)) - requested)
                self.abandoned += 1
                return
        arrivals: list[ChunkArrival] = []
        headers = self._control.media_header_bytes
        # The answer's headers leave when the request is in, before any chunk is made.
        end = self._transfer(requested + rtt, headers) if headers else -math.inf
        asked, headed_s = requested, end
        for c, part in enumerate(parts):
            available = schedule.chunk_available_s(fetch.segment_index, c)
            if by_part and c > 0:
                # An LL-HLS part: its own request, sent with the one before when a playlist listed it by
                # then (HlsLivePlayer's parts asked for together), else once that one has landed and
                # the playlist hinting this one (answered as the part before was published) has crossed.
                reloads = self._reloads
                assert reloads is not None  # parts are asked for by an HLS player that reloads
                if not reloads.crossed_by(available, asked):
                    asked = max(end, reloads.listed_by(schedule.chunk_available_s(fetch.segment_index, c - 1)))
                    rtt = self._rtt(asked)
                if headers:
                    end = self._transfer(max(asked + rtt, end), headers)
            # Sent once the request is in and the chunk is made; DASH: half an RTT to reach the client.
            # HLS: an answer the server held for publication crosses as it leaves (`HELD_ANSWER_RTTS`).
            ready = max(asked + rtt, available + self._held_rtts * rtt)
            start = max(ready, end)
            end = self._transfer(start, part)
            arrivals.append(ChunkArrival(first_byte_s=start, last_byte_s=end, size_bytes=part))
            if c < n - 1:
                session.on_chunk(end, size_bytes=part, media_duration_s=schedule.chunk_s)
        session.on_download(end, size_bytes=size, ttfb_s=self._first_body_byte_s(arrivals[0], headed_s) - requested,
                            active_s=chunk_active_s(arrivals) if n > 1 else None)
        self.arrival_log.append((fetch.segment_index, requested, tuple(arrivals)))


    def _first_body_byte_s(self, chunk: ChunkArrival, headed_s: float) -> float:
        """When the answer's first body byte reaches the player: with the packet that carries it, as the
        emulated player times it (its first body piece's arrival; the shaper serves whole packets,
        `netsim.pacing.PACKET_BYTES`), not as it leaves. Headers the chunk followed on the link without a
        pause (`headed_s`: when they crossed) fill the start of that packet."""
        lead = self._control.media_header_bytes % PACKET_BYTES if chunk.first_byte_s <= headed_s else 0
        return min(self._finish(chunk.first_byte_s, min(PACKET_BYTES - lead, chunk.size_bytes)), chunk.last_byte_s)

    def playlist_reloads(self) -> int:
        """The HLS player's playlist reloads whose answers landed by the session's end (its join's
        when modelled, the refreshes, a switched-to rung's): its report's `playlist_reloads`."""
        end = self.session.time_s
        reloads = self._reloads
        landed = sum(1 for t in reloads.listed_s[reloads.joined_with:] if t <= end) if reloads is not None else 0
        return landed + sum(1 for t in self._switch_reloads if t <= end)

    def _rtt(self, at_s: float) -> float:
        rtt = self.trace.latency_at(at_s + self._offset_s) if self.trace.latency_s is not None else self.rtt_s
        return rtt + self._excess_s

    def _finish(self, start_s: float, size_bytes: float) -> float:
        return self._link.finish_time(start_s + self._offset_s, size_bytes) - self._offset_s

    @property
    def refreshed_s(self) -> list[float]:
        """DASH: session time each refresh was done (its MPD answer crossed, and its re-sync if it had
        one: the player's `manifest_refresh` event), those done by the session's end."""
        return self._dash.refreshed_s if self._dash is not None else []

    def _hls_listed(self, fetch: Fetch, requested_s: float) -> tuple[float, bool]:
        """When the HLS player can request `fetch`: once a reload lists the segment (or, playing parts,
        hints its first part); a rung switched to has its own playlist reloaded first, blocking for
        that. And whether each part is a request of its own (else one answer: the segment was
        complete when listed)."""
        control, schedule, index, reloads = self._control, self.session.schedule, fetch.segment_index, self._reloads
        assert reloads is not None  # an HLS player's twin
        parts = control.reload == "part" and schedule.chunks_per_segment > 1
        complete = schedule.complete_s(index)
        wanted = schedule.first_available_s(index) if parts else complete
        if fetch.quality != self._rung:  # HlsLivePlayer._listed on the new rung's stale playlist
            self._rung = fetch.quality
            rtt = self._rtt(requested_s)
            sent = requested_s + (1 - HELD_ANSWER_RTTS) * rtt  # the server has it (live_playlists.py)
            if control.reload != "poll":
                sent = max(sent, wanted)
            listed = self._transfer(sent + HELD_ANSWER_RTTS * rtt, control.manifest_bytes)
            self._switch_reloads.append(listed)
            if control.reload == "poll" and sent < complete:
                listed = max(listed, reloads.listed_by(complete))
            return listed, parts and sent < complete
        if parts:  # hinted by the playlist made as the part before it was published
            listed = max(requested_s, reloads.listed_by(wanted - schedule.chunk_s))
            return listed, not reloads.crossed_by(complete, listed)
        return max(requested_s, reloads.listed_by(complete)), False

    def _exchange(self, at_s: float, size_bytes: int) -> float:
        """One of the DASH join's UTCTiming requests at `at_s`: when its answer has crossed (alone on
        the link: the session joins once they have)."""
        first = at_s + self._rtt(at_s)
        self.planned.append((first, size_bytes))
        return self._finish(first, size_bytes)

    def _transfer(self, start_s: float, size_bytes: int) -> float:
        """When `size_bytes` starting to cross at `start_s` have crossed, with the player's other answers
        sharing the link (`AnswerFlow.transfer`: DASH's MPD and clock sync, HLS's playlists)."""
        if self._flow is not None:
            return self._flow.transfer(start_s, size_bytes)
        return self._finish(start_s, size_bytes)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class LiveResult:
    """One simulated live session."""

    abr: str
    trace: str
    stats: LiveStats
    qoe: dict[str, float]  # the MMSys 2020 live QoE's terms and total (`abr.qoe.LiveQoe`)
    qualities: np.ndarray
    bitrates_bps: np.ndarray
    latency_s: np.ndarray  # per segment, when it arrived
    playback_rate: np.ndarray
    rebuffer_s: np.ndarray
    events: tuple[SessionEvent, ...] = ()
    throughput_p50_bps: float | None = None  # the ABR's samples' median, as the live player reports it
    abandoned: int = 0  # downloads the ABR gave up (`LiveDriver.abandoned`)
    resyncs_s: tuple[float, ...] = ()  # session time each clock re-sync began (`LiveDriver.resyncs_s`)
    ttfb_p50_s: float | None = None  # the median time to first byte of the video downloads
    playlist_reloads: int | None = None  # HLS: reloads landed by the end (`LiveDriver.playlist_reloads`)


    @property
    def avg_bitrate_bps(self) -> float:
        return float(self.bitrates_bps.mean()) if self.bitrates_bps.size else math.nan

    @property
    def qoe_per_segment(self) -> float:
        return self.qoe["total"] / max(self.qualities.size, 1)


def run_live_session(abr_spec: str, base: Video, trace: Trace, config: LiveSimConfig, *,
                     abr: AbrAlgorithm | None = None, offset_s: float = 0.0, record_events: bool = False,
                     chunk_sizes_bytes: np.ndarray | None = None) -> LiveResult:
    """Simulate one live session of `base` looped as a channel (`live_video`) over `trace`; with
    `chunk_sizes_bytes` (segment, rung, chunk of `base`: `live_chunks`) each chunk is that big, else
    a segment's size is split evenly across its chunks."""
    video = live_video(base, config)
    chunks = live_chunks(base, chunk_sizes_bytes, config) if chunk_sizes_bytes is not None else None
    algorithm = abr if abr is not None else make(abr_spec)
    content = NominalSizes(video) if config.nominal_sizes else video
    session = LiveSession(algorithm, content, config.session, live=config.live, schedule=config.schedule(),
                          record_events=record_events)
    driver = LiveDriver(session, video, trace, rtt_s=config.rtt_s, trace_time_s=offset_s, control=config.control,
                        chunk_sizes_bytes=chunks, request_excess_s=config.request_excess_s)
    driver.drive()
    records = session.records
    bitrates = np.array([r.bitrate_bps for r in records], dtype=np.float64)
    rebuffer = np.asarray(session.rebuffer_per_segment_s(), dtype=np.float64)
    latency = np.asarray(session.record_latency_s, dtype=np.float64)
    rate = np.asarray(session.record_rate, dtype=np.float64)
    qoe = LiveQoe.for_ladder(video.ladder.bitrates_bps, config.segment_duration_s).terms(
        bitrates_bps=bitrates, rebuffer_s=rebuffer, latency_s=latency, playback_rate=rate)
    return LiveResult(abr=abr_spec, trace=trace.name, stats=session.stats(), qoe=qoe,
                      qualities=np.array([r.quality for r in records], dtype=np.int64), bitrates_bps=bitrates,
                      latency_s=latency, playback_rate=rate, rebuffer_s=rebuffer, events=tuple(session.events),
                      throughput_p50_bps=session.throughput_p50_bps(), abandoned=driver.abandoned,
                      resyncs_s=tuple(driver.resyncs_s),
                      playlist_reloads=driver.playlist_reloads() if config.control.hls else None,
                      ttfb_p50_s=float(np.median([r.ttfb_s for r in records])) if records else None)


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveSummary:
    """One algorithm over a set of traces: means with 95% CIs (Student t over sessions)."""

    abr: str
    sessions: int
    latency_p50_s: Interval
    latency_p95_s: Interval
    latency_max_s: Interval
    join_s: Interval
    stalls: Interval
    rebuffer_s: Interval
    rate_changes: Interval
    seeks_to_live: Interval
    avg_bitrate_kbps: Interval
    qoe: Interval  # live QoE per segment

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"abr": self.abr, "sessions": self.sessions}
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            if isinstance(value, Interval):
                out[name] = {"mean": value.mean, "low": value.low, "high": value.high}
        return out


def summarize(results: Sequence[LiveResult]) -> LiveSummary:
    if not results or len({r.abr for r in results}) != 1:
        raise ValueError("summarize the sessions of one algorithm")

    def ci(values: Sequence[float | None]) -> Interval:
        return mean_ci([v for v in values if v is not None and not math.isnan(v)])

    return LiveSummary(
        abr=results[0].abr, sessions=len(results),
        latency_p50_s=ci([r.stats.latency_p50_s for r in results]),
        latency_p95_s=ci([r.stats.latency_p95_s for r in results]),
        latency_max_s=ci([r.stats.latency_max_s for r in results]),
        join_s=ci([r.stats.join_s for r in results]),
        stalls=ci([r.stats.stalls for r in results]), rebuffer_s=ci([r.stats.rebuffer_s for r in results]),
        rate_changes=ci([r.stats.rate_changes for r in results]),
        seeks_to_live=ci([r.stats.seeks_to_live for r in results]),
        avg_bitrate_kbps=ci([r.avg_bitrate_bps / 1e3 for r in results]),
        qoe=ci([r.qoe_per_segment for r in results]),
    )


def compare_live(abrs: Sequence[str], base: Video, traces: Sequence[Trace], config: LiveSimConfig) -> list[LiveSummary]:
    """Every algorithm over every trace, summarised per algorithm."""
    return [summarize([run_live_session(spec, base, trace, config) for trace in traces]) for spec in abrs]


def format_live_table(summaries: Sequence[LiveSummary]) -> str:
    header = (f"{'abr':<14} {'n':>3} {'lat p50 s':>14} {'lat p95 s':>14} {'lat max s':>14} {'stalls':>13} "
              f"{'rebuf s':>13} {'rate chg':>15} {'seeks':>11} {'kbit/s':>17} {'live QoE/seg':>17}")
    lines = [header]
    for s in summaries:
        lines.append(f"{s.abr:<14} {s.sessions:>3} {s.latency_p50_s!s:>14} {s.latency_p95_s!s:>14} "
                     f"{s.latency_max_s!s:>14} {s.stalls!s:>13} {s.rebuffer_s!s:>13} {s.rate_changes!s:>15} "
                     f"{s.seeks_to_live!s:>11} {s.avg_bitrate_kbps!s:>17} {s.qoe!s:>17}")
    return "\n".join(lines)
