"""The simulator's driver for content with audio: a video and an audio pipeline on one shared link.

`SessionDriver` hands a session with more than one media type to `PipelinesDriver`. Each pipeline
has at most one request in flight, as in the headless player (two connections through one
shaper); transfers that overlap share the trace's capacity evenly (`netsim.sharing.SharedLink`,
the processor-sharing limit of the shaper's max-min fair pacing). Each request's latency (the
trace's, else the profile RTT) passes on the link clock before its bytes flow, whatever the
profile: Pensieve's RTT added to the delay but not to the trace clock has no meaning once two
transfers overlap. An ABR that can abandon is offered each video download's progress
(`sim_abandon`). Video-only sessions never come here, so their results are what they always were.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from netsim.faults import FaultedLink
from netsim.link import LinkModel
from netsim.sharing import SharedLink
from netsim.trace import Trace
from player.research.sim_abandon import AbandonChecks
from player.session import Fetch, Finished, Hold, PlaybackSession, SegmentRecord, Wait
from player.timeline import MediaType
from player.video import Video

if TYPE_CHECKING:
    from player.research.sim import SimProfile


class _SessionClock:
    """The link on the session's clock: session time t is link time t + offset."""

    __slots__ = ("link", "offset_s")

    def __init__(self, link: LinkModel | FaultedLink, offset_s: float) -> None:
        self.link = link
        self.offset_s = offset_s

    def bytes_until(self, time_s: float) -> float:
        return self.link.bytes_until(time_s + self.offset_s)

    def time_for_bytes(self, total_bytes: float) -> float:
        return self.link.time_for_bytes(total_bytes) - self.offset_s


class PipelinesDriver:
    """Plays a session with audio over one trace, in virtual time (see the module docstring).

    `drive()` runs until every segment of every media type is in; like `SessionDriver`, whatever
    `session.next_action` raises propagates with the driver unchanged, and `drive()` resumes there.
    `records` are the video records in arrival order (the session keeps the audio ones).

    Several drivers may share one `SharedLink` (`shared`, whose clock is this session's plus
    `shift_s`: a session that joined `shift_s` after the link's time 0; each driver's transfers are
    keyed `(tag, media)`): `player.research.sim_shared` steps them together with `request_ready`,
    `wake_s`, `complete` and `finished` (times on the session's clock), as `drive` does for one.
    """

    def __init__(self, session: PlaybackSession, video: Video, trace: Trace, prof: SimProfile, *,
                 trace_time_s: float, link: LinkModel | FaultedLink, shared: SharedLink | None = None,
                 tag: Hashable = 0, shift_s: float = 0.0, header_bytes: int = 0) -> None:
        if video.audio is None and shared is None:
            raise ValueError(f"{video.name!r} has no audio: SessionDriver plays it on one pipeline")
        self.session = session
        self.trace = trace
        self.prof = prof
        self.tag = tag
        self.shift_s = shift_s if shared is not None else 0.0
        # Bytes each response carries on the link beyond the segment (status line and headers):
        # `player.research.sim_shared` counts them, the records' sizes stay the segments'.
        if header_bytes < 0:
            raise ValueError(f"header bytes must be >= 0, got {header_bytes!r}")
        self.header_bytes = header_bytes
        self.records: list[SegmentRecord] = []
        self._offset_s = trace_time_s - session.time_s
        self._shared = shared if shared is not None else SharedLink(_SessionClock(link, self._offset_s),
                                                                    now_s=session.time_s)
        self._sizes: dict[MediaType, np.ndarray] = {"video": video.sizes_bytes}
        if video.audio is not None:
            self._sizes["audio"] = video.audio.sizes_bytes
        self._ready_at_s: dict[MediaType, float] = {media: session.time_s for media in session.media_types}
        self._fetching: dict[MediaType, tuple[int, float]] = {}  # media -> (size, request latency)
        self._requested_s: dict[MediaType, float] = {}  # media -> session time of its request
        self.abandoned = 0
        self._done: set[MediaType] = set()

    @property
    def trace_time_s(self) -> float:
        return self.session.time_s + self._offset_s

    @property
    def finished(self) -> bool:
        """Every segment of every media type is in."""
        return len(self._done) == len(self.session.media_types)

    def drive(self) -> None:
        session = self.session
        checks = AbandonChecks([self], self._shared, self.prof)  # as SessionDriver and the headless player
        ask = True
        while True:
            if ask:
                self.request_ready()
            if self.finished:
                return
            event = min(self._shared.next_event_s(), self.wake_s())
            now = max(min(event, checks.next_s()), session.time_s)
            if now == math.inf:
                raise RuntimeError(f"simulated session stuck at t={session.time_s!r}: nothing in flight or waiting")
            for key in self._shared.advance(now):
                self.complete(key[1], now)  # type: ignore[index]
            session.advance(now)
            # A progress check that abandons nothing is no event: a held pipeline is asked again only
            # when a transfer starts or ends or a wait is over.
            ask = checks.run(now) or now >= event

    def wake_s(self) -> float:
        """Session time at which a waiting pipeline asks again (inf: none is waiting)."""
        return min((at for media, at in self._ready_at_s.items()
                    if self._idle(media) and at > self.session.time_s), default=math.inf)

    def complete(self, media: MediaType, now_s: float) -> None:
        """`media`'s transfer ended at session time `now_s` (the link reported it)."""
        size, latency = self._fetching.pop(media)
        self._requested_s.pop(media, None)
        record = self.session.on_download(now_s, size_bytes=size, ttfb_s=latency, media=media)
        if media == "video":
            self.records.append(record)

    def in_flight(self, media: MediaType) -> tuple[int, float, float] | None:
        """(size bytes, request latency s, session time requested) of `media`'s transfer, if one is on the link."""
        if media not in self._fetching:
            return None
        size, latency = self._fetching[media]
        return size, latency, self._requested_s[media]

    def body_bytes(self, on_link: float) -> int:
        """Of the bytes a response has had on the link, its body's (the header bytes come first)."""
        return max(0, int(on_link) - self.header_bytes)

    def abandon(self, media: MediaType, now_s: float) -> None:
        """Give up `media`'s transfer at session time `now_s` (the ABR's `should_abandon` said so)."""
        _, latency = self._fetching.pop(media)
        self._requested_s.pop(media)
        received = self.body_bytes(self._shared.cancel((self.tag, media)))
        self.session.on_abandon(now_s, bytes_received=received, ttfb_s=latency, media=media)
        self.abandoned += 1

    def _idle(self, media: MediaType) -> bool:
        return media not in self._done and media not in self._fetching

    def request_ready(self) -> None:
        """Ask each pipeline that is neither fetching nor waiting what to do next, video first."""
        session, trace = self.session, self.trace
        for media in session.media_types:
            if not self._idle(media) or self._ready_at_s[media] > session.time_s:
                continue
            action = session.next_action(media)
            if isinstance(action, Finished):
                self._done.add(media)
            elif isinstance(action, Hold):
                continue  # asked again after the next event (a fetch on the other pipeline begins or ends)
            elif isinstance(action, Wait):
                self._ready_at_s[media] = session.time_s + action.duration_s
            else:
                assert isinstance(action, Fetch)
                size = int(self._sizes[media][action.segment_index, action.quality])
                link_now = session.time_s + self._offset_s
                latency = trace.latency_at(link_now) if trace.latency_s is not None else self.prof.rtt_s
                starts_s = session.time_s + latency + self.shift_s
                self._shared.start((self.tag, media), starts_s=starts_s, size_bytes=size + self.header_bytes)
                self._fetching[media] = (size, latency)
                self._requested_s[media] = session.time_s
