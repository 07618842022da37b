"""Desktop cold start: seconds from running `abrkit play` (no argument: a local stack with the demo
title) to its window, and to the first video frame on screen; and how long the window's UI thread
went without a tick after that frame (responsiveness).

The demo title is packaged first (the goal is for a packaged title). Each run is a fresh process
started the way a user starts it, timed from just before it is spawned; the window reports when it
opened and when it flipped its first frame (`--json`, "startup"). Without a display it runs under
`xvfb-run` (Debian package xvfb). `--before REV` also runs the player of git revision REV (it must
report "startup", i.e. be from this bench's commit on) in interleaved rounds, for before/after figures.

    python bench/desktop_startup.py [--runs 5] [--exit-after-s 4] [--before REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from server.config import default_cache_dir
from server.stack import ensure_demo_title

REPO = Path(__file__).resolve().parents[1]
GOAL_FIRST_FRAME_S = 1.5


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    label: str
    window_s: float
    first_frame_s: float | None
    ui_max_gap_ms: float


def command(exit_after_s: float) -> list[str]:
    cmd = [sys.executable, "-m", "player", "play", "--exit-after", f"{exit_after_s:g}", "--json"]
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return cmd
    if shutil.which("xvfb-run") is None:
        sys.exit("desktop_startup: no display and no xvfb-run: apt-get install xvfb")
    return ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", *cmd]


def run_once(label: str, tree: Path, exit_after_s: float) -> Run:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.time()
    done = subprocess.run(command(exit_after_s), cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{label}: abrkit play failed ({done.returncode}): {done.stderr[-2000:]}")
    startup = json.loads(done.stdout.strip().splitlines()[-1])["desktop"].get("startup")
    if startup is None:
        raise RuntimeError(f"{label}: this abrkit play does not report its startup times (too old a revision?)")
    first = startup["first_frame_unix_s"]
    return Run(label=label, window_s=startup["window_open_unix_s"] - started,
               first_frame_s=None if first is None else first - started,
               ui_max_gap_ms=startup["ui_max_gap_after_first_frame_ms"])


def checkout(rev: str, into: Path, cleanup: contextlib.ExitStack) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(into), rev], check=True)
    cleanup.callback(subprocess.run, ["git", "-C", str(REPO), "worktree", "remove", "--force", str(into)], check=False)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per player (interleaved)")
    parser.add_argument("--exit-after-s", type=float, default=4.0, help="seconds the window stays open")
    parser.add_argument("--before", metavar="REV", help="also run the player of this git revision")
    args = parser.parse_args()
    print("packaging the demo title if it is not yet (not timed) ...", flush=True)
    ensure_demo_title(default_cache_dir() / "content")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-startup-") as tmp, contextlib.ExitStack() as cleanup:
        players = [("now", REPO)]
        if args.before:
            players.insert(0, (f"@{args.before}", checkout(args.before, Path(tmp) / "before", cleanup)))
        for index in range(args.runs):
            for label, tree in players:
                runs.append(run_once(label, tree, args.exit_after_s))
                last = runs[-1]
                first = "never" if last.first_frame_s is None else f"{last.first_frame_s:.2f} s"
                print(f"run {index + 1} {label}: window {last.window_s:.2f} s, first frame {first}, "
                      f"UI max gap after it {last.ui_max_gap_ms:.0f} ms", flush=True)
    load = os.getloadavg()[0]
    print(f"\nabrkit play (demo title, local stack), {args.runs} runs each, load average {load:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'player':<16} {'window s':>9} {'1st frame s p50':>16} {'max':>6} {'UI gap ms p50':>14} {'max':>6}")
    for label, _ in players:
        mine = [r for r in runs if r.label == label]
        firsts = [r.first_frame_s if r.first_frame_s is not None else float("inf") for r in mine]
        gaps = [r.ui_max_gap_ms for r in mine]
        print(f"{label:<16} {statistics.median(r.window_s for r in mine):>9.2f} {statistics.median(firsts):>16.2f} "
              f"{max(firsts):>6.2f} {statistics.median(gaps):>14.0f} {max(gaps):>6.0f}")
    print(f"goal: first frame within {GOAL_FIRST_FRAME_S} s of `abrkit play`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
