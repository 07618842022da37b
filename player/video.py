"""Videos as the simulator and the ABR see them: a ladder plus per-segment sizes, and optionally audio.

Loaded from Pensieve's `video_size_<q>` folders, Sabre's JSON manifests (video only), or a title
packaged by `abrkit package` (its `segments.json`: video and audio, each with its own segments), so
simulated and emulated sessions see the same sizes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abr.types import Ladder
from player.timeline import Timeline
from server.formats.segments import TitleSegments, load_segments_json

# Pensieve's Envivio video: 48 chunks are played, the 49th size line is only read by MPC look-ahead.
PENSIEVE_BITRATES_KBPS = (300, 750, 1200, 1850, 2850, 4300)
PENSIEVE_SEGMENT_S = 4.0
PENSIEVE_SEGMENT_COUNT = 48
PENSIEVE_SIZE_ROWS = PENSIEVE_SEGMENT_COUNT + 1


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class AudioTrack:
    """A title's audio as the simulator sees it: `sizes_bytes[n, r]` is audio segment n in rendition r
    (renditions ascending by bitrate, `ladder`), segment n lasting `durations_s[n]` seconds. Its
    segments need not line up with the video's."""

    ladder: Ladder
    sizes_bytes: np.ndarray
    durations_s: tuple[float, ...]
    ids: tuple[str, ...] = ()  # rendition ids, as in the manifest
    timeline: Timeline = field(init=False)

    def __post_init__(self) -> None:
        sizes = np.ascontiguousarray(self.sizes_bytes, dtype=np.int64)
        count = len(self.durations_s)
        if sizes.ndim != 2 or sizes.shape != (count, len(self.ladder)):
            raise ValueError(f"audio sizes must be ({count} segments, {len(self.ladder)} renditions), got {sizes.shape}")
        if np.any(sizes <= 0):
            raise ValueError("audio segment sizes must be > 0 bytes")
        sizes.setflags(write=False)
        object.__setattr__(self, "sizes_bytes", sizes)
        object.__setattr__(self, "durations_s", tuple(float(d) for d in self.durations_s))
        object.__setattr__(self, "timeline", Timeline.from_durations(self.durations_s))

    @property
    def segment_count(self) -> int:
        return len(self.durations_s)

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        rows = self.sizes_bytes[segment_index : segment_index + count]
        return tuple(tuple(row) for row in rows.tolist())

    def until(self, end_s: float) -> AudioTrack:
        """The audio segments that start before media time `end_s` (at least one)."""
        count = max(1, self.timeline.count_before(end_s))
        if count >= self.segment_count:
            return self
        return AudioTrack(ladder=self.ladder, sizes_bytes=self.sizes_bytes[:count], durations_s=self.durations_s[:count],
                          ids=self.ids)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Video:
    """`sizes_bytes[n, q]`: size of segment n at quality q. Rows past `segment_count` are look-ahead only."""

    name: str
    ladder: Ladder
    sizes_bytes: np.ndarray
    segment_count: int
    resolutions: tuple[tuple[int, int], ...] = ()
    notes: tuple[str, ...] = ()  # decisions the loader made that a user should see (commands print them)
    audio: AudioTrack | None = None  # fetched by its own pipeline beside the video (None: video only)
    # quality[n, q]: segment n's objective quality at rung q in `quality_metric` (psnr_db, ssim_db,
    # vmaf), as the packager measured it; None when the source has none (Pensieve, Sabre videos)
    quality: np.ndarray | None = None
    quality_metric: str | None = None
    # `sizes_bytes` as tuples, built once: the simulator asks for upcoming rows at every decision
    _rows: tuple[tuple[int, ...], ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        sizes = np.ascontiguousarray(self.sizes_bytes, dtype=np.int64)
        if sizes.ndim != 2 or sizes.shape[1] != len(self.ladder):
            raise ValueError(f"video {self.name!r}: sizes must be (segments, {len(self.ladder)}), got {sizes.shape}")
        if not 0 < self.segment_count <= sizes.shape[0]:
            raise ValueError(f"video {self.name!r}: segment count {self.segment_count} outside 1..{sizes.shape[0]}")
        if np.any(sizes[: self.segment_count] <= 0):
            raise ValueError(f"video {self.name!r}: segment sizes must be > 0 bytes")
        sizes.setflags(write=False)
        object.__setattr__(self, "sizes_bytes", sizes)
        object.__setattr__(self, "_rows", tuple(tuple(row) for row in sizes.tolist()))
        if (self.quality is None) != (self.quality_metric is None):
            raise ValueError(f"video {self.name!r}: per-segment quality needs its metric and the metric its scores")
        if self.quality is not None:
            quality = np.ascontiguousarray(self.quality, dtype=np.float64)
            if quality.shape != (self.segment_count, len(self.ladder)) or not np.all(np.isfinite(quality)):
                raise ValueError(f"video {self.name!r}: quality must be finite ({self.segment_count}, "
                                 f"{len(self.ladder)}) scores, got shape {quality.shape}")
            quality.setflags(write=False)
            object.__setattr__(self, "quality", quality)

    @property
    def duration_s(self) -> float:
        return self.segment_count * self.ladder.segment_duration_s

    @property
    def timeline(self) -> Timeline:
        """The video segments: `segment_count` of `ladder.segment_duration_s` each."""
        return Timeline.uniform(self.ladder.segment_duration_s, self.segment_count)

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        """Sizes of segments `segment_index .. segment_index+count-1` that exist (look-ahead rows included)."""
        return self._rows[segment_index: segment_index + count]

    def upcoming_quality(self, segment_index: int, count: int) -> tuple[tuple[float, ...], ...]:
        """Quality scores of segments `segment_index ..` (as `upcoming`; empty without per-segment quality)."""
        if self.quality is None:
            return ()
        return tuple(tuple(row) for row in self.quality[segment_index: segment_index + count].tolist())

    @property
    def top_quality(self) -> float | None:
        """Mean score of the top rendition (a quality-aware QoE's default stall penalty)."""
        return None if self.quality is None else float(self.quality[:, -1].mean())

    def truncated(self, segment_count: int) -> Video:
        """The first `segment_count` video segments and the audio segments that play with them."""
        count = min(segment_count, self.segment_count)
        audio = None if self.audio is None else self.audio.until(count * self.ladder.segment_duration_s)
        return Video(
            name=self.name, ladder=self.ladder, sizes_bytes=self.sizes_bytes,
            segment_count=count, resolutions=self.resolutions, notes=self.notes, audio=audio,
            quality=None if self.quality is None else self.quality[:count], quality_metric=self.quality_metric,
        )

    def folded(self) -> Video:
        """One media type: each video segment's size in every rung plus the bytes of the first audio
        rendition playing under it (an audio segment counted in proportion to its overlap). For the
        tools that model one download per segment (the offline optimum, training); the session and
        `abrkit sim` fetch audio on its own pipeline instead."""
        if self.audio is None:
            return self
        audio = self.audio
        rows = self.sizes_bytes.shape[0]
        first = audio.sizes_bytes[:, 0]
        under = np.zeros(rows)
        if audio.segment_count in (rows, self.segment_count):
            under[: audio.segment_count] = first[:rows]  # cut at the same points (our packager): one for one
        else:
            seg_s = self.ladder.segment_duration_s
            starts = np.arange(rows) * seg_s
            a_starts = np.array([audio.timeline.start_s(k) for k in range(audio.segment_count)])
            a_durations = np.asarray(audio.durations_s)
            overlap = np.minimum(starts[:, None] + seg_s, a_starts + a_durations) - np.maximum(starts[:, None], a_starts)
            under = np.clip(overlap, 0.0, None) / a_durations @ first.astype(np.float64)
        return Video(name=self.name, ladder=self.ladder, sizes_bytes=self.sizes_bytes + np.rint(under).astype(np.int64)[:, None],
                     segment_count=self.segment_count, resolutions=self.resolutions, notes=self.notes,
                     quality=self.quality, quality_metric=self.quality_metric)


def load_pensieve_video(directory: Path, *, segment_count: int | None = None,
                        bitrates_kbps: tuple[int, ...] | None = None,
                        segment_s: float = PENSIEVE_SEGMENT_S) -> Video:
    """A folder of `video_size_<q>` files (bytes per line, one file per rung, q = 0 lowest).

    The ladder is `bitrates_kbps` if given, else the folder's `Manifest.mpd` bandwidths, else Pensieve's
    Envivio ladder for six files. Every file must list the same number of segments. A folder of 49 rows
    (Pensieve's layout) plays 48: the 49th row is look-ahead only, as in Pensieve's simulator.
    """
    files = sorted(directory.glob("video_size_*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    if not files:
        raise ValueError(f"{directory}: no video_size_<q> files")
    columns = [_read_size_column(file) for file in files]
    lengths = {file.name: len(column) for file, column in zip(files, columns)}
    if len(set(lengths.values())) != 1:
        listed = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise ValueError(f"{directory}: video size files list different numbers of segments ({listed})")
    rows = len(columns[0])
    if rows == 0:
        raise ValueError(f"{directory}: video size files are empty")
    notes: list[str] = []
    if bitrates_kbps is None:
        bitrates_kbps, source = _pensieve_ladder(directory, len(files))
        notes.append(f"{directory.name}: ladder {', '.join(map(str, bitrates_kbps))} kbit/s from {source}")
    if len(bitrates_kbps) != len(files):
        raise ValueError(f"{directory}: {len(files)} video_size_<q> files but a ladder of {len(bitrates_kbps)} bitrates")
    if segment_count is None:
        segment_count = PENSIEVE_SEGMENT_COUNT if rows == PENSIEVE_SIZE_ROWS else rows
        if segment_count < rows:
            notes.append(f"{directory.name}: plays {segment_count} of {rows} segments as Pensieve does "
                         f"(the last row is look-ahead only)")
    return Video(
        name=directory.name,
        ladder=Ladder(bitrates_bps=tuple(k * 1000 for k in bitrates_kbps), segment_duration_s=segment_s),
        sizes_bytes=np.array(columns).T,
        segment_count=segment_count,
        notes=tuple(notes),
    )


def _read_size_column(file: Path) -> list[int]:
    sizes = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sizes.append(int(line.split()[0]))
        except ValueError:
            raise ValueError(f"{file}:{number}: expected a segment size in bytes, got {line[:40]!r}") from None
    return sizes


def _pensieve_ladder(directory: Path, rungs: int) -> tuple[tuple[int, ...], str]:
    """(bitrates in kbit/s, where they came from) for a Pensieve size folder without an explicit ladder."""
    manifest = directory / "Manifest.mpd"
    if manifest.is_file():
        from player.client.mpd import parse_mpd

        video = parse_mpd(manifest.read_bytes(), manifest.resolve().as_uri()).video
        bandwidths = sorted(r.bandwidth_bps for r in video.representations) if video else []
        if len(bandwidths) == rungs:
            return tuple(b // 1000 for b in bandwidths), "Manifest.mpd"
    if rungs == len(PENSIEVE_BITRATES_KBPS):
        return PENSIEVE_BITRATES_KBPS, "Pensieve's Envivio ladder (six video_size files)"
    raise ValueError(f"{directory}: {rungs} video_size_<q> files and no Manifest.mpd with {rungs} "
                     f"Representation bandwidths: the ladder is unknown")


def load_sabre_video(path: Path) -> Video:
    """Sabre's manifest JSON: `segment_duration_ms`, `bitrates_kbps`, `segment_sizes_bits` (bits!)."""
    try:
        manifest = json.loads(path.read_text())
        bitrates = tuple(int(round(b * 1000)) for b in manifest["bitrates_kbps"])
        duration_s = manifest["segment_duration_ms"] / 1000.0
        rows = manifest["segment_sizes_bits"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a Sabre video manifest ({exc})") from None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: segment_sizes_bits must be a non-empty list of rows")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(bitrates):
            got = f"{len(row)} sizes" if isinstance(row, list) else type(row).__name__
            raise ValueError(f"{path}: segment_sizes_bits row {index} has {got}, expected one per bitrate "
                             f"({len(bitrates)})")
    try:
        sizes_bits = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: segment_sizes_bits must hold numbers ({exc})") from None
    if not np.all(np.isfinite(sizes_bits)):
        raise ValueError(f"{path}: segment_sizes_bits must hold finite numbers")
    sizes_bytes = np.ceil(sizes_bits / 8).astype(np.int64)
    return Video(
        name=path.stem, ladder=Ladder(bitrates_bps=bitrates, segment_duration_s=duration_s),
        sizes_bytes=sizes_bytes, segment_count=sizes_bytes.shape[0],
    )


def video_from_title(meta: TitleSegments, *, include_audio: bool = True) -> Video:
    """The simulator's view of a packaged title (`abrkit package`'s segments.json).

    The video ladder is the packager's target bitrates with each rendition's segment sizes; the audio
    renditions (`include_audio`) are a separate `AudioTrack` with their own segment sizes and
    durations, fetched by their own pipeline as the headless player does.
    """
    sizes = np.array([list(v.segment_sizes_bytes) for v in meta.video], dtype=np.int64).T
    audio = _audio_track(meta) if include_audio and meta.audio else None
    metrics = {v.quality_metric for v in meta.video}
    if len(metrics) > 1:
        raise ValueError(f"{meta.title}: renditions measure quality in different metrics ({', '.join(sorted(metrics))})")
    (metric,) = metrics
    quality = np.array([list(v.segment_quality) for v in meta.video], dtype=np.float64).T
    return Video(
        name=meta.title,
        ladder=Ladder(bitrates_bps=tuple(v.bitrate_bps for v in meta.video), segment_duration_s=meta.segment_duration_s),
        sizes_bytes=sizes, segment_count=meta.segment_count,
        resolutions=tuple((v.width, v.height) for v in meta.video), audio=audio,
        quality=quality, quality_metric=metric,
    )


def _audio_track(meta: TitleSegments) -> AudioTrack:
    """The audio renditions of a title, ascending by bitrate (one per bitrate: a second rendition at
    the same bitrate, another language say, is not a step of the ladder)."""
    renditions = {}
    for info in sorted(meta.audio, key=lambda a: a.bitrate_bps):
        renditions.setdefault(info.bitrate_bps, info)
    chosen = list(renditions.values())
    count = min(len(a.segment_sizes_bytes) for a in chosen)
    return AudioTrack(
        ladder=Ladder(bitrates_bps=tuple(renditions), segment_duration_s=meta.segment_duration_s),
        sizes_bytes=np.array([list(a.segment_sizes_bytes[:count]) for a in chosen], dtype=np.int64).T,
        durations_s=tuple(chosen[0].segment_durations_s[:count]), ids=tuple(a.id for a in chosen),
    )


def load_packaged_video(path: Path, *, include_audio: bool = True) -> Video:
    """A title packaged by `abrkit package` (its directory or its `segments.json`)."""
    return video_from_title(load_segments_json(path), include_audio=include_audio)


def load_video(path: str | os.PathLike[str]) -> Video:
    """Detect the format: a packaged title, a Sabre JSON manifest, or a Pensieve size folder."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such video (give a Pensieve video_size folder, a Sabre JSON, or a packaged title)")
    if p.is_dir():
        if (p / "segments.json").is_file():
            return load_packaged_video(p)
        if any(p.glob("video_size_*")):
            return load_pensieve_video(p)
        raise ValueError(f"{p}: neither a packaged title (segments.json) nor a Pensieve video (video_size_*)")
    if p.name == "segments.json":
        return load_packaged_video(p)
    return load_sabre_video(p)
