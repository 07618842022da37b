"""The player's event log: one JSON object per line (requests, decisions, buffer, stalls, license).

Signed-URL tokens are credentials, so URLs are logged with `/s/<token>/` redacted; keys are never
given to the log at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from server.formats.urls import redact_url


class EventLog:
    """Collects events in memory and, if given a path, streams them to a JSONL file."""

    def __init__(self, path: Path | None = None, *, keep: bool = True) -> None:
        self.path = path
        self.keep = keep
        self.events: list[dict[str, Any]] = []
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")

    def emit(self, time_s: float, kind: str, **fields: Any) -> None:
        event: dict[str, Any] = {"t": round(time_s, 4), "type": kind}
        for key, value in fields.items():
            event[key] = redact_url(value) if key == "url" and isinstance(value, str) else value
        if self.keep:
            self.events.append(event)
        if self._file is not None:
            self._file.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")

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
