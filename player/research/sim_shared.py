"""N players behind one bottleneck in the simulator: every session advanced together on one trace.

`SharedLinkDriver` is `PipelinesDriver` (one session's audio and video pipelines on one link)
generalised to N sessions: every pipeline of every session is a transfer on one
`netsim.sharing.SharedLink`, so transfers that overlap share the trace's capacity evenly, the
processor-sharing limit of the shaper's max-min fair pacing per connection (docs/SHAPER.md). All
sessions start together at `trace_time_s`; each request's latency passes on the link clock before its
bytes flow (whatever the profile); an ABR that can abandon is asked during each video download, as
in `SessionDriver` and the headless player. Each response also carries its header bytes
(`RESPONSE_HEADER_BYTES`) on the shared link, as the shaper's link does: a segment's share of a link
that stays busy from one player's request to the next depends on every response before it in that
busy spell, so these few hundred bytes per response add up over N players' requests (docs/FLEET.md,
"Where the shared link's model differed"). One player alone is today's
single-player simulator (`run_shared` hands it to `run_session`), so N = 1 results are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from abr.qoe import QoeModel
from netsim.link import LinkModel
from netsim.sharing import SharedLink
from netsim.trace import Trace
from player.research.fairness import LinkFairness, festive_instability, link_fairness
from player.research.sim import SessionResult, SimProfile, result_of, run_session
from player.research.sim_abandon import AbandonChecks
from player.research.sim_pipelines import PipelinesDriver, _SessionClock
from player.session import PlaybackSession
from player.video import Video

# Bytes of an HTTP response before its body as this project's stack sends them through the edge
# (status line, headers, CORS and cache headers): 363-366 for the demo title's segments, measured as
# the shaper's delivered bytes less the segments' over 60 responses at N = 2 (docs/FLEET.md).
RESPONSE_HEADER_BYTES = 364

# The shared-link model's version, part of each `--players-per-link` results key
# (`experiment_cells.Cell.key`), so a rerun into an older results folder runs the groups again rather
# than reusing rows the model computed differently (simulated rows, and the emulated rows' link-model
# column). 1 (keys without it): responses without header bytes; 2: each response carries
# `RESPONSE_HEADER_BYTES`. Raise it whenever the shared-link model's answers change.
SHARED_LINK_MODEL_VERSION = f"2h{RESPONSE_HEADER_BYTES}"


class SharedLinkDriver:
    """Plays N sessions of one video over one trace together, in virtual time (see the module docstring).

    Session i joins `joins_s[i]` seconds after the link's time 0 (which lies `trace_time_s` into the
    trace; default: all at 0), so its session time t is link time t + joins_s[i]. `drive()` runs
    until every session has every segment; whatever a session's `next_action` raises propagates.
    `drivers[i].records` are session i's video records in arrival order. `header_bytes`: what each
    response carries on the link beyond its segment (the records keep the segments' sizes).
    """

    def __init__(self, sessions: Sequence[PlaybackSession], video: Video, trace: Trace, prof: SimProfile, *,
                 trace_time_s: float = 0.0, joins_s: Sequence[float] | None = None,
                 header_bytes: int = 0) -> None:
        if not sessions:
            raise ValueError("a shared link needs at least one session")
        if any(s.time_s != 0.0 for s in sessions):
            raise ValueError("the sessions on a shared link must not have started yet (session time 0)")
        joins = [0.0] * len(sessions) if joins_s is None else [float(j) for j in joins_s]
        if len(joins) != len(sessions) or not all(math.isfinite(j) and j >= 0 for j in joins):
            raise ValueError(f"give one join time >= 0 s per session, got {joins_s!r}")
        self.link = LinkModel(trace, payload_factor=prof.payload_factor)
        self.shared = SharedLink(_SessionClock(self.link, trace_time_s), now_s=0.0)
        self.joins_s = tuple(joins)
        self.drivers = [PipelinesDriver(s, video, trace, prof, trace_time_s=trace_time_s + j, link=self.link,
                                        shared=self.shared, tag=i, shift_s=j, header_bytes=header_bytes)
                        for i, (s, j) in enumerate(zip(sessions, joins))]
        self.now_s = 0.0  # link time since time 0
        # As `SessionDriver`: an ABR that can abandon is offered each video download's progress (the
        # headless player asks it too).
        self._checks = AbandonChecks(self.drivers, self.shared, prof)

    @property
    def abandoned(self) -> list[int]:
        return [d.abandoned for d in self.drivers]

    def drive(self) -> None:
        while True:
            joined = [d for d in self.drivers if d.shift_s <= self.now_s and not d.finished]
            for driver in joined:
                driver.request_ready()
            active = [d for d in joined if not d.finished]
            later = min((d.shift_s for d in self.drivers if d.shift_s > self.now_s), default=math.inf)
            if not active and later == math.inf:
                return
            wake = min((d.wake_s() + d.shift_s for d in active), default=math.inf)
            check = self._checks.next_s()
            now = max(min(self.shared.next_event_s(), wake, later, check), self.now_s)
            if now == math.inf:
                raise RuntimeError(f"simulated shared link stuck at t={self.now_s!r}: nothing in flight or waiting")
            for tag, media in self.shared.advance(now):  # type: ignore[misc]
                driver = self.drivers[tag]
                driver.complete(media, now - driver.shift_s)
            for driver in active:
                session_now = now - driver.shift_s
                wake = driver.wake_s()
                if session_now < wake and wake + driver.shift_s <= now:
                    session_now = wake  # its wake-up was this event; only rounding of the shift separates them
                driver.session.advance(session_now)
            self.now_s = now
            self._checks.run(now)


@dataclass(frozen=True, kw_only=True, slots=True)
class SharedLinkResult:
    """N sessions on one link: each player's result and how they fared together."""

    trace: str
    offset_s: float  # where in the trace the link's time 0 lies
    joins_s: tuple[float, ...]  # when each player joined, link seconds from time 0
    players: tuple[SessionResult, ...]
    fairness: LinkFairness


def transfer_end_s(result: SessionResult) -> float:
    """Session time at which the player's last download (video or audio) ended."""
    ends = [float(t + d) for t, d in zip(result.request_time_s, result.download_s)]
    ends += [r.request_time_s + r.download_s for r in result.audio_records]
    return max(ends, default=0.0)


def transfer_bytes(result: SessionResult) -> float:
    """Bytes the player downloaded: its video and audio segments."""
    return float(result.size_bytes.sum()) + sum(r.size_bytes for r in result.audio_records)


def fairness_of(results: Sequence[SessionResult], video: Video, link: LinkModel, offset_s: float,
                joins_s: Sequence[float], qoe: str) -> LinkFairness:
    """How `results`, played together on `link` from link time `offset_s` (player i joining `joins_s[i]`
    later), fared on the QoE model `qoe`. Utilisation counts the link's capacity until the last
    player's last download ended."""
    end_s = max(j + transfer_end_s(r) for r, j in zip(results, joins_s))
    capacity = link.bytes_until(offset_s + end_s) - link.bytes_until(offset_s)
    seg_s = video.ladder.segment_duration_s
    return link_fairness(
        avg_bitrates_bps=[r.metrics.avg_bitrate_bps for r in results], qoes=[r.metrics.qoe[qoe] for r in results],
        switches=[r.metrics.switches for r in results],
        instabilities=[festive_instability(r.bitrates_bps, seg_s) for r in results],
        received_bytes=sum(transfer_bytes(r) for r in results), capacity_bytes=capacity)


def join_times_s(players: int, spacing_s: float) -> tuple[float, ...]:
    """Player i joins `i * spacing_s` after the first."""
    if players < 1 or not (math.isfinite(spacing_s) and spacing_s >= 0):
        raise ValueError(f"need players >= 1 and a join spacing >= 0 s, got {players}, {spacing_s!r}")
    return tuple(i * spacing_s for i in range(players))


def run_shared(abr_specs: Sequence[str], video: Video, trace: Trace, prof: SimProfile, *, offset_s: float = 0.0,
               join_spacing_s: float = 0.0, models: Sequence[QoeModel] | None = None,
               header_bytes: int = RESPONSE_HEADER_BYTES, joins_s: Sequence[float] | None = None) -> SharedLinkResult:
    """One player per spec in `abr_specs` (the same name repeated for a homogeneous group), all behind
    one link playing `trace` from `offset_s`, player i joining `i * join_spacing_s` after the first (or
    `joins_s[i]` link seconds after time 0, when given: the first must be 0), each response carrying
    `header_bytes` on the link besides its segment (N > 1; one player alone is `run_session`, unchanged)."""
    if not abr_specs:
        raise ValueError("give at least one ABR spec (one per player)")
    if joins_s is None:
        joins = join_times_s(len(abr_specs), join_spacing_s)
    else:
        joins = tuple(float(j) for j in joins_s)
        if len(joins) != len(abr_specs) or joins[0] != 0.0 or not all(math.isfinite(j) and j >= 0 for j in joins):
            raise ValueError(f"give one join time >= 0 s per player, the first 0, got {joins_s!r}")
    models = prof.qoe_models(video) if models is None else models
    if len(abr_specs) == 1:
        results: list[SessionResult] = [run_session(abr_specs[0], video, trace, prof, offset_s=offset_s, models=models)]
    else:
        sessions = [PlaybackSession(prof.make_abr(spec, video), video, prof.session) for spec in abr_specs]
        driver = SharedLinkDriver(sessions, video, trace, prof, trace_time_s=offset_s, joins_s=joins,
                                  header_bytes=header_bytes)
        driver.drive()
        results = [result_of(spec, video, trace, prof, d.session, d.records, offset_s=offset_s + j, models=models,
                             abandoned=d.abandoned) for spec, d, j in zip(abr_specs, driver.drivers, joins)]
    link = LinkModel(trace, payload_factor=prof.payload_factor)
    return SharedLinkResult(trace=trace.name, offset_s=offset_s, joins_s=joins, players=tuple(results),
                            fairness=fairness_of(results, video, link, offset_s, joins, prof.qoe.name))


def simulate_shared(abr_spec: str, video: Video, traces: Sequence[Trace], prof: SimProfile, *, players: int,
                    offsets_s: Sequence[float] | None = None, join_spacing_s: float = 0.0) -> list[SharedLinkResult]:
    """For each trace, `players` sessions of `abr_spec` behind one link playing it (see `run_shared`)."""
    if players < 1:
        raise ValueError(f"players per link must be >= 1, got {players}")
    offsets = list(offsets_s) if offsets_s is not None else [0.0] * len(traces)
    if len(offsets) != len(traces):
        raise ValueError("give one offset per trace")
    return [run_shared([abr_spec] * players, video, t, prof, offset_s=o, join_spacing_s=join_spacing_s)
            for t, o in zip(traces, offsets)]
