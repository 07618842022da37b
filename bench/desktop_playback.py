"""Desktop playback under Xvfb with Mesa's software GL (llvmpipe): A/V sync, dropped frames, CPU.

For each resolution (720p, 1080p) a single-rendition demo title is packaged once (cached), served
by an origin on loopback, and played to the end in a window at its native size by a child process
(so the figures are the player's alone). The child reports the A/V offset distribution, frames
presented and dropped, its CPU use (% of one core, and split by thread: UI, decode, audio, player,
llvmpipe and FFmpeg workers) and the busy share of each core during the run (other jobs on a
shared machine show up there too).

    python bench/desktop_playback.py [--duration-s 16] [--heights 720,1080] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

from player.client.harness import UrlTarget
from player.client.headless import PlayerConfig
from player.desktop import DesktopUnavailable
from player.desktop.app import DesktopApp
from player.desktop.config import DesktopConfig
from player.desktop.xvfb import xvfb_display
from server.origin import OriginConfig, create_app
from server.packager import PackageConfig, package_source, parse_ladder
from server.packaging.demo import DemoClipConfig
from server.packaging.source import DemoSource

CACHE = Path(tempfile.gettempdir()) / "abrkit-bench-desktop"
BITRATES = {720: "2500k", 1080: "5000k"}
SCREEN = "2560x1440x24"  # room for a 1080p window at its native size


def ensure_title(height: int, duration_s: float) -> tuple[Path, str]:
    """A one-rendition title at `height` (16:9), packaged once per duration."""
    name = f"p{height}_{int(duration_s)}s"
    root = CACHE / "content"
    if not (root / name / "manifest.mpd").exists():
        clip = DemoClipConfig(duration_s=duration_s, width=height * 16 // 9, height=height)
        config = PackageConfig(ladder=parse_ladder(f"{height}p:{BITRATES.get(height, '4000k')}"), preset="veryfast",
                               overwrite=True)
        package_source(DemoSource(clip), root / name, config, title=name)
    return root, name


def serve(root: Path) -> str:
    """An origin for `root` on a background event loop; returns its base URL."""
    ready = threading.Event()
    box: dict[str, str] = {}

    async def main() -> None:
        runner = web.AppRunner(create_app(OriginConfig(content_root=root, port=0)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
    ready.wait(30)
    return box["url"]


# -- the child: plays one title and measures itself ------------------------------------------------


def _core_times() -> list[tuple[int, int]]:
    """(busy, total) jiffies of each core from /proc/stat."""
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            out.append((sum(values) - idle, sum(values)))
    return out


def _thread_cpu_s() -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of this process, by native id, with its kernel name."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return out


def _thread_label(native_id: int, kernel_name: str, python_names: dict[int, str]) -> str:
    name = python_names.get(native_id)
    if name == "MainThread":
        return "UI (pyglet main thread)"
    if name is not None:
        return {"abrkit-decode": "video decode+convert", "abrkit-audio": "audio decode",
                "abrkit-player": "player (asyncio)"}.get(name.rsplit("_", 1)[0], f"python: {name}")
    if kernel_name.startswith("llvmpipe"):
        return "llvmpipe (GL rasteriser)"
    return "native workers (FFmpeg threads, pyglet audio)"


def child(url: str, duration_s: float) -> dict[str, object]:
    cores_before, wall_before, cpu_before = _core_times(), time.monotonic(), os.times()
    app = DesktopApp(UrlTarget(url=url), PlayerConfig(abr="bba"),
                     options=DesktopConfig(exit_at_end=True), exit_after_s=duration_s + 30)
    python_names: dict[int, str] = {}
    threads: dict[int, tuple[str, float]] = {}

    def sample_threads(_: DesktopApp) -> None:
        # Worker threads end with playback, so their CPU time is sampled while they run.
        python_names.update({t.native_id: t.name for t in threading.enumerate() if t.native_id is not None})
        threads.update(_thread_cpu_s())

    for second in range(1, int(duration_s) + 30):
        app.at(second, sample_threads)
    result = app.run()
    wall_s = time.monotonic() - wall_before
    cpu_after, cores_after = os.times(), _core_times()
    threads.update(_thread_cpu_s())
    by_label: dict[str, float] = {}
    for tid, (kernel_name, cpu_s) in threads.items():
        label = _thread_label(tid, kernel_name, python_names)
        by_label[label] = by_label.get(label, 0.0) + cpu_s
    process_cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    per_core = [round(100 * (b1 - b0) / max(t1 - t0, 1), 1)
                for (b0, t0), (b1, t1) in zip(cores_before, cores_after)]
    desktop = result.as_dict()["desktop"]
    return {
        "frames_presented": result.frames_presented, "frames_dropped": result.frames_dropped,
        "av_offset_ms": desktop["av_offset_ms"], "audio_driver": result.audio_driver,
        "window_size_px": desktop["window_size_px"], "ended": result.ended, "wall_s": round(wall_s, 2),
        "process_cpu_pct": round(100 * process_cpu_s / wall_s, 1), "per_core_busy_pct": per_core,
        "threads_cpu_pct": {k: round(100 * v / wall_s, 1) for k, v in sorted(by_label.items(), key=lambda kv: -kv[1])},
        "rebuffer_s": result.report.metrics.rebuffer_s if result.report else None,
    }


# -- the parent --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=16.0, help="title length (whole 4 s segments)")
    parser.add_argument("--heights", default="720,1080", help="resolutions to play")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", nargs=2, metavar=("URL", "DURATION_S"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], float(args.child[1]))))
        return 0
    heights = [int(h) for h in args.heights.split(",")]
    titles = {h: ensure_title(h, args.duration_s) for h in heights}
    results: dict[str, object] = {}
    try:
        display = xvfb_display(SCREEN) if not os.environ.get("DISPLAY") else None
        context = display.__enter__() if display is not None else os.environ["DISPLAY"]
    except DesktopUnavailable as exc:
        print(f"desktop_playback: skipped: {exc}")
        return 0
    try:
        url = serve(CACHE / "content")
        for height, (_, name) in titles.items():
            process = subprocess.run(
                [sys.executable, __file__, "--child", f"{url}/{name}/manifest.mpd", str(args.duration_s)],
                capture_output=True, text=True, timeout=args.duration_s + 120, env={**os.environ, "DISPLAY": context})
            if process.returncode != 0:
                print(process.stderr, file=sys.stderr)
                return 1
            results[f"{height}p"] = json.loads(process.stdout.strip().splitlines()[-1])
    finally:
        if display is not None:
            display.__exit__(None, None, None)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"Desktop playback under Xvfb + llvmpipe, {os.cpu_count()} cores, {args.duration_s:.0f} s titles, "
          "one rendition each, window at native size")
    for label, r in results.items():
        av = r["av_offset_ms"]  # type: ignore[index]
        print(f"{label}: presented {r['frames_presented']}, dropped {r['frames_dropped']}; "
              f"A/V |offset| p50 {av['p50_ms']} ms, p95 {av['p95_ms']} ms, max {av['max_ms']} ms, "
              f"mean {av['mean_ms']} ms, {100 * av['within_40ms']:.1f}% within 40 ms")
        print(f"      CPU {r['process_cpu_pct']}% of one core; cores busy {r['per_core_busy_pct']} %; "
              f"rebuffering {r['rebuffer_s']} s; audio {r['audio_driver']}")
        for thread, pct in r["threads_cpu_pct"].items():  # type: ignore[union-attr]
            print(f"        {pct:6.1f}%  {thread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
