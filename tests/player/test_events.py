"""Playback events: a closed set of kinds, each emitted somewhere, into one sink (memory or JSON lines)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from abr.types import Ladder
from player.client.eventlog import EventLog
from player.events import (
    DRIVER_EVENT_KINDS,
    EVENT_KINDS,
    LIVE_EVENT_KINDS,
    SESSION_EVENT_KINDS,
    EventList,
    SessionEvent,
    emit_event,
)
from player.session import Fetch, PlaybackSession, SessionConfig, Wait
from tests.conftest import REPO_ROOT
from tests.player.conftest import FixedContent, Scripted


def _fetch(session: PlaybackSession) -> Fetch:
    action = session.next_action()
    assert isinstance(action, Fetch), action
    return action


def _every_session_event(session: PlaybackSession) -> None:
    """Drive `session` (buffer cap 6 s, 4 s segments) through each thing a session reports."""
    _fetch(session)
    session.on_download(1.0, size_bytes=1000)  # decision, download, play; buffer 4 s
    _fetch(session)
    session.on_download(1.5, size_bytes=1000)  # buffer 7.5 s: over the cap
    assert isinstance(session.next_action(), Wait)  # wait
    session.advance(3.0)
    _fetch(session)
    session.on_abandon(3.5, bytes_received=10)  # abandon
    _fetch(session)
    session.on_failure(4.0, "connection reset")  # failure
    _fetch(session)
    session.on_download(12.0, size_bytes=1000)  # the buffer ran dry at 9.0 s: stall, then resume
    session.seek(12.5, 0.0)  # seek


def test_session_emits_every_session_kind_into_its_sink(ladder: Ladder) -> None:
    sink = EventList()
    session = PlaybackSession(Scripted(), FixedContent(ladder, 6), SessionConfig(buffer_cap_s=6.0), sink=sink)
    _every_session_event(session)
    assert {e.kind for e in sink.events} == SESSION_EVENT_KINDS
    stall = next(e for e in sink.events if e.kind == "stall")
    assert stall.time_s == 12.0 and stall.data == {"playhead_s": 8.0}  # both segments played out by then
    assert session.events == []  # a session given a sink keeps nothing itself


def test_record_events_is_an_in_memory_sink_with_the_same_events(ladder: Ladder) -> None:
    sink = EventList()
    config = SessionConfig(buffer_cap_s=6.0)
    _every_session_event(PlaybackSession(Scripted(), FixedContent(ladder, 6), config, sink=sink))
    recorded = PlaybackSession(Scripted(), FixedContent(ladder, 6), config, record_events=True)
    _every_session_event(recorded)
    assert recorded.events == sink.events
    with pytest.raises(ValueError, match="record_events"):
        PlaybackSession(Scripted(), FixedContent(ladder, 6), record_events=True, sink=EventList())


def test_a_session_without_a_sink_makes_no_events(ladder: Ladder) -> None:
    session = PlaybackSession(Scripted(), FixedContent(ladder, 6), SessionConfig(buffer_cap_s=6.0))
    _every_session_event(session)
    assert session.events == [] and session.recorded is None


@pytest.mark.parametrize("kind", ["", "Start", "rebuffer", "segment", "stall "])
def test_unknown_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        SessionEvent(time_s=0.0, kind=kind)  # type: ignore[arg-type]
    sink = EventList()
    with pytest.raises(ValueError, match="unknown event kind"):
        emit_event(sink, 1.0, kind)  # type: ignore[arg-type]
    assert sink.events == []


def _literal_kinds(call_name: str, kind_arg: int, paths: list[Path]) -> set[str]:
    """The kinds named in calls `call_name(..., "kind", ...)` (argument `kind_arg`) in `paths`."""
    kinds: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name != call_name or len(node.args) <= kind_arg:
                continue
            kind = node.args[kind_arg]
            assert isinstance(kind, ast.Constant) and isinstance(kind.value, str), \
                f"{path}:{node.lineno}: an event's kind is named literally, so it can be checked"
            kinds.add(kind.value)
    return kinds


def test_every_declared_kind_is_emitted_somewhere_and_nothing_else_is() -> None:
    session_source = REPO_ROOT / "player" / "session.py"
    others = [p for p in sorted((REPO_ROOT / "player").rglob("*.py")) if p != session_source]
    assert _literal_kinds("_event", 0, [session_source]) == SESSION_EVENT_KINDS
    assert _literal_kinds("emit_event", 2, others) == DRIVER_EVENT_KINDS
    live = _literal_kinds("_event", 0, [REPO_ROOT / "player" / "live.py"])
    assert LIVE_EVENT_KINDS <= live <= SESSION_EVENT_KINDS | LIVE_EVENT_KINDS
    assert SESSION_EVENT_KINDS | LIVE_EVENT_KINDS | DRIVER_EVENT_KINDS == EVENT_KINDS


def test_event_log_writes_one_json_object_a_line_with_tokens_redacted(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.jsonl"
    with EventLog(path) as log:
        emit_event(log, 1.23456, "request", url="http://127.0.0.1:8100/s/SECRET.sig/demo/v0/seg-1.m4s",
                   status=200, error=None)
        log.emit(SessionEvent(time_s=2.0, kind="download", data={"segment": 0, "quality": 3}))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ('{"t":1.2346,"type":"request","url":"http://127.0.0.1:8100/s/<token>/demo/v0/seg-1.m4s",'
                        '"status":200,"error":null}')
    assert json.loads(lines[1]) == {"t": 2.0, "type": "download", "segment": 0, "quality": 3}
    assert log.events == [json.loads(line) for line in lines]
    assert [e["segment"] for e in log.of_type("download")] == [0]
