"""Desktop cold start: seconds from running `abrkit play` (no argument: a local stack with the demo
title) to its window, and to the first video frame on screen, with where the time went; and how
long the window's UI thread went without a tick after that frame (responsiveness).

The demo title is packaged first (the goal is for a packaged title). Each run is a fresh process
started the way a user starts it, timed from just before it is spawned; the window reports when it
opened, when it flipped its first frame and the steps before (`--json`, "startup"): the command
starting to run (interpreter and parser imports), the demo stack serving, bootstrap (login,
playback API, manifest, keys), the first segment, the first decoded frame. Without a display one
private Xvfb serves every run (Debian package xvfb), as a user's desktop would: its own start is not
counted. References measured in the same rounds: `python -c pass` and a bare pyglet window (import
pyglet, open a window, clear, flip), both from spawn. `--before REV` also runs the player of git
revision REV (it must report "startup") in interleaved rounds, for before/after figures.

    python bench/desktop_startup.py [--runs 5] [--exit-after-s 4] [--before REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from player.desktop.xvfb import xvfb_display
from server.config import default_cache_dir
from server.stack import ensure_demo_title

REPO = Path(__file__).resolve().parents[1]
GOAL_FIRST_FRAME_S = 1.5
# The steps a run reports, in order (keys of the --json "startup" object, without `_unix_s`).
STEPS = ("command_start", "window_open", "stack_ready", "bootstrapped", "first_segment", "first_decoded",
         "first_frame")
BARE_WINDOW = ("import time, pyglet\n"
               "pyglet.options['debug_gl'] = False\n"
               "w = pyglet.window.Window(960, 540, caption='bare')\n"
               "w.switch_to(); w.clear(); w.flip()\n"
               "print(time.time(), flush=True)\n"
               "w.close()\n")


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    label: str
    window_s: float
    first_frame_s: float | None
    ui_max_gap_ms: float
    steps_s: dict[str, float | None] = field(default_factory=dict)  # step -> seconds from spawn


def command(exit_after_s: float) -> list[str]:
    return [sys.executable, "-m", "player", "play", "--exit-after", f"{exit_after_s:g}", "--json"]


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
    steps = {step: (None if startup.get(f"{step}_unix_s") is None else startup[f"{step}_unix_s"] - started)
             for step in STEPS}
    return Run(label=label, window_s=startup["window_open_unix_s"] - started,
               first_frame_s=None if first is None else first - started,
               ui_max_gap_ms=startup["ui_max_gap_after_first_frame_ms"], steps_s=steps)


def reference(code: str) -> float:
    """Seconds from spawning `python -c code` to the time it prints (or to its exit if it prints none)."""
    started = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    printed = done.stdout.strip()
    return (float(printed) if printed else time.time()) - started


def checkout(rev: str, into: Path, cleanup: contextlib.ExitStack) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(into), rev], check=True)
    cleanup.callback(subprocess.run, ["git", "-C", str(REPO), "worktree", "remove", "--force", str(into)], check=False)
    return into


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per player (interleaved)")
    parser.add_argument("--exit-after-s", type=float, default=4.0, help="seconds the window stays open")
    parser.add_argument("--before", metavar="REV", help="also run the player of this git revision")
    args = parser.parse_args()
    print("packaging the demo title if it is not yet (not timed) ...", flush=True)
    ensure_demo_title(default_cache_dir() / "content")
    runs: list[Run] = []
    python_s: list[float] = []
    bare_s: list[float] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-startup-") as tmp, contextlib.ExitStack() as cleanup:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            cleanup.enter_context(xvfb_display())
        players = [("now", REPO)]
        if args.before:
            players.insert(0, (f"@{args.before}", checkout(args.before, Path(tmp) / "before", cleanup)))
        for index in range(args.runs):
            loads.append(os.getloadavg()[0])
            python_s.append(reference("pass"))
            bare_s.append(reference(BARE_WINDOW))
            print(f"round {index + 1}: load {loads[-1]:.1f}, python -c pass {python_s[-1]:.3f} s, "
                  f"bare pyglet window {bare_s[-1]:.2f} s", flush=True)
            for label, tree in players:
                runs.append(run_once(label, tree, args.exit_after_s))
                last = runs[-1]
                steps = ", ".join(f"{k} {_fmt(v)}" for k, v in last.steps_s.items())
                print(f"  {label}: {steps}; UI max gap after the first frame {last.ui_max_gap_ms:.0f} ms", flush=True)
    print(f"\nabrkit play (demo title, local stack), {args.runs} runs each, load average {min(loads):.1f}-"
          f"{max(loads):.1f} (1 min) on {os.cpu_count()} CPUs; seconds from spawn, medians")
    print(f"references in the same rounds: python -c pass {statistics.median(python_s):.3f} s, bare pyglet "
          f"window (import, open, first flip) {statistics.median(bare_s):.2f} s")
    header = "".join(f"{s:>14}" for s in STEPS)
    print(f"{'player':<12}{header}{'max 1st':>9}{'x bare':>8}{'UI gap ms':>10}")
    bare = statistics.median(bare_s)
    for label, _ in players:
        mine = [r for r in runs if r.label == label]
        medians = [_median([r.steps_s.get(step) for r in mine]) for step in STEPS]
        firsts = [r.first_frame_s if r.first_frame_s is not None else float("inf") for r in mine]
        first = statistics.median(firsts)
        gaps = [r.ui_max_gap_ms for r in mine]
        print(f"{label:<12}" + "".join(f"{_fmt(m):>14}" for m in medians)
              + f"{max(firsts):>9.2f}{first / bare:>8.2f}{statistics.median(gaps):>10.0f}")
    print(f"goal: first frame within {GOAL_FIRST_FRAME_S} s of `abrkit play`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
