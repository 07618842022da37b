"""`segments.json`: what every rendition's segments of a packaged title weigh and last.

The packager writes it beside the MPD; the simulator reads it (so simulated and emulated sessions
see identical segments), the player fetches it next to the MPD, and the edge pre-positions a title
from it. `parse_segments_json` validates untrusted content: every error names the file and field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from server.formats.names import SEGMENTS_NAME


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoRenditionInfo:
    id: str
    bitrate_bps: int  # the ladder's target
    measured_bitrate_bps: int  # media bytes * 8 / duration
    width: int
    height: int
    frame_rate: float
    codecs: str
    segment_sizes_bytes: tuple[int, ...]
    segment_durations_s: tuple[float, ...]
    quality_metric: str
    segment_quality: tuple[float, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class AudioRenditionInfo:
    id: str
    bitrate_bps: int
    codecs: str
    sample_rate_hz: int
    channels: int
    segment_sizes_bytes: tuple[int, ...]
    segment_durations_s: tuple[float, ...]
    measured_bitrate_bps: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TitleSegments:
    """The contents of segments.json: what every rendition's segments weigh and last."""

    title: str
    segment_duration_s: float
    segment_count: int
    encrypted: bool
    video: tuple[VideoRenditionInfo, ...]
    audio: tuple[AudioRenditionInfo, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @property
    def duration_s(self) -> float:
        return sum(self.video[0].segment_durations_s)


class _Checker:
    """Reads typed fields of a JSON object, raising ValueError("<file>: <where>: <problem>")."""

    def __init__(self, path: Path, where: str, obj: Any) -> None:
        self.path, self.where = path, where
        if not isinstance(obj, dict):
            self.fail("must be an object")
        self.obj: dict[str, Any] = obj

    def fail(self, problem: str) -> None:
        prefix = f"{self.path}: {self.where}: " if self.where else f"{self.path}: "
        raise ValueError(prefix + problem)

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in self.obj:
            if optional:
                return None
            self.fail(f"missing {key!r}")
        value = self.obj[key]
        if isinstance(value, bool) and kind is not bool:
            self.fail(f"{key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
        if not isinstance(value, kind):
            self.fail(f"{key!r} has the wrong type ({type(value).__name__})")
        return value

    def positive_int(self, key: str, *, optional: bool = False) -> Any:
        value = self.get(key, int, optional=optional)
        if value is not None and value <= 0:
            self.fail(f"{key!r} must be > 0, got {value}")
        return value

    def number_list(self, key: str, count: int, kind: type | tuple[type, ...], *, positive: bool) -> tuple:
        values: list[Any] = self.get(key, list)
        if len(values) != count:
            self.fail(f"{key!r} has {len(values)} entries, expected segment_count={count}")
        for i, v in enumerate(values):
            valid = isinstance(v, kind) and not isinstance(v, bool)
            if valid:
                number = float(v)
                valid = math.isfinite(number) and (number > 0 or not positive)
            if not valid:
                self.fail(f"{key}[{i}] is not a valid {'positive ' if positive else ''}number: {v!r}")
        return tuple(values)


def load_segments_json(path: Path) -> TitleSegments:
    """Reads and validates OUTDIR/segments.json (a title dir or the file itself may be given)."""
    path = Path(path)
    if path.is_dir():
        path = path / SEGMENTS_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (is this a packaged title?)") from None
    return parse_segments_json(data, path)


def parse_segments_json(data: str | bytes, source: Path | str) -> TitleSegments:
    """Validates segments.json content (e.g. fetched over HTTP); errors name `source`."""
    path = Path(source)
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    top = _Checker(path, "", raw)
    title = top.get("title", str)
    segment_duration_s = top.get("segment_duration_s", (int, float))
    if not segment_duration_s > 0:
        top.fail(f"'segment_duration_s' must be > 0, got {segment_duration_s}")
    count = top.positive_int("segment_count")
    encrypted = top.get("encrypted", bool)

    video = []
    for i, item in enumerate(top.get("video", list)):
        c = _Checker(path, f"video[{i}]", item)
        video.append(
            VideoRenditionInfo(
                id=c.get("id", str),
                bitrate_bps=c.positive_int("bitrate_bps"),
                measured_bitrate_bps=c.positive_int("measured_bitrate_bps"),
                width=c.positive_int("width"),
                height=c.positive_int("height"),
                frame_rate=float(c.get("frame_rate", (int, float))),
                codecs=c.get("codecs", str),
                segment_sizes_bytes=c.number_list("segment_sizes_bytes", count, int, positive=True),
                segment_durations_s=c.number_list("segment_durations_s", count, (int, float), positive=True),
                quality_metric=c.get("quality_metric", str),
                segment_quality=c.number_list("segment_quality", count, (int, float), positive=False),
            )
        )
    if not video:
        top.fail("'video' lists no renditions")
    for i, (low, high) in enumerate(zip(video, video[1:])):
        if high.bitrate_bps <= low.bitrate_bps:
            top.fail(f"video[{i + 1}] ({high.id}) is not in ascending bitrate_bps order")
    audio = []
    for i, item in enumerate(top.get("audio", list)):
        c = _Checker(path, f"audio[{i}]", item)
        audio.append(
            AudioRenditionInfo(
                id=c.get("id", str),
                bitrate_bps=c.positive_int("bitrate_bps"),
                codecs=c.get("codecs", str),
                sample_rate_hz=c.positive_int("sample_rate_hz"),
                channels=c.positive_int("channels"),
                segment_sizes_bytes=c.number_list("segment_sizes_bytes", count, int, positive=True),
                segment_durations_s=c.number_list("segment_durations_s", count, (int, float), positive=True),
                measured_bitrate_bps=c.positive_int("measured_bitrate_bps", optional=True),
            )
        )
    ids = [r.id for r in video] + [r.id for r in audio]
    if len(set(ids)) != len(ids):
        top.fail(f"duplicate rendition ids in {ids}")
    return TitleSegments(
        title=title, segment_duration_s=float(segment_duration_s), segment_count=count,
        encrypted=encrypted, video=tuple(video), audio=tuple(audio),
    )
