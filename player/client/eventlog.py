"""The player's event log: an event sink writing one JSON object per line (`--log events.jsonl`).

Each line is `{"t": session seconds, "type": kind, ...the event's fields}`. Signed-URL tokens are
credentials, so URLs are logged with `/s/<token>/` redacted; keys are never given to the log at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from player.events import SessionEvent
from server.formats.urls import redact_url


class EventLog:
    """An event sink that keeps each event's JSON object in memory (`keep`) and, given a path,
    streams it to a JSON-lines file."""

    def __init__(self, path: Path | None = None, *, keep: bool = True) -> None:
        self.path = path
        self.keep = keep
        self.events: list[dict[str, Any]] = []
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")

    def emit(self, event: SessionEvent) -> None:
        self._write(event)

    def _write(self, event: SessionEvent, extra: Mapping[str, Any] | None = None) -> None:
        """Log `event`, with `extra` fields (a subclass's stamps) after its time and kind."""
        line: dict[str, Any] = {"t": round(event.time_s, 4), "type": event.kind, **(extra or {})}
        for key, value in event.data.items():
            line[key] = redact_url(value) if key == "url" and isinstance(value, str) else value
        if self.keep:
            self.events.append(line)
        if self._file is not None:
            self._file.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
