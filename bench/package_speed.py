"""Packaging speed: x-realtime and CPU use of packaging the demo clip with the default ladder.

    python bench/package_speed.py [--duration-s 60] [--height 1080] [--preset faster] [--encrypt]

Prints seconds of media per wall second (x-realtime) and CPU seconds per wall second (process and
children, all threads): on an idle 2-core machine the latter should approach 2.0. On a shared machine
CPU/wall only shows what was left over, so it also prints how many threads were runnable on average
(on a CPU or waiting in a run queue, from /proc/self/task/*/schedstat): 2 or more means the
packager would keep both cores busy by itself.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from server.packager import X264_PRESETS, PackageConfig, package_source
from server.packaging.demo import DemoClipConfig
from server.packaging.source import DemoSource


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class RunnableSampler(threading.Thread):
    """Keeps the latest (ns on CPU, ns waiting for a CPU) of every thread of this process."""

    def __init__(self, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.latest: dict[str, tuple[int, int]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as handle:
                    on_cpu, waiting, _ = (int(v) for v in handle.read().split())
            except (OSError, ValueError):
                continue  # the thread ended between listdir and open
            self.latest[tid] = (on_cpu, waiting)

    def totals_s(self) -> tuple[float, float]:
        self.sample()
        return (sum(v[0] for v in self.latest.values()) / 1e9, sum(v[1] for v in self.latest.values()) / 1e9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--height", type=int, default=1080, help="demo source height (16:9)")
    parser.add_argument("--preset", choices=X264_PRESETS, default="faster")
    parser.add_argument("--encrypt", action="store_true")
    args = parser.parse_args()

    clip = DemoClipConfig(duration_s=args.duration_s, width=round(args.height * 16 / 9 / 2) * 2, height=args.height)
    config = PackageConfig(preset=args.preset, encrypt=args.encrypt, progress=sys.stderr.isatty())
    sampler = RunnableSampler() if os.path.isdir("/proc/self/task") else None
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-") as tmp:
        if sampler is not None:
            sampler.sample()
            before = sampler.totals_s()
            sampler.start()
        wall0, cpu0 = time.perf_counter(), _cpu_s()
        result = package_source(DemoSource(clip), Path(tmp) / "demo", config, title="demo")
        wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
        if sampler is not None:
            sampler.stop.set()
            after = sampler.totals_s()
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
    if sampler is not None:
        on_cpu, waiting = after[0] - before[0], after[1] - before[1]
        print(
            f"threads runnable on average {(on_cpu + waiting) / wall:.2f} "
            f"(on a CPU {on_cpu / wall:.2f}, waiting for one {waiting / wall:.2f})"
        )
    cores = os.cpu_count() or 1
    if cores >= 2 and cpu / wall < 0.75 * min(cores, 2):
        print(f"note: CPU/wall {cpu / wall:.2f} is well below {min(cores, 2)}; is the machine busy with other work?")
    return 0


if __name__ == "__main__":
    sys.exit(main())
