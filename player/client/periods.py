"""The Periods of a DASH presentation played in order, as one session (ISO/IEC 23009-1 5.3.2).

Each Period has its own adaptation sets, ladder, codecs and timelines (an ad break, content from
another packager). The headless player plays one Period; `play_periods` runs one player per Period
in sequence and joins them: one clock, whose zero is when the manifest was in hand (so the pre-roll
steps - segment indexes, license, init segments - count in the startup), or, for a comparison with
the simulator (`preroll_in_startup=False`), the first media request (the pre-roll is then reported
apart, as `preroll_s`); the ABR object with its
download history, the buffer, the stalls and the startup carry over from each Period's session to
the next (`PlaybackSession.continue_from`); one decoder takes the segments of every Period (its
renditions named by `rendition_key`); and the report covers the whole presentation. A Period that
cannot be played is refused before playback starts, with a message naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from abr.qoe import SessionMetrics, session_metrics
from abr.types import UnsupportedLadder, check_ladder
from player.client.bootstrap import PREROLL_STEPS, PlaybackSource
from player.client.decoding import Decoder, DecodeSummary, InitUrls, TrackKind, rendition_key
from player.client.fetch import Fetcher
from player.client.headless import HeadlessPlayer, ManifestContent, PlaybackError, PlaybackReport, PlayerConfig
from player.client.mpd import Period
from player.events import EventSink, SessionEvent, emit_event
from player.session import SegmentRecord


class PlayerFactory(Protocol):
    """Builds the player for a bootstrapped source (one Period of it); `HeadlessPlayer` itself is
    one (the desktop player's keeps a handle on the player for its controls)."""

    def __call__(self, source: PlaybackSource, config: PlayerConfig, fetcher: Fetcher, *, events: EventSink,
                 decoder: Decoder | None) -> HeadlessPlayer: ...


def period_name(index: int, period: Period) -> str:
    return f"Period {index + 1}" + (f" (id {period.id!r})" if period.id else "")


def period_sources(source: PlaybackSource) -> list[PlaybackSource]:
    """One source per Period, each with a manifest of that Period alone. Sizes from segments.json
    describe a single-Period title only."""
    periods = source.manifest.periods
    if len(periods) == 1:
        return [source]
    return [replace(source, manifest=replace(source.manifest, periods=(period,)), sizes=None) for period in periods]


def check_periods(sources: Sequence[PlaybackSource], first: HeadlessPlayer, config: PlayerConfig) -> None:
    """Refuses, before anything plays, a presentation with a Period the player cannot play."""
    if len(sources) < 2:
        return  # the player itself checked its one Period
    for index, source in enumerate(sources[1:], start=1):
        period = source.manifest.periods[0]
        name = period_name(index, period)
        video = period.video
        if video is None or not video.representations:
            kinds = ", ".join(sorted({a.content_type for a in period.adaptation_sets})) or "nothing"
            raise PlaybackError(f"the manifest's {name} has no video ({kinds} only): abrkit plays Periods with video")
        try:
            content = ManifestContent(source, list(video.representations), config.max_segments)
            check_ladder(first.abr, content.ladder)
        except PlaybackError as exc:
            raise PlaybackError(f"the manifest's {name}: {exc}") from None
        except UnsupportedLadder as exc:
            raise PlaybackError(f"the manifest's {name} cannot be played with {config.abr}: {exc}") from None


async def play_periods(source: PlaybackSource, config: PlayerConfig, fetcher: Fetcher, *, events: EventSink,
                       decoder: Decoder | None, player_factory: PlayerFactory = HeadlessPlayer,
                       before_media: Callable[[], object] | None = None,
                       preroll_in_startup: bool = True) -> PlaybackReport:
    """Plays every Period of `source` in order and reports on all of them (errors inside playback
    are in `report.error`; a Period that cannot be played raises `PlaybackError` before playback).
    `before_media()` is called once the first Period's init segments are in, before its first
    media request (the harness starts shaping there when the bootstrap goes unshaped).
    `preroll_in_startup=False`: session time 0 is that first media request, not the manifest in
    hand, so `startup_s` leaves the pre-roll out (it is in `report.preroll_s`): the harness asks
    for this when the pre-roll goes unshaped on the wall clock, where the simulator has none."""
    loop = asyncio.get_running_loop()
    # Session time 0 is when the manifest was in hand: the pre-roll steps already done count.
    # On the session's clock, the fetcher's (an emulated session's warp clock leaves time out).
    origin = fetcher.clock() - sum(source.timings_s.get(step, 0.0) for step in PREROLL_STEPS)
    sources = period_sources(source)
    multi = len(sources) > 1
    sink = _PeriodSink(events, periods=len(sources), segments=_segment_total(sources, config.max_segments))
    timings = dict(source.timings_s)
    players: list[HeadlessPlayer] = []
    reports: list[PlaybackReport] = []
    remaining = config.max_segments
    for index, period_source in enumerate(sources):
        period_config = config if remaining is None else replace(config, max_segments=remaining)
        # One Period: the decoder itself (the desktop player's seeks reach it); several: a view per Period.
        view = _PeriodDecoder(decoder, index) if decoder is not None and multi else None
        shared = view if view is not None else decoder
        player = player_factory(period_source, period_config, fetcher, events=sink, decoder=shared)
        if players:
            previous = players[-1]
            # One ABR object for the whole presentation (the factory made a fresh one).
            player.abr = player.session.abr = previous.abr
            player.session.continue_from(previous.session)
        else:
            check_periods(sources, player, config)
        last = index == len(sources) - 1 or (remaining is not None and player.content.segment_count >= remaining)
        player.interactive = player.interactive and last
        if view is not None:
            view.player, view.last = player, last
        if multi:
            period = period_source.manifest.periods[0]
            emit_event(sink, (fetcher.clock() - origin) * config.speed, "period", index=index, id=period.id,
                       start_s=period.start_s, segments=player.content.segment_count,
                       codecs=sorted({r.codecs or "?" for a in period.adaptation_sets for r in a.representations}))
        if shared is not None:
            started = loop.time()
            await shared.start(player.init_urls(), fetcher, continuous=False)  # VOD: whole segments
            if not players:
                timings["init_s"] = loop.time() - started
                player.source = replace(player.source, timings_s=timings)
        if before_media is not None and not players:
            before_media()
        if not players and not preroll_in_startup:
            # The first media request is next, at session time 0 (the pre-roll is reported apart);
            # a warp clock that holds for the player stands still until it reaches the link, as
            # after every download, so the player's setup and first decision are no session time.
            fetcher.acting()
            origin = fetcher.clock()
        player.clock_origin = origin
        players.append(player)
        report = await player.run()
        reports.append(report)
        if remaining is not None:
            remaining -= len(report.records)
        if report.error is not None or not player.session.finished or last:
            break
    report = _joined(reports, players, sources, timings, fetcher.counts)
    report = replace(report, preroll_s=round(sum(timings.get(step, 0.0) for step in PREROLL_STEPS), 4),
                     preroll_in_startup=preroll_in_startup)
    emit_event(events, (fetcher.clock() - origin) * config.speed, "end",
               **{k: v for k, v in report.as_dict().items() if k != "qualities"})
    return report


def _joined(reports: list[PlaybackReport], players: list[HeadlessPlayer], sources: Sequence[PlaybackSource],
            timings: Mapping[str, float], counts: Mapping[str, int]) -> PlaybackReport:
    """The report of the whole presentation: records numbered across Periods, QoE over all of them."""
    final = reports[-1]
    extra = {"bootstrap_s": dict(timings), "http_counts": dict(counts), "periods": len(reports)}
    if len(sources) == 1:
        return replace(final, **extra)  # type: ignore[arg-type]
    records = []
    for report in reports:
        offset = len(records)
        records.extend(replace(r, segment_index=offset + r.segment_index) for r in report.records)
    error = final.error
    if error is not None:
        error = f"{period_name(len(reports) - 1, sources[len(reports) - 1].manifest.periods[0])}: {error}"
    return replace(
        final, records=tuple(records), metrics=_metrics(players, records), error=error,
        requests=sum(r.requests for r in reports), failed_requests=sum(r.failed_requests for r in reports),
        abandoned=sum(r.abandoned for r in reports),
        duration_s=records[-1].request_time_s + records[-1].download_s if records else 0.0, **extra)


def _metrics(players: list[HeadlessPlayer], records: Sequence[SegmentRecord]) -> SessionMetrics:
    """QoE over every Period's segments (the log model's lowest rung: the lowest of all ladders)."""
    rates = sorted({b for p in players for b in p.content.ladder.bitrates_bps})
    media_s = sum(len(p.session.records) * p.content.ladder.segment_duration_s for p in players)
    session = players[-1].session
    return session_metrics(
        bitrates_bps=[r.bitrate_bps for r in records], rebuffer_s=[r.rebuffer_s for r in records],
        ladder_bps=rates, segment_duration_s=media_s / max(len(records), 1), startup_s=session.startup_s or 0.0,
        rebuffer_count=session.stall_count)


def _segment_total(sources: Sequence[PlaybackSource], max_segments: int | None) -> int:
    total = 0
    for source in sources:
        video = source.manifest.periods[0].video
        total += min((r.segment_count for r in video.representations), default=0) if video is not None else 0
    return total if max_segments is None else min(total, max_segments)


class _PeriodSink:
    """The players' events into the session's sink: the first player's `start` announces the whole
    presentation, later ones are replaced by `period` events, and `end` comes from `play_periods`."""

    def __init__(self, inner: EventSink, *, periods: int, segments: int) -> None:
        self.inner = inner
        self.periods = periods
        self.segments = segments
        self.started = False

    def emit(self, event: SessionEvent) -> None:
        if event.kind == "end":
            return
        if event.kind == "start":
            if self.started:
                return
            self.started = True
            if self.periods > 1:
                event = replace(event, data={**event.data, "periods": self.periods, "segments": self.segments})
        self.inner.emit(event)


class _PeriodDecoder:
    """One Period's view of the session's decoder: renditions named by `rendition_key`; `finish`
    waits for the decoder only when playback ends in this Period (the last one, or an error or a
    stop), otherwise the next Period goes on submitting."""

    def __init__(self, inner: Decoder, period_index: int) -> None:
        self.inner = inner
        self.period_index = period_index
        self.player: HeadlessPlayer | None = None
        self.last = True

    async def start(self, init_urls: InitUrls, fetcher: Fetcher, *, continuous: bool) -> None:
        await self.inner.start({rendition_key(self.period_index, k): v for k, v in init_urls.items()}, fetcher,
                               continuous=continuous)

    def submit(self, kind: TrackKind, rep_id: str, index: int, data: bytes, *, ends_segment: bool = True) -> None:
        self.inner.submit(kind, rendition_key(self.period_index, rep_id), index, data, ends_segment=ends_segment)

    def new_errors(self) -> tuple[str, ...]:
        return self.inner.new_errors()

    async def finish(self) -> DecodeSummary:
        if self.last or self.player is None or not self.player.session.finished:
            return await self.inner.finish()
        return DecodeSummary(frames_decoded=0, frames_failed=0, segments=0, failed_segments=0, first_frame_wall=None)

    def close(self) -> None:
        """Nothing here: the session's decoder is closed by whoever made it (the harness), after the last Period."""
