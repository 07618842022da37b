"""Where results came from: content digests, the command, the version and commit of abrkit, and
progress lines that also reach a log file (tqdm draws only on a terminal)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from netsim.trace import Trace
from player.video import Video


def video_digest(video: Video) -> str:
    """12 hex digits of the ladder, segment sizes and audio track (what a session's result depends on)."""
    digest = hashlib.sha256(repr((video.ladder, video.segment_count)).encode())
    digest.update(np.ascontiguousarray(video.sizes_bytes[: video.segment_count]).tobytes())
    if video.audio is not None:  # its own pipeline in simulation: part of what a cell's result depends on
        digest.update(repr((video.audio.ladder, video.audio.durations_s)).encode())
        digest.update(np.ascontiguousarray(video.audio.sizes_bytes).tobytes())
    return digest.hexdigest()[:12]


def trace_digest(trace: Trace) -> str:
    """12 hex digits of a trace's intervals, capacities and latencies."""
    digest = hashlib.sha256(np.ascontiguousarray(trace.durations_s).tobytes())
    digest.update(np.ascontiguousarray(trace.bandwidth_bps).tobytes())
    if trace.latency_s is not None:
        digest.update(np.ascontiguousarray(trace.latency_s).tobytes())
    return digest.hexdigest()[:12]


def abrkit_version() -> str:
    try:
        return importlib.metadata.version("abrkit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git checkout abrkit runs from (`+dirty` with uncommitted changes), or None."""
    root = path if path is not None else Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def provenance(command: Sequence[str], video: Video, traces: Sequence[Trace]) -> dict[str, Any]:
    """What `summary.json` records so a reader can rerun the same command on the same inputs."""
    return {
        "command": shlex.join(["abrkit", *command]),
        "abrkit_version": abrkit_version(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "video": {"name": video.name, "digest": video_digest(video), "segments": video.segment_count,
                  "rungs": len(video.ladder)},
        "traces": [{"name": t.name, "digest": trace_digest(t), "duration_s": round(t.duration_s, 3)} for t in traces],
    }


class ProgressLines:
    """Counts finished work; on a terminal a tqdm bar, elsewhere (a log file, CI) a line every
    `every_s` seconds and at the end, so a long run is never silent."""

    def __init__(self, total: int, *, desc: str, unit: str, stream: TextIO | None = None, every_s: float = 10.0,
                 enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._bar: Any = None
        self._enabled = enabled and total > 0
        self._start = self._last = time.monotonic()
        if self._enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, file=self.stream, leave=False, dynamic_ncols=True)

    def update(self, count: int = 1) -> None:
        self.done += count
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self._start
        share = self.done / self.total if self.total else 1.0
        left = f", about {format_duration(elapsed / share - elapsed)} left" if 0 < share < 1 else ""
        return f"{self.desc}: {self.done}/{self.total} {self.unit}s ({100 * share:.0f}%), {format_duration(elapsed)}{left}"

    def write(self, message: str) -> None:
        """A message between progress updates (through tqdm on a terminal, so the bar survives)."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_duration(seconds: float) -> str:
    """`12 s`, `3.5 min`, `1.2 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
