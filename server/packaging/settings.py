"""What to package: the video ladder (rungs of height and bitrate) and the encoding settings.

Validated when built (`ValueError` with the reason), so a bad `--ladder` or preset fails before any
encoding starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)


# --------------------------------------------------------------------------- ladder
@dataclass(frozen=True, kw_only=True, slots=True)
class Rung:
    """One video rendition of the ladder: its height (lines) and target bitrate."""

    height: int
    bitrate_bps: int

    def __post_init__(self) -> None:
        if self.height < 64 or self.height > 4320 or self.height % 2:
            raise ValueError(f"rung height must be even and in [64, 4320], got {self.height}")
        if not (50_000 <= self.bitrate_bps <= 100_000_000):
            raise ValueError(f"rung bitrate must be in [50k, 100M] bps, got {self.bitrate_bps}")

    @property
    def id(self) -> str:
        return f"v{self.height}p"


DEFAULT_LADDER = (
    Rung(height=216, bitrate_bps=300_000),
    Rung(height=360, bitrate_bps=800_000),
    Rung(height=540, bitrate_bps=1_600_000),
    Rung(height=720, bitrate_bps=3_000_000),
    Rung(height=1080, bitrate_bps=6_000_000),
)
_RUNG_TEXT = re.compile(r"(?P<height>\d+)p:(?P<rate>\d+(?:\.\d+)?)(?P<unit>[kKmM]?)")


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """Parses "216p:300k,360p:800k,720p:3M" (bitrates in bps, with an optional k or M suffix)."""
    rungs = []
    for item in text.split(","):
        item = item.strip()
        match = _RUNG_TEXT.fullmatch(item)
        if match is None:
            raise ValueError(f"bad ladder entry {item!r}: expected HEIGHTp:BITRATE, like 360p:800k")
        scale = {"": 1, "k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}[match["unit"]]
        try:
            rungs.append(Rung(height=int(match["height"]), bitrate_bps=round(float(match["rate"]) * scale)))
        except ValueError as exc:
            raise ValueError(f"bad ladder entry {item!r}: {exc}") from None
    check_ladder_order(rungs)
    return tuple(rungs)


def check_ladder_order(rungs: Sequence[Rung]) -> None:
    """Rungs must grow strictly in height and in bitrate (ascending quality indices)."""
    if not rungs:
        raise ValueError("the ladder is empty")
    for low, high in zip(rungs, rungs[1:]):
        if high.height <= low.height:
            raise ValueError(f"ladder heights must increase: {low.id} is followed by {high.id}")
        if high.bitrate_bps <= low.bitrate_bps:
            raise ValueError(
                f"ladder bitrates must increase: {high.id} at {high.bitrate_bps} bps "
                f"is not above {low.id} at {low.bitrate_bps} bps"
            )


def fit_ladder(ladder: tuple[Rung, ...] | None, source_height: int) -> tuple[Rung, ...]:
    """The rungs to encode: an explicit ladder must fit the source; the default is trimmed to it."""
    if ladder is None:
        fitting = tuple(r for r in DEFAULT_LADDER if r.height <= source_height)
        if not fitting:
            raise ValueError(
                f"the source is only {source_height} lines tall; the default ladder starts at "
                f"{DEFAULT_LADDER[0].height}p (pass a smaller --ladder)"
            )
        return fitting
    too_tall = [r.id for r in ladder if r.height > source_height]
    if too_tall:
        raise ValueError(
            f"ladder rung(s) {', '.join(too_tall)} are taller than the {source_height}-line source; "
            "upscaling only wastes bits (drop them from --ladder)"
        )
    return ladder


# --------------------------------------------------------------------------- config
@dataclass(frozen=True, kw_only=True, slots=True)
class PackageConfig:
    """How to package a title. `ladder=None` means the default ladder, trimmed to the source."""

    ladder: tuple[Rung, ...] | None = None
    segment_s: float = 4.0
    encrypt: bool = False
    preset: str = "faster"
    encoder_threads: int = 2  # x264 threads per rendition; renditions also run in parallel
    audio_bitrate_bps: int = 128_000
    audio_sample_rate_hz: int = 48_000
    audio_channels: int = 2
    quality_samples_per_segment: int = 2
    progress: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.ladder is not None:
            check_ladder_order(self.ladder)
        if not (1.0 <= self.segment_s <= 30.0):
            raise ValueError(f"segment_s must be in [1, 30], got {self.segment_s}")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")
        if not (1 <= self.encoder_threads <= 16):
            raise ValueError(f"encoder_threads must be in [1, 16], got {self.encoder_threads}")
        if not (32_000 <= self.audio_bitrate_bps <= 512_000):
            raise ValueError(f"audio_bitrate_bps must be in [32k, 512k], got {self.audio_bitrate_bps}")
        if self.audio_sample_rate_hz not in (44_100, 48_000):
            raise ValueError(f"audio_sample_rate_hz must be 44100 or 48000, got {self.audio_sample_rate_hz}")
        if self.audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 or 2, got {self.audio_channels}")
        if not (1 <= self.quality_samples_per_segment <= 8):
            raise ValueError(f"quality_samples_per_segment must be in [1, 8], got {self.quality_samples_per_segment}")


