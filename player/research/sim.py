"""The simulator: drives `PlaybackSession` on virtual time through netsim's link model.

Two engines with one semantics:
- `run_session` drives the shared state machine one session at a time (any algorithm, full event log);
- `run_batch` advances many sessions in lock-step with numpy, for algorithms that implement
  `decide_batch` (the fast path for sweeps); `tests/player/research/test_sim.py` checks it against
  `run_session` segment by segment.

Profiles fix the download model. `pensieve` reproduces Pensieve's fixed test simulator
(`test/fixed_env.py`): 0.95 payload factor, an 80 ms RTT added to each download's delay but not to
the trace clock, a 60 s buffer cap left in 500 ms sleeps, first segment at quality 1, no abandonment.
`default` is closer to a real player behind our shaper: the request latency (the trace's, else the
base RTT) passes on the trace clock too, goodput equals the trace rate, the first quality is the
algorithm's, and an algorithm that can abandon a download (`should_abandon`) is asked during each
one, as the headless player asks it. `sabre` is Sabre's player model (UMass-LIDS/sabre `sabre.py`):
`default` with a 25 s cap that waits until a whole segment fits, and Sabre's metrics.

Link faults (`netsim.faults.FaultWindow`: outages, loss bursts) go through the same link model as in
the shaper (`FaultedLink`, `FaultedLinkBatch`); their times are seconds of link (trace) time from the
session's start, as in `abrkit shape`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from abr.qoe import (
    PENSIEVE_REBUFFER_PENALTIES,
    QOE_CONFIGS,
    SABRE_GAMMA_P,
    QoeConfig,
    QoeModel,
    SessionMetrics,
    session_metrics_batch,
)
from abr.registry import describe, maker, parse_spec
from abr.types import Abandoning, AbrAlgorithm, BatchAbr, BatchObservation
from netsim.faults import FaultedLink, FaultedLinkBatch, FaultWindow
from netsim.link import LinkBatch, LinkModel
from netsim.trace import Trace
from player.abandon import AbandonRule, AbandonSchedule
from player.research.sim_abandon import first_abandonment
from player.research.sim_pipelines import PipelinesDriver
from player.session import Fetch, Finished, PlaybackSession, SegmentRecord, SessionConfig, SessionEvent, Wait
from player.video import Video


@dataclass(frozen=True, kw_only=True, slots=True)
class SimProfile:
    """How downloads take time in simulation, plus the player policy and per-algorithm parameters."""

    name: str
    session: SessionConfig
    payload_factor: float = 1.0  # goodput / trace capacity
    rtt_s: float = 0.08  # base request latency (used when the trace has none)
    latency_on_trace_clock: bool = True  # False: Pensieve adds the RTT to the delay only
    # Bytes of each response's status line and headers, crossing the link before its body. 0 (the
    # reference simulators' convention: a segment's bytes only); an HTTP player's link carries them
    # too (this stack's answers: `sim_shared.RESPONSE_HEADER_BYTES`), so emulation parity sets them.
    response_header_bytes: int = 0
    abr_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Abandonment: an algorithm with `should_abandon` is offered each download's progress at the
    # checks of `player.abandon.AbandonRule` (the headless player's too): every `abandon_check_s`
    # from the request, once `abandon_check_bytes` more of the body are in than at the previous
    # offer; a check short of bytes is skipped ("grid") or, on Sabre's schedule ("sabre": its
    # NetworkModel, min_progress_time = 50 ms, min_progress_size = 12,000 bits), waits for them.
    abandonment: bool = True
    abandon_check_s: float = 0.05
    abandon_check_bytes: int = 1500
    abandon_schedule: AbandonSchedule = "grid"
    sabre_gamma_p: float | None = None  # report Sabre's metrics with this stall weight (None: not computed)
    # The QoE reported first and optimised by algorithms that take a QoE (`objective_params`), and
    # the stall penalties this profile fixes per utility (else a QoE's default is its top rung's utility).
    qoe: QoeConfig = field(default_factory=lambda: QOE_CONFIGS["lin"])
    fixed_rebuffer_penalties: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.payload_factor <= 1:
            raise ValueError(f"payload factor must be in (0, 1], got {self.payload_factor}")
        if self.rtt_s < 0:
            raise ValueError(f"RTT must be >= 0 s, got {self.rtt_s}")
        if self.response_header_bytes < 0:
            raise ValueError(f"response header bytes must be >= 0, got {self.response_header_bytes}")
        if self.abandonment and not self.latency_on_trace_clock:
            raise ValueError("abandonment needs the request latency on the trace clock (latency_on_trace_clock)")
        self.abandon_rule  # checks the interval, the bytes and the schedule (AbandonRule)
        # A private copy: callers cannot change a profile after it is made (it must stay picklable).
        object.__setattr__(self, "abr_params", {k: dict(v) for k, v in self.abr_params.items()})
        object.__setattr__(self, "fixed_rebuffer_penalties", dict(self.fixed_rebuffer_penalties))

    @property
    def abandon_rule(self) -> AbandonRule:
        """When a download in flight is offered to `should_abandon` (with `abandonment`)."""
        return AbandonRule(check_s=self.abandon_check_s, check_bytes=self.abandon_check_bytes,
                           schedule=self.abandon_schedule)

    def make_abr(self, spec: str, video: Video | None = None) -> AbrAlgorithm:
        """The registry's algorithm with this profile's parameters for it and, for an algorithm that
        optimises a QoE, this profile's QoE on `video` (the spec's own parameters win over both)."""
        return self.abr_maker(spec, video)()

    def abr_maker(self, spec: str, video: Video | None = None) -> Callable[[], AbrAlgorithm]:
        """`make_abr(spec, video)` as a function of no arguments (the spec is parsed once; each call
        makes a fresh instance)."""
        name, _ = parse_spec(spec)
        return maker(spec, **{**self.objective_params(name, video), **self.abr_params.get(name, {})})

    def objective_params(self, name: str, video: Video | None) -> dict[str, Any]:
        """The QoE as parameters, for an algorithm whose factory takes `utility`, `rebuffer_penalty`
        and `switch_penalty` (MPC): what it optimises is what the session is scored on."""
        accepted = {p.name for p in describe(name)}
        if not {"utility", "rebuffer_penalty", "switch_penalty"} <= accepted:
            return {}
        qoe = self.qoe
        params: dict[str, Any] = {"utility": qoe.utility, "switch_penalty": qoe.switch}
        penalty = qoe.rebuffer if qoe.rebuffer is not None else self.fixed_rebuffer_penalties.get(qoe.utility)
        if penalty is None and qoe.utility == "quality" and video is not None:
            penalty = self.qoe_model(qoe, video).rebuffer_penalty
        if penalty is not None:
            params["rebuffer_penalty"] = penalty
        return params

    def qoe_model(self, config: QoeConfig, video: Video) -> QoeModel:
        """`config` on `video`, with this profile's fixed stall penalty where it has one."""
        fixed = self.fixed_rebuffer_penalties.get(config.utility) if config.rebuffer is None else None
        return config.model(video.ladder.bitrates_bps, quality_metric=video.quality_metric,
                            top_quality=video.top_quality, fixed_rebuffer=fixed)

    def qoe_models(self, video: Video) -> tuple[QoeModel, ...]:
        """Every QoE reported for sessions of `video`: lin, log, hd, quality (where the video has
        per-segment quality) and this profile's own QoE."""
        names = ["lin", "log", "hd"] + (["quality"] if video.quality is not None else [])
        configs = {name: QOE_CONFIGS[name] for name in names}
        configs[self.qoe.name] = self.qoe
        return tuple(self.qoe_model(config, video) for config in configs.values())

    def with_qoe(self, config: QoeConfig) -> SimProfile:
        """This profile scoring (and optimising) `config`; the name records a QoE other than lin."""
        if config == self.qoe:
            return self
        return replace(self, name=f"{self.name}[qoe={config.name}]", qoe=config)

    def with_player(self, **changes: Any) -> SimProfile:
        """This profile with player settings changed: `SessionConfig` fields (`buffer_cap_s`,
        `cap_rule`, `startup_threshold_s`, ...) and the profile's own (`abandonment`, `rtt_s`, ...).
        The name records the changes, so results and caches keyed by it stay apart."""
        if not changes:
            return self
        session_fields = set(SessionConfig.__dataclass_fields__)
        profile_fields = set(SimProfile.__dataclass_fields__) - {"name", "session", "abr_params"}
        unknown = sorted(set(changes) - session_fields - profile_fields)
        if unknown:
            raise ValueError(f"unknown player setting(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(sorted(session_fields | profile_fields))}")
        session = replace(self.session, **{k: v for k, v in changes.items() if k in session_fields})
        label = ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
        return replace(self, name=f"{self.name}[{label}]", session=session,
                       **{k: v for k, v in changes.items() if k in profile_fields})


PROFILES: dict[str, SimProfile] = {
    "pensieve": SimProfile(
        name="pensieve",
        session=SessionConfig(startup_threshold_s=0.0, buffer_cap_s=60.0, sleep_quantum_s=0.5, initial_quality=1,
                              history_len=8, lookahead_segments=6),
        payload_factor=0.95,  # Pensieve fixed_env.py PACKET_PAYLOAD_PORTION
        rtt_s=0.08,  # Pensieve LINK_RTT = 80 ms
        latency_on_trace_clock=False,
        abr_params={"bba": {"map": "pensieve"}, "mpc": {"pensieve_indexing": True},
                    "mpc-robust": {"pensieve_indexing": True}},
        abandonment=False,  # fixed_env.py downloads every chunk whole
        fixed_rebuffer_penalties=PENSIEVE_REBUFFER_PENALTIES,  # 4.3 and 2.66 whatever the ladder
    ),
    "default": SimProfile(
        name="default",
        session=SessionConfig(startup_threshold_s=0.0, buffer_cap_s=60.0, history_len=20, lookahead_segments=6),
        payload_factor=1.0,
        rtt_s=0.08,
        latency_on_trace_clock=True,
    ),
    # Sabre's main loop (sabre.py at 09b03bb): a 25 s buffer (-b) that waits until a whole segment
    # fits, playback from the first segment, abandonment on (-noa off), its metrics with gamma_p = 5.
    "sabre": SimProfile(
        name="sabre",
        session=SessionConfig(startup_threshold_s=0.0, buffer_cap_s=25.0, cap_rule="room", history_len=20,
                              lookahead_segments=6),
        payload_factor=1.0,
        rtt_s=0.08,
        latency_on_trace_clock=True,
        abandon_schedule="sabre",
        sabre_gamma_p=SABRE_GAMMA_P,
    ),
}


def profile(name: str) -> SimProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown simulation profile {name!r}; choose from {', '.join(PROFILES)}") from None


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class SessionResult:
    """One simulated session: per-segment arrays plus the metrics derived from them."""

    abr: str
    trace: str
    qualities: np.ndarray  # (N,) int
    bitrates_bps: np.ndarray  # (N,)
    rebuffer_s: np.ndarray  # (N,) stall while fetching each segment (0 for segment 0)
    buffer_s: np.ndarray  # (N,) after each segment was added
    buffer_before_s: np.ndarray  # (N,) when each request was made
    download_s: np.ndarray  # (N,)
    size_bytes: np.ndarray  # (N,)
    request_time_s: np.ndarray  # (N,)
    metrics: SessionMetrics
    reasons: tuple[str, ...] = ()
    events: tuple[SessionEvent, ...] = ()
    trace_offset_s: float = 0.0
    engine: str = "session"  # which engine ran it: "session" (the state machine) or "batch" (lock-step)
    audio_records: tuple[SegmentRecord, ...] = ()  # the audio pipeline's segments (a video with audio)
    abandoned: int = 0  # downloads given up (and fetched again) in the session

    @property
    def qoe_lin(self) -> float:
        return self.metrics.qoe["lin"]


def _results(abr: str, traces: Sequence[Trace], video: Video, qualities: np.ndarray, rebuffer: np.ndarray,
             buffer: np.ndarray, buffer_before: np.ndarray, download: np.ndarray, request: np.ndarray, startup_s: np.ndarray,
             stall_count: np.ndarray | None, models: Sequence[QoeModel], offsets_s: Sequence[float],
             reasons: Sequence[tuple[str, ...]] = (), events: Sequence[tuple[SessionEvent, ...]] = (),
             engine: str = "session", sabre_gamma_p: float | None = None,
             abandoned: Sequence[int] = ()) -> list[SessionResult]:
    """Results of sessions given (segments, sessions) arrays; metrics are computed in one pass."""
    ladder = np.asarray(video.ladder.bitrates_bps)
    bitrates = ladder[qualities]
    rows = np.arange(qualities.shape[0])[:, None]
    sizes = video.sizes_bytes[rows, qualities]
    quality = None if video.quality is None else video.quality[rows, qualities]
    metrics = session_metrics_batch(bitrates_bps=bitrates, rebuffer_s=rebuffer, ladder_bps=ladder,
                                    segment_duration_s=video.ladder.segment_duration_s, startup_s=startup_s,
                                    rebuffer_count=stall_count, models=models, sabre_gamma_p=sabre_gamma_p,
                                    quality=quality)
    return [
        SessionResult(abr=abr, trace=traces[j].name, qualities=qualities[:, j], bitrates_bps=bitrates[:, j],
                      rebuffer_s=rebuffer[:, j], buffer_s=buffer[:, j], buffer_before_s=buffer_before[:, j], download_s=download[:, j],
                      size_bytes=sizes[:, j], request_time_s=request[:, j], metrics=metrics[j],
                      reasons=reasons[j] if reasons else (), events=events[j] if events else (),
                      trace_offset_s=float(offsets_s[j]), engine=engine, abandoned=abandoned[j] if abandoned else 0)
        for j in range(len(traces))
    ]


def faults_from(faults: Sequence[FaultWindow], start_s: float) -> tuple[FaultWindow, ...]:
    """`faults` given from a session's start, on the trace clock of a session that starts at `start_s`."""
    return tuple(replace(w, start_s=w.start_s + start_s) for w in faults)


class SessionDriver:
    """Plays a `PlaybackSession` over one trace with the profile's download model, in virtual time.

    `drive()` runs until every segment is in. Whatever `session.next_action()` raises propagates with
    the driver unchanged (the session asks its ABR before it changes any state), so calling `drive()`
    again resumes exactly there: the Gymnasium environment pauses a session this way at each decision.
    `faults` block the link in windows of link time from the start (`trace_time_s`). A video with
    audio is played by `PipelinesDriver` (two pipelines sharing the link; `sim_pipelines`), which
    offers abandonment the same way (`sim_abandon`).

    With the profile's `abandonment`, an algorithm that has `should_abandon` is offered the download's
    `session.progress(...)` at each of the profile's checks (the same call the headless player makes);
    on an answer the download stops there (`session.on_abandon`: its time drained the buffer, its bytes
    are wasted) and the session decides the segment again.
    """

    def __init__(self, session: PlaybackSession, video: Video, trace: Trace, prof: SimProfile, *,
                 trace_time_s: float = 0.0, faults: Sequence[FaultWindow] = ()) -> None:
        self.session = session
        self.trace = trace
        self.prof = prof
        self.trace_time_s = trace_time_s
        self.records: list[SegmentRecord] = []
        self.abandoned = 0
        self._sizes = video.upcoming(0, video.sizes_bytes.shape[0])  # every row, as Python ints (built once per video)
        link = LinkModel(trace, payload_factor=prof.payload_factor)
        self._link: LinkModel | FaultedLink = (
            FaultedLink(link, faults_from(faults, trace_time_s)) if faults else link)
        self._pipelines = (PipelinesDriver(session, video, trace, prof, trace_time_s=trace_time_s, link=self._link,
                                           header_bytes=prof.response_header_bytes)
                           if video.audio is not None else None)
        # getattr decides what isinstance(abr, Abandoning) would, without a runtime protocol check per session
        self._abandoning: Abandoning | None = (
            session.abr if prof.abandonment and getattr(session.abr, "should_abandon", None) is not None else None)

    def drive(self) -> None:
        if self._pipelines is not None:
            self._pipelines.drive()
            self.records, self.trace_time_s = self._pipelines.records, self._pipelines.trace_time_s
            self.abandoned = self._pipelines.abandoned
            return
        session, prof, trace = self.session, self.prof, self.trace
        # Bound once: this loop runs once per segment of every simulated session.
        next_action, on_download, finish_time = session.next_action, session.on_download, self._link.finish_time
        sizes, append = self._sizes, self.records.append
        on_trace_clock, has_latency, rtt_s = prof.latency_on_trace_clock, trace.latency_s is not None, prof.rtt_s
        header = prof.response_header_bytes
        while True:
            action = next_action()
            if type(action) is not Fetch:
                if isinstance(action, Finished):
                    return
                if isinstance(action, Wait):
                    session.advance(session.time_s + action.duration_s)
                    self.trace_time_s += action.duration_s
                    continue
                raise TypeError(f"unexpected action {action!r}")
            size = sizes[action.segment_index][action.quality]
            start, requested = self.trace_time_s, session.time_s
            if on_trace_clock:
                latency = trace.latency_at(start) if has_latency else rtt_s
                finish = finish_time(start + latency, size + header)
                if self._abandoning is not None and self._abandoned(size, start, latency, finish):
                    continue
                elapsed = finish - start
            else:
                latency = rtt_s
                finish = finish_time(start, size + header)
                elapsed = finish - start + latency
            self.trace_time_s = finish
            append(on_download(requested + elapsed, size_bytes=size, ttfb_s=latency))

    def _abandoned(self, size: int, start: float, latency: float, finish: float) -> bool:
        """Offers the download requested at trace time `start` to `should_abandon` at each progress
        check before it completes at `finish`; True (and the session told) if the ABR gave it up."""
        assert self._abandoning is not None
        hit = first_abandonment(self.session, self._link, self._abandoning, size_bytes=size, start_s=start,
                                latency_s=latency, finish_s=finish, rule=self.prof.abandon_rule,
                                header_bytes=self.prof.response_header_bytes)
        if hit is None:
            return False
        check, received = hit
        self.session.on_abandon(self.session.time_s, bytes_received=received, ttfb_s=latency)  # where the check left it
        self.trace_time_s = check
        self.abandoned += 1
        return True


def run_session(abr_spec: str, video: Video, trace: Trace, prof: SimProfile, *, abr: AbrAlgorithm | None = None,
                offset_s: float = 0.0, record_events: bool = False, faults: Sequence[FaultWindow] = (),
                models: Sequence[QoeModel] | None = None) -> SessionResult:
    """Simulate one session through the shared state machine (`faults`: see `SessionDriver`; `models`:
    the QoE models scored, by default the profile's `qoe_models`)."""
    make_abr = (lambda: abr) if abr is not None else prof.abr_maker(abr_spec, video)
    (result,) = _run_sessions(abr_spec, make_abr, video, [trace], prof, offsets_s=[offset_s],
                              record_events=record_events, faults=faults, models=models)
    return result


def _run_sessions(abr_spec: str, make_abr: Callable[[], AbrAlgorithm], video: Video, traces: Sequence[Trace],
                  prof: SimProfile, *, offsets_s: Sequence[float], record_events: bool,
                  faults: Sequence[FaultWindow], models: Sequence[QoeModel] | None) -> list[SessionResult]:
    """One state-machine session per trace (a fresh algorithm from `make_abr` each); the metrics of
    all of them are computed in one pass."""
    if not traces:
        return []
    models = prof.qoe_models(video) if models is None else models
    columns: dict[str, list[list[float]]] = {k: [] for k in ("quality", "rebuffer", "buffer", "before", "download",
                                                             "request")}
    startup, stalls, reasons, events, abandoned, audio = [], [], [], [], [], []
    for trace, offset_s in zip(traces, offsets_s):
        session = PlaybackSession(make_abr(), video, prof.session, record_events=record_events)
        driver = SessionDriver(session, video, trace, prof, trace_time_s=offset_s, faults=faults)
        driver.drive()
        records = driver.records
        columns["quality"].append([r.quality for r in records])
        columns["rebuffer"].append(session.rebuffer_per_segment_s())
        columns["buffer"].append([r.buffer_after_s for r in records])
        columns["before"].append([r.buffer_before_s for r in records])
        columns["download"].append([r.download_s for r in records])
        columns["request"].append([r.request_time_s for r in records])
        startup.append(session.startup_s or 0.0)
        stalls.append(session.stall_count)
        reasons.append(tuple(r.reason for r in records))
        events.append(tuple(session.events))
        abandoned.append(driver.abandoned)
        audio.append(tuple(session.audio_records))

    def column(name: str, dtype: type = np.float64) -> np.ndarray:
        return np.asarray(columns[name], dtype=dtype).T  # (segments, sessions)

    results = _results(
        abr_spec, traces, video, qualities=column("quality", np.int64), rebuffer=column("rebuffer"),
        buffer=column("buffer"), buffer_before=column("before"), download=column("download"),
        request=column("request"), startup_s=np.array(startup), stall_count=np.array(stalls), models=models,
        offsets_s=offsets_s, reasons=reasons, events=events, sabre_gamma_p=prof.sabre_gamma_p, abandoned=abandoned,
    )
    return [replace(r, audio_records=a) if a else r for r, a in zip(results, audio)]


def result_of(abr_spec: str, video: Video, trace: Trace, prof: SimProfile, session: PlaybackSession,
              records: Sequence[SegmentRecord], *, offset_s: float, models: Sequence[QoeModel],
              abandoned: int = 0) -> SessionResult:
    """The `SessionResult` of a session driven from outside (`sim_shared`) whose video `records`
    arrived in this order."""
    def column(values: list[float], dtype: type = np.float64) -> np.ndarray:
        return np.asarray(values, dtype=dtype)[:, None]

    (result,) = _results(
        abr_spec, [trace], video,
        qualities=column([r.quality for r in records], np.int64),
        rebuffer=column(session.rebuffer_per_segment_s()),
        buffer=column([r.buffer_after_s for r in records]),
        buffer_before=column([r.buffer_before_s for r in records]),
        download=column([r.download_s for r in records]),
        request=column([r.request_time_s for r in records]),
        startup_s=np.array([session.startup_s or 0.0]), stall_count=np.array([session.stall_count]), models=models,
        offsets_s=[offset_s], reasons=[tuple(r.reason for r in records)], events=[tuple(session.events)],
        sabre_gamma_p=prof.sabre_gamma_p, abandoned=[abandoned],
    )
    return replace(result, audio_records=tuple(session.audio_records)) if session.audio_records else result


def cap_sleep_s(buffer_s: np.ndarray, cfg: SessionConfig, segment_duration_s: float | None = None) -> np.ndarray:
    """How long each session waits before its next request under the cap rule (`cap_excess_s`; the
    "room" rule needs the `segment_duration_s`)."""
    if cfg.cap_rule == "room":
        if segment_duration_s is None:
            raise ValueError("the 'room' cap rule needs the segment duration")
        over = np.minimum(buffer_s + segment_duration_s - cfg.buffer_cap_s, buffer_s)
    else:
        over = buffer_s - cfg.buffer_cap_s
    if cfg.sleep_quantum_s > 0:
        return np.where(over > 0, np.ceil(over / cfg.sleep_quantum_s) * cfg.sleep_quantum_s, 0.0)
    return np.maximum(over, 0.0)


class LatencyLookup:
    """Per-request latency for a batch: the trace's own (Sabre) where it has one, else the profile RTT."""

    def __init__(self, traces: Sequence[Trace], prof: SimProfile) -> None:
        self._traces = traces
        self._with_latency = [j for j, t in enumerate(traces) if t.latency_s is not None]
        self._base = np.full(len(traces), prof.rtt_s)

    def at(self, trace_time: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        if not self._with_latency:
            return self._base if which is None else self._base[which]
        j = np.arange(len(self._traces)) if which is None else which
        out = self._base[j].copy()
        for k, (tj, x) in enumerate(zip(j, trace_time)):
            trace = self._traces[int(tj)]
            if trace.latency_s is not None:
                out[k] = trace.latency_at(float(x))
        return out


def download_step(links: LinkBatch | FaultedLinkBatch, latency: LatencyLookup, prof: SimProfile, trace_time: np.ndarray,
                  size_bytes: np.ndarray, which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(trace time when the download ends, session time it took) for requests made at `trace_time`
    (each response's `prof.response_header_bytes` before its body)."""
    if prof.response_header_bytes:
        size_bytes = size_bytes + prof.response_header_bytes
    if prof.latency_on_trace_clock:
        finish = links.finish_time(trace_time + latency.at(trace_time, which), size_bytes, which)
        return finish, finish - trace_time
    finish = links.finish_time(trace_time, size_bytes, which)
    return finish, finish - trace_time + prof.rtt_s


def buffer_step(buffer_s: np.ndarray, elapsed_s: np.ndarray, segment_duration_s: float, *,
                started: bool | np.ndarray = True) -> tuple[np.ndarray, np.ndarray]:
    """(stall s, buffer s after the segment is added) for downloads that took `elapsed_s` of session time.

    `buffer_s` is the level when each request was made (after any cap sleep, `cap_sleep_s`). Playback
    drains it meanwhile and stalls once it runs dry; where playback has not `started` yet (the first
    segment), that wait is startup delay, not a stall. The state machine's scalar twin is
    `PlaybackSession.on_download`.
    """
    stall = np.where(started, np.maximum(elapsed_s - buffer_s, 0.0), 0.0)
    return stall, np.maximum(buffer_s - elapsed_s, 0.0) + segment_duration_s


def supports_batch(algorithm: AbrAlgorithm, prof: SimProfile, video: Video) -> bool:
    """The lock-step engine applies when the algorithm is vectorised, one segment starts playback and
    the video has no audio (two pipelines sharing the link run in the session engine only)."""
    seg = video.ladder.segment_duration_s
    cfg = prof.session
    abandons = prof.abandonment and isinstance(algorithm, Abandoning)  # the lock-step engine cannot abandon
    return (isinstance(algorithm, BatchAbr) and video.audio is None and not abandons and cfg.startup_threshold_s <= seg
            and cfg.rebuffer_resume_s <= seg)


class LockStep:
    """The batch engine's state: B sessions of one video advancing in lock-step, one segment per `step`.

    `observation()` is what every session sees before segment `segment_index` (after its cap sleep);
    `step(q)` downloads that segment at qualities `q` and prepares the next one. `which[j]` is session
    j's trace in `links` and `latency` (default: session j's own). `run_batch` and the vectorised
    Gymnasium environment (`player.research.gym_vector`) both drive it.
    """

    def __init__(self, video: Video, prof: SimProfile, links: LinkBatch | FaultedLinkBatch, latency: LatencyLookup,
                 trace_time_s: np.ndarray, which: np.ndarray | None = None) -> None:
        b = int(trace_time_s.shape[0])
        n = video.segment_count
        self.video, self.prof, self.links, self.latency, self.which = video, prof, links, latency, which
        self.segment_index = 0
        self.trace_time_s = np.asarray(trace_time_s, dtype=np.float64).copy()
        self.start_offsets_s = self.trace_time_s.copy()
        self.clock_s = np.zeros(b)
        self.buffer_s = np.zeros(b)
        self.last_quality = np.full(b, -1, dtype=np.int64)
        # Every download is kept (segments x sessions is small); observations see a window of it.
        self.hist_bytes = np.zeros((b, n))
        self.hist_s = np.ones((b, n))
        self.qualities = np.zeros((n, b), dtype=np.int64)
        self.rebuffer_s = np.zeros((n, b))
        self.buffer_after_s = np.zeros((n, b))
        self.buffer_before_s = np.zeros((n, b))
        self.download_s = np.zeros((n, b))
        self.request_s = np.zeros((n, b))
        self.startup_s = np.zeros(b)
        self.stall_count = np.zeros(b, dtype=np.int64)
        self._sleep()

    @property
    def done(self) -> bool:
        return self.segment_index >= self.video.segment_count

    def fixed_quality(self) -> np.ndarray | None:
        """The profile's quality for this segment (the first one's, if it fixes it), else None."""
        cfg = self.prof.session
        if self.segment_index == 0 and cfg.initial_quality is not None:
            return np.full(self.buffer_s.shape[0], min(cfg.initial_quality, self.video.ladder.top), dtype=np.int64)
        return None

    def to_decision(self) -> bool:
        """Plays the segments whose quality the profile fixes; whether a decision is left to make."""
        while not self.done:
            fixed = self.fixed_quality()
            if fixed is None:
                return True
            self.step(fixed)
        return False

    def play_out(self, abr: BatchAbr) -> None:
        """Plays every segment left with `abr`'s decisions (the profile's quality where it fixes one)."""
        while self.to_decision():
            self.step(np.asarray(abr.decide_batch(self.observation()), dtype=np.int64))

    def observation(self) -> BatchObservation:
        cfg, video, i = self.prof.session, self.video, self.segment_index
        h = min(i, cfg.history_len)
        return BatchObservation(
            time_s=self.clock_s, buffer_s=self.buffer_s, segment_index=i, segment_count=video.segment_count,
            ladder=video.ladder, last_quality=self.last_quality, download_bytes=self.hist_bytes[:, i - h: i],
            download_s=self.hist_s[:, i - h: i], next_sizes_bytes=video.sizes_bytes[i: i + cfg.lookahead_segments],
            buffer_cap_s=cfg.buffer_cap_s,
            next_quality=None if video.quality is None else video.quality[i: i + cfg.lookahead_segments],
        )

    def step(self, q: np.ndarray) -> None:
        """Download segment `segment_index` at qualities `q` (B,), then sleep to the next request."""
        i = self.segment_index
        if i >= self.video.segment_count:
            raise RuntimeError("every segment is in")
        size = self.video.sizes_bytes[i, q].astype(np.float64)
        self.request_s[i] = self.clock_s
        self.buffer_before_s[i] = self.buffer_s
        finish, elapsed = download_step(self.links, self.latency, self.prof, self.trace_time_s, size, self.which)
        self.trace_time_s = finish
        self.clock_s = self.clock_s + elapsed
        stall, self.buffer_s = buffer_step(self.buffer_s, elapsed, self.video.ladder.segment_duration_s, started=i > 0)
        if i == 0:
            self.startup_s = self.clock_s.copy()
        else:
            self.stall_count += stall > 0  # each dry spell ends with this segment (one segment resumes play)
        self.qualities[i] = q
        self.rebuffer_s[i] = stall
        self.buffer_after_s[i] = self.buffer_s
        self.download_s[i] = elapsed
        self.last_quality = q
        self.hist_bytes[:, i] = size
        self.hist_s[:, i] = elapsed
        self.segment_index = i + 1
        self._sleep()

    def _sleep(self) -> None:
        """The cap rule's wait before the next request (none after the last segment)."""
        if self.done:
            return
        sleep = cap_sleep_s(self.buffer_s, self.prof.session, self.video.ladder.segment_duration_s)
        self.buffer_s = self.buffer_s - sleep
        self.clock_s = self.clock_s + sleep
        self.trace_time_s = self.trace_time_s + sleep


def run_batch(abr_spec: str, video: Video, traces: Sequence[Trace], prof: SimProfile, *,
              offsets_s: Sequence[float] | None = None, faults: Sequence[FaultWindow] = (),
              models: Sequence[QoeModel] | None = None) -> list[SessionResult]:
    """Simulate one session per trace in lock-step (same semantics as `run_session`); `faults` hit
    every session, each from its own start."""
    algorithm = prof.make_abr(abr_spec, video)
    if video.audio is not None:
        raise ValueError(f"{video.name!r} has audio: its sessions run in the session engine (engine='session')")
    models = prof.qoe_models(video) if models is None else models
    if not supports_batch(algorithm, prof, video):
        raise ValueError(f"ABR {abr_spec!r} cannot run in the batch engine with profile {prof.name!r}")
    batch_abr: BatchAbr = algorithm  # type: ignore[assignment]
    b = len(traces)
    trace_time = np.zeros(b) if offsets_s is None else np.asarray(offsets_s, dtype=np.float64).copy()
    links: LinkBatch | FaultedLinkBatch = LinkBatch(traces, payload_factor=prof.payload_factor)
    if faults:
        links = FaultedLinkBatch(links, [faults_from(faults, float(t)) for t in trace_time])
    state = LockStep(video, prof, links, LatencyLookup(traces, prof), trace_time)
    state.play_out(batch_abr)
    return _results(abr_spec, traces, video, state.qualities, state.rebuffer_s, state.buffer_after_s,
                    state.buffer_before_s, state.download_s, state.request_s, state.startup_s, state.stall_count,
                    models, state.start_offsets_s, engine="batch", sabre_gamma_p=prof.sabre_gamma_p)


def simulate(abr_spec: str, video: Video, traces: Sequence[Trace], prof: SimProfile, *,
             engine: str = "auto", offsets_s: Sequence[float] | None = None, record_events: bool = False,
             faults: Sequence[FaultWindow] = (),
             models: Sequence[QoeModel] | None = None) -> list[SessionResult]:
    """One session per trace; `engine` is "auto" (batch when possible), "batch" or "session".
    `faults` (outages, loss bursts) hit every session, in link time from its start."""
    if engine not in ("auto", "batch", "session"):
        raise ValueError(f"unknown engine {engine!r}; choose auto, batch or session")
    offsets = list(offsets_s) if offsets_s is not None else [0.0] * len(traces)
    if engine != "session" and not record_events:
        probe = prof.make_abr(abr_spec, video)
        if supports_batch(probe, prof, video):
            return run_batch(abr_spec, video, traces, prof, offsets_s=offsets, faults=faults, models=models)
        if engine == "batch" and video.audio is not None:
            raise ValueError(f"{video.name!r} has audio: its sessions run in the session engine (engine='session')")
        if engine == "batch":
            raise ValueError(f"ABR {abr_spec!r} has no vectorised decide_batch; use engine='session'")
    return _run_sessions(abr_spec, prof.abr_maker(abr_spec, video), video, traces, prof, offsets_s=offsets,
                         record_events=record_events, faults=faults, models=models)
