"""Choosing the audio rendition: the players' default rule and the optional ABR hook.

The ABR decides video quality (`decide`); a session with audio also picks an audio rendition for each
audio segment. An algorithm that wants to decide it implements `decide_audio` (`AudioAware`); every
other algorithm gets `choose_audio`, the rule Shaka Player applies to its variants (video + audio
bandwidth within a safety share of the throughput estimate), with the video side fixed by the ABR's
latest choice: the highest audio rendition that still fits beside that video.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from abr.estimators import harmonic_mean, throughput_bps
from abr.types import Decision, Download, Ladder, Observation

# dash.js ThroughputRule's bandwidthSafetyFactor (0.9); Shaka's SimpleAbrManager uses 0.85 to switch
# up and 0.95 to switch down around the same point.
AUDIO_SAFETY = 0.9
# The estimate is the harmonic mean of the last 5 video downloads (RobustMPC's and Pensieve's
# window). Audio segments are too small to measure the link by: their time is mostly request
# latency (Shaka's estimator ignores samples under 16 kB for that reason).
AUDIO_WINDOW = 5


@runtime_checkable
class AudioAware(Protocol):
    """Optional: an algorithm that also chooses the audio rendition.

    `obs` is the audio pipeline's observation: `ladder` holds the audio renditions' bitrates
    (ascending; `segment_duration_s` is the nominal audio segment duration), `buffer_s` the audio
    buffered ahead of the playhead, `segment_index`/`segment_count` and `next_sizes_bytes` the audio
    timeline's, `last_quality` the last audio rendition and `downloads` the recent audio downloads
    (their `quality` indexes the audio ladder). Returns an index into `obs.ladder`.
    """

    def decide_audio(self, obs: Observation) -> int: ...


def throughput_estimate_bps(downloads: Iterable[Download], window: int = AUDIO_WINDOW) -> float | None:
    """Harmonic mean of the last `window` completed (not abandoned) downloads' throughput (None before any)."""
    samples = [throughput_bps(d.size_bytes, d.duration_s) for d in downloads
               if not d.abandoned and d.duration_s > 0][-window:]
    return harmonic_mean(samples) if samples else None


def choose_audio(renditions: Ladder, *, video_bitrate_bps: float | None, estimate_bps: float | None,
                 safety: float = AUDIO_SAFETY) -> Decision:
    """The highest audio rendition whose bitrate fits beside the video: `bitrate <= safety x estimate -
    video bitrate`. With no estimate yet, or no rendition that fits, the lowest (startup and a
    saturated link both favour the cheapest audio, as Shaka's variant choice does)."""
    if estimate_bps is None:
        return Decision(quality=0, reason="audio: no throughput estimate yet, lowest rendition")
    budget = safety * estimate_bps - (video_bitrate_bps or 0.0)
    quality = renditions.highest_at_most(budget)  # 0 when none fits
    return Decision(quality=quality, reason=f"audio: {renditions.bitrates_bps[quality] / 1e3:.0f} kbit/s, "
                    f"{safety:g} x {estimate_bps / 1e6:.2f} Mbit/s estimate less {(video_bitrate_bps or 0) / 1e6:.2f} "
                    f"Mbit/s video")
