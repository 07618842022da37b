"""What a desktop session did: the result (the player's report plus presentation figures) and its
summary, on screen at the end and on stdout (readable lines or one JSON object)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from player.client.headless import PlaybackReport, print_report
from player.desktop.livesound import sound_lines
from player.media.avsync import OffsetSummary


@dataclass(frozen=True, kw_only=True, slots=True)
class SeekRecord:
    """A seek: where it was asked to go, where the stream restarted, the first frame shown after it (s)."""

    target_s: float
    landed_s: float | None
    first_frame_pts_s: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class PresentedFrame:
    pts_s: float
    rendition: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StartupTimes:
    """When the window opened and showed its first video frame (unix s; None: never), and the longest
    the UI thread went without running its tick after that frame (how responsive the window was)."""

    window_open_unix_s: float
    first_frame_unix_s: float | None
    ui_max_gap_after_first_frame_s: float
    # The steps before it (unix s; None: not reached): the command began running (the interpreter
    # and the parser's imports done), the demo stack served, bootstrap (login, playback API,
    # manifest, keys) done, the first media segment downloaded (seen within 50 ms), the first video
    # frame decoded.
    command_start_unix_s: float | None = None
    stack_ready_unix_s: float | None = None
    bootstrapped_unix_s: float | None = None
    first_segment_unix_s: float | None = None
    first_decoded_unix_s: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {"window_open_unix_s": round(self.window_open_unix_s, 4),
                "first_frame_unix_s": rounded(self.first_frame_unix_s),
                "ui_max_gap_after_first_frame_ms": round(self.ui_max_gap_after_first_frame_s * 1000, 1),
                "command_start_unix_s": rounded(self.command_start_unix_s),
                "stack_ready_unix_s": rounded(self.stack_ready_unix_s),
                "bootstrapped_unix_s": rounded(self.bootstrapped_unix_s),
                "first_segment_unix_s": rounded(self.first_segment_unix_s),
                "first_decoded_unix_s": rounded(self.first_decoded_unix_s)}


@dataclass(frozen=True, kw_only=True, slots=True)
class DesktopResult:
    """One desktop session: the player's report plus what the window presented."""

    report: PlaybackReport | None  # None if the window closed before playback began
    frames_presented: int
    frames_dropped: int
    av_offset: OffsetSummary
    audio_driver: str
    audio_silence_s: float  # audio read where no PCM was decoded yet
    last_frame: PresentedFrame | None
    seeks: tuple[SeekRecord, ...]
    window_size_px: tuple[int, int]
    video_rect_px: tuple[int, int, int, int]  # x, y, width, height of the picture in the window
    screenshot: Path | None
    ended: bool  # the stream played out
    startup: StartupTimes | None = None
    live_sound: dict[str, Any] | None = None  # a live window's sound (livesound.sound_summary)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.report.as_dict() if self.report is not None else {}
        out["desktop"] = {
            "frames_presented": self.frames_presented, "frames_dropped": self.frames_dropped,
            "av_offset_ms": self.av_offset.as_dict(), "audio_driver": self.audio_driver,
            "audio_silence_s": round(self.audio_silence_s, 4),
            "last_frame": None if self.last_frame is None else {"pts_s": self.last_frame.pts_s,
                                                                "rendition": self.last_frame.rendition},
            "seeks": [{"target_s": s.target_s, "landed_s": s.landed_s, "first_frame_pts_s": s.first_frame_pts_s}
                      for s in self.seeks],
            "window_size_px": list(self.window_size_px), "video_rect_px": list(self.video_rect_px),
            "screenshot": None if self.screenshot is None else str(self.screenshot), "ended": self.ended,
            "startup": None if self.startup is None else self.startup.as_dict(),
            "live_sound": self.live_sound,
        }
        return out


def report_lines(report: PlaybackReport) -> list[str]:
    m = report.metrics
    lines = [
        f"{report.title} with {report.abr}: {m.segments} segments",
        f"QoE lin {m.qoe['lin']:.2f}  log {m.qoe['log']:.2f}  hd {m.qoe['hd']:.2f}",
        f"startup {m.startup_s:.2f} s, rebuffering {m.rebuffer_s:.2f} s in {m.rebuffer_count} stalls",
        f"average bitrate {m.avg_bitrate_bps / 1e6:.2f} Mbit/s, {m.switches} switches",
    ]
    if report.live is not None:
        live = report.live
        lines.append(f"live: latency p50 {live['latency_p50_s']} s, p95 {live['latency_p95_s']} s (target "
                     f"{live['target_latency_s']} s), {live['rate_changes']} rate changes, "
                     f"{live['seeks_to_live']} seeks to live")
    return lines


def presentation_lines(presented: int, dropped: int, offset: OffsetSummary) -> list[str]:
    return [
        f"frames presented {presented}, dropped {dropped}",
        f"A/V offset |pts - clock|: p50 {offset.p50_ms:.1f} ms, p95 {offset.p95_ms:.1f} ms, max {offset.max_ms:.1f} ms "
        f"(mean {offset.mean_ms:+.1f} ms; {100 * offset.within_tolerance:.1f}% within 40 ms)",
    ]


def print_summary(result: DesktopResult, *, as_json: bool) -> None:
    """The end-of-session summary on stdout (one JSON object with `as_json`)."""
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    if result.report is not None:
        print_report(result.report, as_json=False)
    for line in presentation_lines(result.frames_presented, result.frames_dropped, result.av_offset):
        print(f"  {line}")
    print(f"  audio driver {result.audio_driver}; silence inserted {result.audio_silence_s:.2f} s")
    if result.live_sound is not None:
        for line in sound_lines(result.live_sound):
            print(f"  live {line}")
    if result.screenshot is not None:
        print(f"  screenshot {result.screenshot}")
