"""Playback events: what a session and its driver report, with a closed set of kinds, into one sink.

The session emits its own kinds (decisions, downloads, waits, stalls...); a driver adds its kinds
(bootstrap, requests, buffer samples, errors) into the same sink. Sinks: `EventList` keeps events in
memory (the simulator's `record_events`), `player.client.eventlog.EventLog` writes JSON lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

# What `PlaybackSession` emits.
SessionEventKind = Literal["decision", "wait", "download", "play", "stall", "resume", "abandon", "failure", "seek"]
# What a live session (`player.live.LiveSession`) adds: a low-latency chunk arrived, the playback rate changed.
LiveEventKind = Literal["chunk", "rate"]
# What the headless driver and its harness emit. "abandon" is both: the driver reports the ABR's
# decision to give a download up (to_quality, reason), the session that the download was dropped.
# The live driver (`player.client.liveplay`) adds the clock sync, MPD refreshes and early requests (404s);
# the desktop window each audio segment that could not be used, as it happens (its sound went silent),
# and a live join that started without sound (`audio_missing`: none decoded in time).
DriverEventKind = Literal["bootstrap", "start", "period", "request", "buffer", "abandon", "decode_error", "error",
                          "end", "clock_sync", "manifest_refresh", "early_request", "audio_failure", "audio_missing"]
EventKind = SessionEventKind | LiveEventKind | DriverEventKind

SESSION_EVENT_KINDS: frozenset[str] = frozenset(get_args(SessionEventKind))
LIVE_EVENT_KINDS: frozenset[str] = frozenset(get_args(LiveEventKind))
DRIVER_EVENT_KINDS: frozenset[str] = frozenset(get_args(DriverEventKind))
EVENT_KINDS: frozenset[str] = SESSION_EVENT_KINDS | LIVE_EVENT_KINDS | DRIVER_EVENT_KINDS


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionEvent:
    """One event at session time `time_s` (seconds); `data` holds the kind's fields (units in names)."""

    time_s: float
    kind: EventKind
    data: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; known: {', '.join(sorted(EVENT_KINDS))}")


class EventSink(Protocol):
    """Where events go: every emitter of one session writes into the same sink."""

    def emit(self, event: SessionEvent) -> None: ...


class EventList:
    """A sink that keeps the events in memory, in emission order."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []

    def emit(self, event: SessionEvent) -> None:
        self.events.append(event)


def emit_event(sink: EventSink, time_s: float, kind: EventKind, **data: object) -> None:
    """Build one event and hand it to `sink` (an unknown kind raises ValueError)."""
    sink.emit(SessionEvent(time_s=time_s, kind=kind, data=data))
