"""Packaging: a video file (or the demo clip) to multi-bitrate DASH and HLS, optionally CENC-encrypted.

One decode of the source feeds one x264 encoder per ladder rung (each on its own thread); the
fragmented MP4 of each rendition is split into init + numbered segments, described by a static
MPD and by `segments.json` (sizes, durations, per-segment PSNR). Layout: docs/PACKAGING.md.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from server.formats.hls import MASTER_PLAYLIST_NAME
from server.formats.names import KEYS_NAME, MANIFEST_NAME, SEGMENTS_NAME, check_title
from server.formats.segments import TitleSegments, load_segments_json
from server.packaging.build import build_title, even_size
from server.packaging.demo import DemoClipConfig
from server.packaging.settings import (
    DEFAULT_LADDER,
    X264_PRESETS,
    PackageConfig,
    Rung,
    check_ladder_order,
    fit_ladder,
    parse_ladder,
)
from server.packaging.source import DemoSource, FileSource, MediaSource

__all__ = [
    "DEFAULT_LADDER", "DEMO_TITLE", "X264_PRESETS", "PackageConfig", "PackageResult", "Rung", "check_ladder_order",
    "ensure_demo_title", "fit_ladder", "package", "package_source", "parse_ladder",
]

DEMO_TITLE = "demo"
_BUILD_FORMAT = 4  # bump when packaging output changes, so cached demo titles are rebuilt (2: browser-ready MPD, 3: HLS playlists, 4: A/V start aligned in media time)
_DEMO_STAMP = ".abrkit-demo.json"


# --------------------------------------------------------------------------- packaging
@dataclass(frozen=True, slots=True)
class PackageResult:
    title_dir: Path
    segments: TitleSegments
    elapsed_s: float
    cpu_s: float  # process CPU time (all threads) spent packaging

    @property
    def realtime_factor(self) -> float:
        """Seconds of media packaged per second of wall time."""
        return self.segments.duration_s / self.elapsed_s if self.elapsed_s > 0 else math.inf


def package(input_path: Path, out_dir: Path, config: PackageConfig, *, title: str | None = None) -> PackageResult:
    """Packages a media file into the title directory `out_dir` (title defaults to the file stem)."""
    input_path = Path(input_path)
    title = title if title is not None else input_path.stem
    check_title(title, hint="pass --title NAME")
    source = FileSource(input_path)
    return package_source(source, Path(out_dir), config, title=title)


def package_source(source: MediaSource, out_dir: Path, config: PackageConfig, *, title: str) -> PackageResult:
    """Packages any MediaSource into `out_dir`, atomically (built aside, then renamed into place)."""
    check_title(title, hint="pass --title NAME")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not config.overwrite:
        raise FileExistsError(f"output directory {out_dir} is not empty (use --force to replace it)")
    ladder = fit_ladder(config.ladder, source.info.height)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        os.chmod(build, 0o755)
        segments = build_title(source, build, config, ladder, title)
        _publish(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return PackageResult(
        title_dir=out_dir,
        segments=segments,
        elapsed_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu_started,
    )


def _publish(build: Path, out_dir: Path) -> None:
    """Moves a finished build to out_dir, replacing what is there (two renames, no half state)."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{secrets.token_hex(4)}")
        os.rename(out_dir, old)
        os.rename(build, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(build, out_dir)


# --------------------------------------------------------------------------- demo title
@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _title_complete(title_dir: Path, stamp: dict[str, Any]) -> bool:
    """True if title_dir holds a finished packaging made with exactly these demo parameters."""
    try:
        if json.loads((title_dir / _DEMO_STAMP).read_text(encoding="utf-8")) != stamp:
            return False
        segments = load_segments_json(title_dir / SEGMENTS_NAME)
    except (OSError, ValueError):
        return False
    if not (title_dir / MANIFEST_NAME).is_file() or not (title_dir / MASTER_PLAYLIST_NAME).is_file():
        return False
    if segments.encrypted != (title_dir / KEYS_NAME).is_file():
        return False
    for media, renditions in (("video", segments.video), ("audio", segments.audio)):
        for rendition in renditions:
            directory = title_dir / media / rendition.id
            if not (directory / "init.mp4").is_file():
                return False
            for number, size in enumerate(rendition.segment_sizes_bytes, start=1):
                try:
                    if (directory / f"{number}.m4s").stat().st_size != size:
                        return False
                except OSError:
                    return False
    return True


def ensure_demo_title(
    content_root: Path,
    *,
    duration_s: float = 60.0,
    encrypt: bool = True,
    ladder: tuple[Rung, ...] | None = None,
    segment_s: float = 4.0,
    height: int = 1080,
    preset: str = "faster",
    progress: bool = False,
) -> Path:
    """Packages the demo clip into content_root/demo unless an identical one is already there.

    Idempotent and safe to call concurrently: a lock serialises builders, and the title is built
    aside and renamed into place, so readers see either nothing, the old title or the new one.
    """
    content_root = Path(content_root)
    title_dir = content_root / DEMO_TITLE
    width = even_size(height * 16 / 9)
    clip = DemoClipConfig(duration_s=duration_s, width=width, height=height)
    config = PackageConfig(
        ladder=ladder, segment_s=segment_s, encrypt=encrypt, preset=preset, progress=progress, overwrite=True
    )
    stamp = {
        "format": _BUILD_FORMAT,
        "clip": asdict(clip),
        "ladder": None if ladder is None else [asdict(r) for r in ladder],
        "segment_s": segment_s,
        "encrypt": encrypt,
        "preset": preset,
    }
    if _title_complete(title_dir, stamp):
        return title_dir
    with _locked(content_root / f".{DEMO_TITLE}.lock"):
        if _title_complete(title_dir, stamp):  # built by another process while we waited
            return title_dir
        package_source(DemoSource(clip), title_dir, config, title=DEMO_TITLE)
        # Last and atomic: a reader outside the lock sees no stamp or the whole one, never a part.
        stamp_tmp = title_dir / f".{_DEMO_STAMP}.{os.getpid()}.tmp"
        stamp_tmp.write_text(json.dumps(stamp, sort_keys=True), encoding="utf-8")
        os.replace(stamp_tmp, title_dir / _DEMO_STAMP)
    return title_dir
