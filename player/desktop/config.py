"""The desktop player's window and presentation policy (no pyglet: the player thread reads it too)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class DesktopConfig:
    """Window and presentation policy."""

    window_size_px: tuple[int, int] | None = None  # None: the top rendition's size, within 90% of the screen
    max_texture_px: tuple[int, int] = (1920, 1080)  # frames are converted to the top rendition's size, capped
    frame_queue_frames: int = 12  # decoded RGBA frames held ahead (0.5 s at 24 fps)
    refresh_hz: float = 60.0  # checks of the clock per second; the window redraws only on change
    vsync: bool = True
    show_stats: bool = False
    exit_at_end: bool = False  # quit when the stream has played out (else the summary stays up)
    snapshot_interval_s: float = 0.05  # how often the player thread publishes its state
    history_interval_s: float = 0.5  # graph sample spacing
    join_timeout_s: float = 30.0  # wait this long for the player thread at exit

    def __post_init__(self) -> None:
        if self.window_size_px is not None and min(self.window_size_px) < 1:
            raise ValueError(f"window_size_px must be positive, got {self.window_size_px}")
        if min(self.max_texture_px) < 16:
            raise ValueError(f"max_texture_px must be >= 16 px each way, got {self.max_texture_px}")
        if self.frame_queue_frames < 1:
            raise ValueError(f"frame_queue_frames must be >= 1, got {self.frame_queue_frames}")
        if not (self.refresh_hz > 0 and self.snapshot_interval_s > 0 and self.history_interval_s > 0):
            raise ValueError("refresh_hz, snapshot_interval_s and history_interval_s must be > 0")
