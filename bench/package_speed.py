"""Packaging speed: x-realtime and CPU use of packaging the demo clip with the default ladder.

    python bench/package_speed.py [--duration-s 60] [--height 1080] [--preset faster] [--encrypt]

Prints seconds of media per wall second (x-realtime) and CPU seconds per wall second (process and
children, all threads): on a 2-core machine the latter should approach 2.0 if both cores are used.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.packager import X264_PRESETS, PackageConfig, package_source  # noqa: E402
from server.packaging.demo import DemoClipConfig  # noqa: E402
from server.packaging.source import DemoSource  # noqa: E402


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--height", type=int, default=1080, help="demo source height (16:9)")
    parser.add_argument("--preset", choices=X264_PRESETS, default="faster")
    parser.add_argument("--encrypt", action="store_true")
    args = parser.parse_args()

    clip = DemoClipConfig(duration_s=args.duration_s, width=round(args.height * 16 / 9 / 2) * 2, height=args.height)
    config = PackageConfig(preset=args.preset, encrypt=args.encrypt, progress=sys.stderr.isatty())
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-") as tmp:
        wall0, cpu0 = time.perf_counter(), _cpu_s()
        result = package_source(DemoSource(clip), Path(tmp) / "demo", config, title="demo")
        wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
    segments = result.segments
    print(
        f"demo clip {clip.width}x{clip.height}@{clip.frame_rate} {segments.duration_s:.1f} s, "
        f"preset {args.preset}, {len(segments.video)} rungs, {os.cpu_count()} cores"
    )
    print(f"{'rung':>6} {'target':>9} {'measured':>9} {'mean seg':>10} {'max seg':>10} {'PSNR':>7}")
    for video in segments.video:
        sizes = video.segment_sizes_bytes
        print(
            f"{video.id:>6} {video.bitrate_bps / 1e3:>7.0f}k {video.measured_bitrate_bps / 1e3:>8.0f}k "
            f"{sum(sizes) / len(sizes) / 1e3:>8.1f}kB {max(sizes) / 1e3:>8.1f}kB "
            f"{sum(video.segment_quality) / len(video.segment_quality):>5.1f}dB"
        )
    for audio in segments.audio:
        print(f"{audio.id:>6} {audio.bitrate_bps / 1e3:>7.0f}k {(audio.measured_bitrate_bps or 0) / 1e3:>8.0f}k")
    print(f"wall {wall:.1f} s  x-realtime {segments.duration_s / wall:.2f}  CPU {cpu:.1f} s  CPU/wall {cpu / wall:.2f}")
    cores = os.cpu_count() or 1
    if cores >= 2 and cpu / wall < 0.75 * min(cores, 2):
        print(f"note: CPU/wall {cpu / wall:.2f} is well below {min(cores, 2)}; is the machine busy with other work?")
    return 0


if __name__ == "__main__":
    sys.exit(main())
