"""A live window's sound: the live audio pipeline's PCM, heard in sync with the live session.

The presentation clock of a live window is the session's playhead (`SessionClock`, liveclock.py),
which runs at the rate the session steers (0.95x-1.05x). The sound follows that clock as ffplay's
audio follows an external master clock: `StretchReader` (player/media/stretch.py) reads the PCM
at the clock's rate with its pitch kept (what a browser does under dash.js's or Shaka's
`playbackRate`), aiming each hop at where the clock will be when the hop is heard, within +-10% of
the rate. The audio output (pyglet's `Player` over our source, as for VOD) then only plays bytes.

What is heard is measured, not assumed: the output's play cursor (pyglet's `Player.time` since the
last seek, the clock pyglet holds its driver to) mapped back through the stretcher to the media
second it came from. `drift_ms` keeps heard audio minus the session clock at each window update;
past `RESYNC_S` (the clock jumped: a seek to live, the end of a stall) the sound is restarted at
the clock; smaller differences are steered out by the stretcher. No pyglet import here: the app passes the player in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from player.desktop.liveclock import SessionClock
from player.desktop.livejoin import LiveJoin
from player.media.avsync import PcmBuffer
from player.media.distribution import Distribution
from player.media.stretch import StretchReader

# Heard audio further than this from the clock is restarted at the clock instead of steered back
# (steering at 10% takes 2 s to make up 0.2 s).
RESYNC_S = 0.2


@dataclass(slots=True)
class SoundStats:
    """What a live window's sound did."""

    # |heard audio media time - the session clock| at each window update, in bounded memory
    drift_ms: Distribution = field(default_factory=Distribution)
    last_drift_ms: float | None = None  # the latest, signed
    restarts: int = 0  # the sound restarted at the clock: its start, resumes, drift past RESYNC_S (clock jumps)


class LiveSound:
    """Drives an audio output (a pyglet `Player` playing `reader`) from a `SessionClock`."""

    def __init__(self, pcm: PcmBuffer, clock: SessionClock) -> None:
        self.pcm = pcm
        self.clock = clock
        self.player: Any = None  # the audio output: play(), pause(), seek(s), playing, time, last_seek_time
        self.reader = StretchReader(pcm, target=self._target, heard_out_s=self._heard_out_s)
        self.stats = SoundStats()
        self._heard_before_s = 0.0  # output seconds heard before the last restart

    def attach(self, player: Any) -> None:
        """The audio output, already queued with a source reading `reader` (seek -> `reader.reset`)."""
        self.player = player

    # -- the stretcher's view of the clock and the output (called on the output's thread) --------------

    def _target(self, ahead_s: float) -> tuple[float, float] | None:
        clock = self.clock
        if not clock.playing:
            return None
        return clock.time + clock.rate * ahead_s, clock.rate

    def _heard_out_s(self) -> float:
        player = self.player
        return 0.0 if player is None else max(0.0, player.time - player.last_seek_time)

    # -- on the UI thread ------------------------------------------------------------------------------

    def heard_media_s(self) -> float | None:
        """The media second being heard now (None: nothing heard since the last restart)."""
        if self.player is None or not self.player.playing:
            return None
        return self.reader.media_s_at(self._heard_out_s())

    def follow(self) -> None:
        """Once per window update, after the clock followed the session: play, pause or restart the
        sound with the clock, and note the drift of what is heard."""
        player, clock = self.player, self.clock
        if player is None:
            return
        if not clock.playing:
            if player.playing:
                player.pause()  # what is read ahead stays: it is where the clock resumes
            return
        heard = self.heard_media_s()
        drift_s = None if heard is None else heard - clock.time
        if not player.playing or (drift_s is not None and abs(drift_s) > RESYNC_S):
            # The start, a resume, or the clock jumped (a seek to live, a stall's end): restart there.
            # Smaller jumps of the clock (its 50 ms re-anchoring on a loaded machine) are steered out.
            self.stats.restarts += 1
            self._heard_before_s += self._heard_out_s()
            player.seek(clock.time)  # drops the output's read-ahead; the reader starts at the clock
            player.play()
            return
        if drift_s is not None:
            self.stats.last_drift_ms = drift_s * 1000.0
            self.stats.drift_ms.add(abs(self.stats.last_drift_ms))

    def heard_s(self) -> float:
        """Seconds of sound the output has played (its play cursor, over every restart; silence
        where no PCM was decoded included: `pcm.silence_frames` counts that)."""
        return self._heard_before_s + (self._heard_out_s() if self.player is not None else 0.0)

    def delete(self) -> None:
        if self.player is not None:
            self.player.pause()
            self.player.delete()


def sound_summary(sound: LiveSound | None, *, has_audio: bool, audio_enabled: bool,
                  errors: tuple[str, ...], error_count: int | None = None,
                  join: LiveJoin | None = None) -> dict[str, Any]:
    """A live window's sound for the summary, the JSON and the overlay: what was heard and how far from
    the clock, or why nothing was (never a silent window without saying so). `errors` are the audio
    failures kept (the first and last), `error_count` how many there were (default: as many); `join`
    how the picture and the sound started (`join`: the wait, and whether the sound was there)."""
    if sound is None:
        reason = ("off (PlayerConfig.audio is False)" if not audio_enabled
                  else "starting" if has_audio else "none in this stream (video only)")
        return {"audio": reason, "errors": list(errors[:5])}
    silence_s = sound.pcm.silence_frames / sound.pcm.sample_rate_hz
    drift = sound.stats.drift_ms
    return {
        "audio": "failed" if errors and sound.heard_s() <= silence_s else "played",
        "heard_s": round(sound.heard_s(), 3),
        "silence_s": round(silence_s, 3),
        "drift_ms": {"count": drift.count,
                     "p50": round(drift.percentile(50), 1) if drift.count else None,
                     "p95": round(drift.percentile(95), 1) if drift.count else None,
                     "max": round(drift.max, 1) if drift.count else None},
        "restarts": sound.stats.restarts,
        "ratio": round(sound.reader.ratios[-1], 4) if sound.reader.ratios else None,
        "errors_count": len(errors) if error_count is None else error_count, "errors": list(errors[:5]),
        "join": None if join is None or join.waited_s is None else {"waited_s": round(join.waited_s, 3),
                                                                     "with_audio": join.with_audio},
    }


def sound_lines(summary: dict[str, Any]) -> list[str]:
    """The overlay's and the summary's lines for `sound_summary`."""
    if summary["audio"] not in ("played", "failed"):
        lines = [f"audio: {summary['audio']}"]
    else:
        drift = summary["drift_ms"]
        p95 = "-" if drift["p95"] is None else f"{drift['p95']:.0f} ms"
        ratio = "-" if summary["ratio"] is None else f"{summary['ratio']:.3f}x"
        lines = [f"audio {summary['heard_s']:.1f} s heard, {summary['silence_s']:.1f} s silence; drift from the "
                 f"clock p95 {p95}; stretched {ratio} (pitch kept), restarts {summary['restarts']}"]
    join = summary.get("join")
    if join is not None and not join["with_audio"]:
        lines.append(f"audio missing at the join: the picture started alone after {join['waited_s']:.1f} s")
    if summary["errors"]:
        count = summary.get("errors_count", len(summary["errors"]))
        lines.append(f"audio FAILED in {count} segment(s): {summary['errors'][0][:160]}")
    return lines
