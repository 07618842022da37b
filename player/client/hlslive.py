"""The live HLS player: `LivePlayer` (player/client/liveplay.py) driving the same `LiveSession` from
live media playlists (RFC 8216 section 6.2.2 / 6.3.4) instead of a dynamic MPD.

- **Join**: at the live edge minus the target latency (`--target-latency-s`, else the playlist's
  `EXT-X-SERVER-CONTROL:HOLD-BACK`, else three target durations: RFC 8216 6.3.3 says a client
  should not start closer than that to the end of the playlist).
- **Reload**: the media playlist of the rendition being played is reloaded one target duration after
  a reload that changed it, half of one after a reload that did not (6.3.4). A segment is requested
  only once a reload lists it: a rung switched to has its own playlist reloaded first.
- **Clock**: `EXT-X-PROGRAM-DATE-TIME`. A listed segment is complete, so when a playlist arrives the
  server's clock is at least its newest segment's end; the largest such bound over the reloads maps
  the playlist's dates onto the session clock. No clock sync with the server is needed, and a channel
  whose clock runs K times faster plays with `--speed K`. Without dates, the media sequence number
  times the segment duration stands in for them.
- **LL-HLS** (draft-pantos-hls-rfc8216bis): a playlist with parts (`EXT-X-PART-INF` and
  `EXT-X-PART`) is played by parts, as the DASH player plays CMAF chunks: the schedule has chunks of
  one segment / its parts, the target latency is `PART-HOLD-BACK`, the segment being published is
  read part by part (each part one chunk of the same `_read`), the part an `EXT-X-PRELOAD-HINT`
  names is requested before it is published (the server holds it), and the playlist is reloaded by
  blocking reloads for the next part (`_HLS_msn`/`_HLS_part`, 6.2.5.2). A complete segment is one
  request as before. Without parts (or with `play_parts` off) whole segments are played; with
  `CAN-BLOCK-RELOAD=YES` the wait for the next segment is then a blocking reload with `_HLS_msn`.

A reload older than the playlist the player has (a cache's copy: its window starting earlier, fewer
segments or parts at the end) is ignored as ExoPlayer's playlist tracker does, reloaded again soon and
counted (`stale_playlists`); only four target durations of nothing newer end the session. A
blocking reload never asks for what the playlist already lists. A playlist that misbehaves (the
media sequence going back with other segments under those numbers, a listed segment changing its
URI or date, segments of very different durations, a target duration or init section that changes,
no new segment for four target durations) ends the session with a `PlaybackError` naming the
playlist and what was wrong. Audio renditions play in their own pipeline (headless), their playlists reloaded
when a segment they need is not listed yet, their segments matched to the video's by media sequence
number (checked against the dates).
"""

from __future__ import annotations

import asyncio
import functools
import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from player.client.bootstrap import failover_urls
from player.client.headless import PlaybackError, distinct_bitrates
from player.client.hls import HlsError, MediaPlaylist, Part, Segment, parse_playlist
from player.client.hlsorder import lists, older
from player.client.hlswait import announce_wait, publication_s
from player.client.liveplay import DEFAULT_TARGET_LATENCY_S, LivePlayer, is_live
from player.client.mpd import Manifest, Representation
from player.events import emit_event
from player.live import LiveConfig, LiveSchedule
from player.session import Fetch
from server.formats.urls import redact_url

STALE_TARGET_DURATIONS = 4.0  # no new segment for this many target durations: the stream has stopped
UNIFORM_TOLERANCE = 0.1  # a segment's EXTINF may differ from the median by this fraction of it
DATE_TOLERANCE = 0.25  # of a segment duration: how far a date may sit from where the durations put it
JOIN_TARGET_DURATIONS = 3.0  # RFC 8216 6.3.3
PARTS_KEPT = 1024  # HlsLivePlayer.part_log: the latest video parts (an hour of 0.5 s parts is 7,200)


def is_hls_live(manifest: Manifest) -> bool:
    """A live HLS presentation (media playlists without EXT-X-ENDLIST) with video."""
    return manifest.protocol == "hls" and manifest.type == "dynamic" and manifest.video is not None


def live_player_class(manifest: Manifest) -> type[LivePlayer] | None:
    """The live player for `manifest` (HLS or MPD), None for on-demand content."""
    if is_hls_live(manifest):
        return HlsLivePlayer
    return LivePlayer if is_live(manifest) else None


@dataclass(frozen=True, kw_only=True, slots=True)
class PartRecord:
    """One LL-HLS part as the player fetched it (session times): when its request went out, its
    first and last byte came, its bytes, and whether it was asked for with an earlier part
    (`ahead`: already published when that one was reached). For comparisons with the simulator's
    twin (bench/live_segments.py --protocol hls)."""

    segment: int  # the session's segment index
    index: int
    requested_s: float
    first_byte_s: float
    last_byte_s: float
    size_bytes: int
    ahead: bool


@dataclass(eq=False)
class _Rendition:
    """One video rendition's media playlist as last reloaded."""

    rep: Representation
    url: str
    playlist: MediaPlaylist | None = None
    loaded_at_s: float = -math.inf  # session time of the last reload
    target_s: float | None = None  # its EXT-X-TARGETDURATION (it must not change)
    changed: bool = True  # whether that reload listed a new segment
    fresh_at_s: float = -math.inf  # session time of the last reload that was not older than the one before
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class HlsLivePlayer(LivePlayer):
    """One live HLS session (module docstring); `run()` returns the report."""

    play_parts = True  # play LL-HLS parts where offered (False: whole segments, as without them)
    tells_open_requests = False  # its reloads and parts are not counted (player.client.openrequests)

    @staticmethod
    def video_representations(manifest: Manifest) -> list[Representation]:
        if not is_hls_live(manifest):
            raise PlaybackError("not a live HLS presentation: media playlists without #EXT-X-ENDLIST are needed")
        video = manifest.video
        assert video is not None
        return distinct_bitrates(list(video.representations))

    @staticmethod
    def audio_representations(manifest: Manifest) -> list[Representation]:
        """The first audio group's renditions (EXT-X-MEDIA TYPE=AUDIO with a URI): media playlists
        reloaded like the video's, their segments matched to the video's by media sequence number."""
        audio = manifest.audio
        return distinct_bitrates(list(audio.representations)) if audio is not None else []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.play_parts = self.play_parts and self.live.play_parts  # LivePlayConfig: --no-hls-low-latency-mode
        self.renditions = {rep.id: _Rendition(rep=rep, url=rep.base_urls[0])
                           for rep in (*self.reps, *self.audio_reps)}
        self.playing = self.reps[0].id
        self.segment_s = 0.0  # the uniform segment duration (median EXTINF of the first playlist)
        self.target_duration_s = 0.0
        self.base_sequence = 0  # media sequence number of the session's segment index 0
        self.first_date_s: float | None = None  # EXT-X-PROGRAM-DATE-TIME of segment index 0 (None: no dates)
        self.hold_back_s: float | None = None
        self.newest = -1  # the newest media sequence number any reload listed
        self.newest_at_s = 0.0  # session time it was first listed
        self.ended_at: int | None = None  # the last segment, once a reload has EXT-X-ENDLIST
        self.reloads = 0
        self.blocking_reloads = 0
        self.stale_playlists = 0  # reloads that gave a playlist older than one already had (ignored)
        self.parts_offered = False
        self.chunk_s: float | None = None  # one part (segment / parts per segment) when parts are played
        self.part_hold_back_s: float | None = None
        self.part_requests = 0
        self.part_log: deque[PartRecord] = deque(maxlen=PARTS_KEPT)  # the latest video parts fetched, in order
        self.part_rtt_s = math.inf  # the quickest first byte of a part so far: about a round trip

    # -- clock and schedule -------------------------------------------------------------------------

    async def sync_clock(self) -> float:
        """The first reload of the lowest rung's playlist fixes the segment duration, the sequence
        number of index 0 and the clock (server time - session time) from the newest segment's end."""
        r = self.renditions[self.playing]
        playlist = await self._reload(r)
        if self.chunk_s and playlist.can_block_reload and playlist.preload_hint is not None:
            # The newest part may have been out for up to a part when that playlist was made; the
            # answer to a blocking reload for the next one comes as it is published: the clock to a
            # round trip, not to a part (else the join sits up to a part further back than the target).
            await self._reload(r, want=playlist.preload_hint.sequence, part=playlist.preload_hint.index)
        self.control_bytes["sync"] = self.control_bytes["manifest"]  # this player's clock sync: those reloads
        emit_event(self.events, self.now(), "clock_sync", url=None,
                   reason="EXT-X-PROGRAM-DATE-TIME" if self.first_date_s is not None else "media sequence numbers")
        return self.clock_offset_s

    def schedule(self, manifest: Manifest) -> LiveSchedule:
        return LiveSchedule(availability_start_s=self._date_s(self.base_sequence, None) - self.clock_offset_s,
                            segment_duration_s=self.segment_s, chunk_duration_s=self.chunk_s)

    def live_config(self, schedule: LiveSchedule) -> LiveConfig:
        target = (self.live.target_latency_s or (self.part_hold_back_s if self.chunk_s else None) or self.hold_back_s
                  or JOIN_TARGET_DURATIONS * self.target_duration_s or DEFAULT_TARGET_LATENCY_S)
        return LiveConfig(target_latency_s=target)

    def _date_s(self, sequence: int, segment: Segment | None) -> float:
        """When segment `sequence` starts on the server's clock: its date, or where the durations put it."""
        if segment is not None and segment.program_date_time_s is not None and self.first_date_s is not None:
            return segment.program_date_time_s
        return (self.first_date_s or 0.0) + (sequence - self.base_sequence) * self.segment_s

    # -- playlists ----------------------------------------------------------------------------------

    async def _reload(self, r: _Rendition, *, want: int | None = None, part: int | None = None) -> MediaPlaylist:
        """Reload `r`'s media playlist (blocking until segment `want`, or its part `part`, is listed,
        where the server can), check it against the last one, and move the clock and the session's
        schedule by it."""
        async with r.lock:
            old = r.playlist
            if want is not None and old is not None and lists(old, want, part):
                # A reload that landed while this one waited for the lock lists it already: asking
                # now would ask for an older playlist than this one (a cache may well have one).
                return old
            url = r.url
            if want is not None and old is not None and old.can_block_reload:
                query = {"_HLS_msn": str(want)} if part is None else {"_HLS_msn": str(want), "_HLS_part": str(part)}
                url = _with_query(r.url, query)
                self.blocking_reloads += 1
            try:
                lag_sent = self._clock_lag_now()  # what the request's channel-lag header says
                urls = failover_urls(self.source, url)
                if url != r.url and want is not None:  # a blocking reload: held until that is published
                    self._announce(urls, want, part)
                result = await self.fetcher.fetch(urls, headers={**self.channel_headers(), "CMCD-Object": "ot=m"})
                received = self.now()
                # The playlist is dated on the channel as the player's clock stood when it asked; the
                # time the clock left out since (other requests' holds at the stack) would make its
                # dates look that much ahead of this clock: the bound takes it out (0 on a clock that
                # leaves nothing out).
                dated = received + self._clock_lag_now() - lag_sent
                self.check_channel_lag(result.headers, _name(r.url))
                # Held for the part it names, the answer crossed with that part: its timer counts it
                self.answers_landed.append((received, _answer_bytes(result.body, result.headers)))
                playlist = parse_playlist(result.body, r.url)
                if r.rep in self.reps:  # a video playlist: the live simulator's twin plays video only
                    self.control_bytes["manifest"] = len(result.body)
            except HlsError as exc:
                raise PlaybackError(f"the live playlist could not be read on reload: {exc}") from None
            self.requests += 1
            self.reloads += 1
            if not isinstance(playlist, MediaPlaylist):
                raise PlaybackError(f"{_name(r.url)}: a media playlist became a master playlist on reload")
            if self.segment_s == 0:
                self._first(playlist)
            if (playlist.part_count or playlist.part_target_s) and not self.parts_offered:
                self.parts_offered = True
                emit_event(self.events, received, "manifest_refresh", url=redact_url(r.url),
                           note=f"LL-HLS parts offered: played, {self.chunk_s:g} s each" if self.chunk_s else
                           "LL-HLS parts offered: not played, whole segments instead")
            reason = older(old, playlist) if old is not None else None
            if reason is not None:
                if not self._a_copy_of(old, playlist):  # not an older copy: the playlist itself went back
                    raise PlaybackError(f"{_name(r.url)}: {reason}, its segments not those listed before under "
                                        "those numbers (RFC 8216 6.2.2: the media sequence must not decrease)")
                return await self._stale(r, reason, received)
            self._check(r, old, playlist)
            r.fresh_at_s = received
            last = playlist.segments[-1]
            r.changed = old is None or last.sequence > old.segments[-1].sequence
            r.playlist, r.loaded_at_s = playlist, received
            if r.rep not in self.reps:  # audio: its segments must sit where the video's of that number do
                self._check_aligned(r, playlist)
                self._clock(playlist, dated, video=False)
                return playlist
            if playlist.ended:
                self.ended_at = last.sequence
            if last.sequence > self.newest:
                self.newest, self.newest_at_s = last.sequence, received
            elif received - self.newest_at_s > STALE_TARGET_DURATIONS * self.target_duration_s:
                raise PlaybackError(
                    f"the live playlist {_name(r.url)} has listed no new segment for {received - self.newest_at_s:.1f} s "
                    f"(target duration {self.target_duration_s:g} s): the stream stopped, or its clock runs slower "
                    f"than the player's (--speed {self.config.speed:g})")
            self._clock(playlist, dated)
            return playlist

    def _announce(self, urls: list[str], sequence: int, part: int | None) -> None:
        """Emulation: tell the link's clock when the channel publishes what a request for `urls`
        waits for (part `part` of segment `sequence`, or all of it), so that wait runs on the clock."""
        if self.clock_lag_s is not None and self.segment_s:
            end_s = publication_s(segment_start_s=self._date_s(sequence, None), segment_s=self.segment_s,
                                  part_s=self.chunk_s, part=part)
            announce_wait(self.fetcher.clock, urls, self._t0 + (end_s - self.clock_offset_s) / self.config.speed)

    def _first(self, playlist: MediaPlaylist) -> None:
        durations = [s.duration_s for s in playlist.segments]
        self.segment_s = statistics.median(durations)
        assert playlist.target_duration_s is not None  # a live manifest needs one (hls/manifest.py)
        self.target_duration_s = playlist.target_duration_s
        self.hold_back_s = playlist.hold_back_s
        first = playlist.segments[0]
        self.base_sequence = first.sequence
        self.first_date_s = first.program_date_time_s
        complete = {s.sequence for s in playlist.segments}
        counts = [sum(1 for p in playlist.parts if p.sequence == n) for n in sorted({p.sequence for p in playlist.parts})
                  if n in complete]
        if self.play_parts and playlist.part_target_s and counts and len(set(counts)) == 1:
            # Parts played as the chunks of a uniform schedule: so many to a segment, each the same share.
            self.chunk_s = self.segment_s / counts[0]
            self.part_hold_back_s = playlist.part_hold_back_s or 3 * playlist.part_target_s  # rfc8216bis 4.4.3.8

    def _check(self, r: _Rendition, old: MediaPlaylist | None, new: MediaPlaylist) -> None:
        """What RFC 8216 6.2.2 requires of a live playlist's reloads, and what the live session needs."""
        name = _name(r.url)
        if r.target_s is None:
            r.target_s = new.target_duration_s
        if new.target_duration_s != r.target_s:
            raise PlaybackError(f"{name}: the target duration is {new.target_duration_s} s, it was "
                                f"{r.target_s:g} s (RFC 8216 4.3.3.1: it must not change)")
        if any(s.discontinuity != new.segments[0].discontinuity for s in new.segments) or (
                old is not None and new.segments[0].discontinuity != old.segments[0].discontinuity
                and new.segments[0].sequence <= old.segments[-1].sequence):
            raise PlaybackError(f"{name}: a discontinuity in a live playlist is not supported")
        init = new.segments[0].init
        if (init.uri if init else None) != (r.rep.init.urls[0] if r.rep.init else None):
            raise PlaybackError(f"{name}: the initialization section (EXT-X-MAP) changed on reload: not supported")
        for segment in new.segments[:-1] if new.ended else new.segments:  # an event's last one may be short
            if abs(segment.duration_s - self.segment_s) > UNIFORM_TOLERANCE * self.segment_s:
                raise PlaybackError(f"{name} line {segment.line}: segment {segment.sequence} lasts "
                                    f"{segment.duration_s:g} s, the others {self.segment_s:g} s: the live player "
                                    "needs segments of one duration")
        dated = [s for s in new.segments if s.program_date_time_s is not None]
        for a, b in zip(dated, dated[1:]):
            expected = a.program_date_time_s + (b.sequence - a.sequence) * self.segment_s  # type: ignore[operator]
            if abs(b.program_date_time_s - expected) > DATE_TOLERANCE * self.segment_s:  # type: ignore[operator]
                raise PlaybackError(f"{name} line {b.line}: the EXT-X-PROGRAM-DATE-TIME of segment {b.sequence} is "
                                    f"{b.program_date_time_s - expected:+.3f} s from where the durations put it")  # type: ignore[operator]
        if old is None:
            return
        before = {s.sequence: s for s in old.segments}
        for segment in new.segments:
            seen = before.get(segment.sequence)
            if seen is None:
                continue
            if seen.uri != segment.uri:
                raise PlaybackError(f"{name}: segment {segment.sequence} changed its URI on reload "
                                    f"({redact_url(seen.uri)} -> {redact_url(segment.uri)})")
            if (seen.program_date_time_s is not None and segment.program_date_time_s is not None
                    and abs(seen.program_date_time_s - segment.program_date_time_s) > DATE_TOLERANCE * self.segment_s):
                raise PlaybackError(f"{name}: segment {segment.sequence} changed its EXT-X-PROGRAM-DATE-TIME on reload")

    def _a_copy_of(self, old: MediaPlaylist | None, new: MediaPlaylist) -> bool:
        """Whether `new` can be an earlier version of the playlist `old` is: it shares segments with
        `old` and lists each under the URI and date `old` does (a server that restarted its count
        does not, nor one whose window moved back past `old`'s)."""
        assert old is not None
        before = {s.sequence: s for s in old.segments}
        shared = [(before[s.sequence], s) for s in new.segments if s.sequence in before]
        return bool(shared) and all(
            a.uri == b.uri and (a.program_date_time_s is None or b.program_date_time_s is None
                                or abs(a.program_date_time_s - b.program_date_time_s) <= DATE_TOLERANCE * self.segment_s)
            for a, b in shared)

    async def _stale(self, r: _Rendition, reason: str, received_s: float) -> MediaPlaylist:
        """A reload older than the playlist `r` has (a cache's older copy, a server behind another):
        ignored as ExoPlayer's playlist tracker does (the newer one kept, a reload again soon, under the lock
        so the rendition's other reloads wait for it too); an error once no reload for
        `STALE_TARGET_DURATIONS` target durations gave a current one (RFC 8216 6.2.2: a server must
        not serve one)."""
        playlist = r.playlist
        assert playlist is not None
        self.stale_playlists += 1
        r.changed, r.loaded_at_s = False, received_s
        since_s = received_s - r.fresh_at_s
        bound_s = STALE_TARGET_DURATIONS * self.target_duration_s
        if since_s > bound_s:
            raise PlaybackError(f"{_name(r.url)}: {reason}, and every reload for {since_s:.1f} s ({bound_s:g} s "
                                "allowed) gave a playlist older than one already received (RFC 8216 6.2.2)")
        emit_event(self.events, received_s, "manifest_refresh", url=redact_url(r.url),
                   note=f"an older playlist ignored: {reason}")
        await self._sleep((playlist.part_target_s or self.target_duration_s) / 2)
        return playlist

    def _check_aligned(self, r: _Rendition, playlist: MediaPlaylist) -> None:
        last = playlist.segments[-1]
        if self.first_date_s is None or last.program_date_time_s is None:
            return
        off_s = last.program_date_time_s - self._date_s(last.sequence, None)
        if abs(off_s) > DATE_TOLERANCE * self.segment_s + 0.1:
            raise PlaybackError(f"{_name(r.url)}: audio segment {last.sequence} is dated {off_s:+.3f} s from the "
                                "video segment of that number: the audio and video media sequences do not align")

    def _clock(self, playlist: MediaPlaylist, received_s: float, *, video: bool = True) -> None:
        """The newest listed segment was complete when the playlist arrived: server time >= its end;
        when parts are played, the newest listed part was (the session learns that chunk's time)."""
        last = playlist.segments[-1]
        end = self._date_s(last.sequence, last) + last.duration_s
        newest, chunk = last.sequence, None
        if self.chunk_s and playlist.parts and playlist.parts[-1].sequence > last.sequence:
            part = playlist.parts[-1]
            newest, chunk = part.sequence, min(part.index, round(self.segment_s / self.chunk_s) - 1)
            end = self._date_s(part.sequence, None) + (chunk + 1) * self.chunk_s
        bound = end - received_s
        if self.reloads > 2 and bound - self.clock_offset_s > 2 * self.segment_s + self.config.speed:
            raise PlaybackError(
                f"the live playlist {_name(playlist.url)} moved {bound - self.clock_offset_s:.1f} s ahead of the "
                f"player's clock between reloads: its clock runs faster than the player's (--speed "
                f"{self.config.speed:g}); play it at the channel's speed")
        if self.reloads == 1 or bound > self.clock_offset_s:
            self.clock_offset_s = bound
        session = getattr(self, "session", None)
        if session is not None and video and newest >= self.base_sequence:
            session.on_available(segment=newest - self.base_sequence, chunk=chunk,
                                 available_at_s=end - self.clock_offset_s)

    async def _listed(self, r: _Rendition, sequence: int) -> Segment | Part | None:
        """Segment `sequence` of `r`'s playlist once a reload lists it (None: the stream ended before
        it); when parts are played, its first part as soon as that is listed or hinted."""
        while True:
            playlist = r.playlist
            if playlist is not None:
                first, last = playlist.segments[0].sequence, playlist.segments[-1].sequence
                if first <= sequence <= last:
                    return playlist.segments[sequence - first]
                if self.chunk_s and sequence == last + 1:
                    part = playlist.part(sequence, 0) or playlist.preload_hint
                    if part is not None and part.sequence == sequence and part.index == 0:
                        return part
                if sequence < first:
                    raise PlaybackError(f"segment {sequence} has left the live playlist {_name(r.url)} "
                                        f"(it now starts at {first}): the player fell behind its window")
                if playlist.ended:
                    return None
                if await _reloading(r):  # the refresh loop's reload may list it: look again first
                    continue
                if not playlist.can_block_reload:
                    due = r.loaded_at_s + self.target_duration_s / (1 if r.changed else 2)
                    if due > self.now():
                        await self._sleep(due - self.now())
                        continue  # a reload meanwhile may list it
            if self.chunk_s:
                await self._reload(r, want=sequence, part=0)
            else:
                await self._reload(r, want=sequence)

    # -- the session --------------------------------------------------------------------------------

    async def _fetch(self, action: Fetch) -> None:
        rep = self.reps[action.quality] if action.media == "video" else self.audio_reps[action.quality]
        r = self.renditions[rep.id]
        if action.media == "video":
            self.playing = rep.id
        sequence = self.base_sequence + action.segment_index
        segment = await self._listed(r, sequence)
        if segment is None:  # EXT-X-ENDLIST: the event is over; the session ends with its report
            self.stop()
            await asyncio.Event().wait()
            return
        await self._init(rep)
        if isinstance(segment, Part):  # being published: read part by part
            await self._read(_PartStream(self, r, sequence), action, self.session.schedule, self.now())
            return
        url = await self._route(segment.uri)
        headers = {"Cache-Control": "no-cache", "CMCD-Object": "ot=v"}
        if segment.byte_range is not None:
            headers["Range"] = f"bytes={segment.byte_range[0]}-{segment.byte_range[1]}"
        requested = self.now()
        self.requests += 1
        async with self.fetcher.session.get(url, headers=headers) as response:
            if response.status not in (200, 206):
                text = (await response.read())[:200].decode("utf-8", "replace").strip()
                raise PlaybackError(f"GET {redact_url(segment.uri)} (segment {sequence}, listed in the live "
                                    f"playlist): HTTP {response.status} {text}".rstrip())
            await self._read(response, action, self.session.schedule, requested)

    async def _refresh_loop(self) -> None:
        """Reload the playing rendition's playlist: a target duration after a reload that changed it,
        half of one after one that did not (RFC 8216 6.3.4); where the server can block, ask at once
        for the playlist that lists the next segment."""
        while True:
            r = self.renditions[self.playing]
            playlist = r.playlist
            if playlist is not None and playlist.ended:
                return
            if playlist is not None and playlist.can_block_reload and self.chunk_s:
                hint = playlist.preload_hint or (playlist.parts[-1] if playlist.parts else None)
                if hint is not None and hint is not playlist.preload_hint:
                    hint = _after(hint, round(self.segment_s / self.chunk_s))
                if hint is None:
                    reloaded = await self._reload(r, want=playlist.segments[-1].sequence + 1)
                else:
                    reloaded = await self._reload(r, want=hint.sequence, part=hint.index)
                if reloaded is playlist:
                    continue  # a fetch's reload went first (or an older one came): ask for what is next now
            elif playlist is not None and playlist.can_block_reload:
                if await self._reload(r, want=playlist.segments[-1].sequence + 1) is playlist:
                    continue
            else:
                due = r.loaded_at_s + self.target_duration_s / (1 if r.changed else 2)
                if due > self.now():
                    await self._sleep(due - self.now())
                    continue  # the rendition may have changed, or a fetch reloaded it meanwhile
                await self._reload(r)
            self.refreshes += 1
            emit_event(self.events, self.now(), "manifest_refresh", newest=self.newest)

    # -- report -------------------------------------------------------------------------------------

    def live_summary(self) -> dict[str, Any]:
        out = super().live_summary()
        parts = "played" if self.chunk_s else "offered, not played" if self.parts_offered else "none offered"
        out.update({"protocol": "hls", "playlist_reloads": self.reloads, "blocking_reloads": self.blocking_reloads,
                    "ll_hls_parts": parts, "part_requests": self.part_requests, "ended": self.ended_at is not None,
                    "stale_playlists": self.stale_playlists})
        return out

    async def _part(self, r: _Rendition, sequence: int, index: int) -> Part | None:
        """Part `index` of segment `sequence` once listed or hinted (a blocking reload for it when
        neither; None: the segment is complete with fewer parts, or no longer lists them)."""
        while True:
            playlist = r.playlist
            assert playlist is not None
            part = playlist.part(sequence, index)
            if part is not None:
                return part
            hint = playlist.preload_hint
            if hint is not None and (hint.sequence, hint.index) == (sequence, index):
                return hint
            if playlist.segments[-1].sequence >= sequence or playlist.ended:
                return None
            if await _reloading(r):  # the refresh loop's reload, for this part most likely: look again
                continue
            if not playlist.can_block_reload:
                await self._sleep(r.loaded_at_s + (playlist.part_target_s or self.target_duration_s) / 2 - self.now())
                await self._reload(r)
            else:
                await self._reload(r, want=sequence, part=index)


class _PartStream:
    """Segment `sequence` read part by part, as one chunked body (what `LivePlayer._read` reads):
    each part is one CMAF chunk. Should the playlist stop listing its parts before the last (the
    player fell far behind), the rest comes from the complete segment."""

    content_length = None

    def __init__(self, player: HlsLivePlayer, r: _Rendition, sequence: int) -> None:
        self.player, self.r, self.sequence = player, r, sequence
        self.content = self
        self._response: Any = None

    def close(self) -> None:
        if self._response is not None:
            self._response.close()

    async def iter_any(self) -> Any:
        player, r = self.player, self.r
        index, sent = 0, 0
        per_segment = round(player.segment_s / player.chunk_s) if player.chunk_s else 0
        # A part already published when the one before is nearly in (a join mid-segment, a late
        # start) is asked for then, one at a time, so that the parts cross one after another as
        # one chunked DASH response would bring them, with no round trip between: asked for all at
        # once, they shared the link and the first, which playback needs first, came last (1.4 s
        # later than in turn on a 4 Mbit/s link, 8 parts of 200 kB).
        ahead: dict[int, asyncio.Task[bytes]] = {}

        def launch(later: int) -> None:
            playlist = r.playlist
            if later >= per_segment or later in ahead or playlist is None:
                return
            part = playlist.part(self.sequence, later)  # listed: published (a hinted one is held)
            if part is not None:
                ahead[later] = asyncio.create_task(self._whole(part, lambda: launch(later + 1)))

        try:
            while index < per_segment:
                part = await player._part(r, self.sequence, index)
                if part is None:
                    break
                if index in ahead:
                    body = await ahead.pop(index)
                    sent += len(body)
                    yield body
                else:
                    async for piece in self._get(part.uri, {**player.channel_headers(), **_part_headers(part)},
                                                 f"part {part.sequence}.{part.index}",
                                                 part=part, near_end=functools.partial(launch, index + 1)):
                        sent += len(piece)
                        yield piece
                launch(index + 1)  # (already asked for unless it ended too soon to tell)
                player.part_requests += 1
                index += 1
        finally:
            for task in ahead.values():
                task.cancel()
        playlist = r.playlist
        assert playlist is not None
        segment = next((s for s in playlist.segments if s.sequence == self.sequence), None)
        if segment is None:
            return
        expected = sum(p.duration_s for p in playlist.parts if p.sequence == self.sequence)
        if index and expected >= segment.duration_s * (1 - UNIFORM_TOLERANCE):
            return  # every part was read
        body = b""
        async for piece in self._get(segment.uri, {"Cache-Control": "no-cache"}, f"segment {self.sequence}"):
            body += piece
        yield body[sent:]

    async def _whole(self, part: Part, near_end: Callable[[], None]) -> bytes:
        body = b""
        async for piece in self._get(part.uri, {**self.player.channel_headers(), **_part_headers(part)},
                                     f"part {part.sequence}.{part.index}", own=False, part=part, near_end=near_end):
            body += piece
        return body

    async def _get(self, uri: str, headers: dict[str, str], what: str, *, own: bool = True,
                   part: Part | None = None, near_end: Callable[[], None] | None = None) -> Any:
        """The answer to `uri`, piece by piece; a `part`'s timing goes into the player's `part_log`.
        `near_end` is called once the rest of the answer would take about a round trip at the rate
        its pieces came (the round trip: the quickest first byte of a part so far, `part_rtt_s`)."""
        player = self.player
        player.requests += 1
        url = await player._route(uri)
        if part is not None:  # a hinted part is held until it is published
            player._announce([url], part.sequence, part.index)
        requested = player.now()
        first = last = math.nan
        size = 0
        async with player.fetcher.session.get(url, headers=headers) as response:
            if own:
                self._response = response
            if response.status not in (200, 206):
                text = (await response.read())[:200].decode("utf-8", "replace").strip()
                raise PlaybackError(f"GET {redact_url(uri)} ({what}, listed in the live playlist): "
                                    f"HTTP {response.status} {text}".rstrip())
            total = response.content_length
            async for piece in response.content.iter_any():
                last = player.now()
                if size == 0:
                    first = last
                    player.part_rtt_s = min(player.part_rtt_s, first - requested)
                size += len(piece)
                if near_end is not None and total and last > first and size < total:
                    rate = (size - len(piece)) / (last - first) if size > len(piece) else 0.0
                    if rate > 0 and (total - size) / rate <= player.part_rtt_s:
                        near_end()
                        near_end = None
                yield piece
        if own:
            self._response = None
        if part is not None:
            player.part_log.append(PartRecord(segment=part.sequence - player.base_sequence, index=part.index,
                                              requested_s=requested, first_byte_s=first, last_byte_s=last,
                                              size_bytes=size, ahead=not own))


async def _reloading(r: _Rendition) -> bool:
    """Wait for a reload of `r` on its way, if one is (True: the playlist may have changed)."""
    if not r.lock.locked():
        return False
    async with r.lock:
        return True


def _answer_bytes(body: bytes, headers: Mapping[str, str]) -> int:
    """An HTTP/1.1 answer's bytes on the link: status line, header lines and body."""
    return len(b"HTTP/1.1 200 OK\r\n\r\n") + sum(len(k) + len(v) + 4 for k, v in headers.items()) + len(body)


def _part_headers(part: Part) -> dict[str, str]:
    headers = {"Cache-Control": "no-cache", "CMCD-Object": "ot=v"}
    if part.byte_range is not None:
        first, last = part.byte_range
        headers["Range"] = f"bytes={first}-{last if last >= 0 else ''}"
    return headers


def _after(part: Part, per_segment: int) -> Part:
    """The part after `part` (its URI unknown: only its numbers are used)."""
    if part.index + 1 < per_segment:
        return Part(uri="", duration_s=0.0, byte_range=None, sequence=part.sequence, index=part.index + 1,
                    independent=False, line=0)
    return Part(uri="", duration_s=0.0, byte_range=None, sequence=part.sequence + 1, index=0, independent=False,
                line=0)


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _name(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1] or url


__all__ = ["HlsLivePlayer", "is_hls_live", "live_player_class"]
