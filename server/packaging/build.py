"""One packaging run in a fresh build directory: encode every rung, split the fragments, measure
PSNR from the packaged segments, write the MPD, the HLS playlists, `segments.json` and (encrypted)
`keys.json`.

`server.packager` publishes the finished directory; this module only fills it.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from tqdm import tqdm

from server.formats.dash import LAURL_PLACEHOLDER, W3C_COMMON_SYSTEM_ID
from server.formats.names import KEYS_NAME, MANIFEST_NAME, SEGMENTS_NAME
from server.formats.segments import AudioRenditionInfo, TitleSegments, VideoRenditionInfo
from server.packaging import quality
from server.packaging.hls import write_hls
from server.packaging.mp4split import build_pssh
from server.packaging.mpd import MpdAdaptationSet, MpdProtection, MpdRepresentation, build_mpd
from server.packaging.planes import ColorTags, luma
from server.packaging.settings import PackageConfig, Rung
from server.packaging.source import AudioChunk, MediaSource, SourceInfo
from server.packaging.tracks import (
    AudioTrackPackager,
    PackagedTrack,
    TrackKey,
    VideoEncodeSettings,
    VideoRenditionEncoder,
    concat_reader,
)

QUALITY_METRIC = "psnr_db"


def build_title(
    source: MediaSource, build_dir: Path, config: PackageConfig, ladder: tuple[Rung, ...], title: str
) -> TitleSegments:
    """Packages `source` into the empty directory `build_dir` and describes what it wrote."""
    return _Build(source, build_dir, config, ladder, title).run()


@dataclass(slots=True)
class _KeySet:
    video: TrackKey
    audio: TrackKey | None

    @staticmethod
    def generate(with_audio: bool) -> _KeySet:
        def new() -> TrackKey:
            return TrackKey(kid=secrets.token_bytes(16), key=secrets.token_bytes(16))

        return _KeySet(video=new(), audio=new() if with_audio else None)

    def pssh(self) -> bytes:
        kids = [self.video.kid] + ([self.audio.kid] if self.audio else [])
        return build_pssh(W3C_COMMON_SYSTEM_ID, kids)

    def write(self, path: Path, title: str, video_ids: Sequence[str], audio_ids: Sequence[str]) -> None:
        entries = [{"kid": self.video.kid.hex(), "key": self.video.key.hex(), "tracks": ["video", *video_ids]}]
        if self.audio is not None:
            entries.append({"kid": self.audio.kid.hex(), "key": self.audio.key.hex(), "tracks": ["audio", *audio_ids]})
        # Created 0600 from the start: a chmod after writing would leave a window with wider access.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"title": title, "keys": entries}, handle, indent=1)
            handle.write("\n")


@dataclass(slots=True)
class _QualitySampler:
    """Keeps the source luma (at the comparison size) of the frames chosen for PSNR, on disk."""

    directory: Path
    gop_frames: int
    samples_per_segment: int
    size: tuple[int, int]
    reformatter: VideoReformatter = field(default_factory=VideoReformatter)
    offsets: tuple[int, ...] = ()
    saved: set[int] = field(default_factory=set)
    last_start: tuple[int, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.offsets = quality.sample_offsets(self.gop_frames, self.samples_per_segment)
        self.directory.mkdir(parents=True, exist_ok=True)

    def scaled_luma(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = self.size
        scaled = self.reformatter.reformat(frame, width, height, "yuv420p", interpolation=Interpolation.BICUBIC)
        return luma(scaled)

    def offer(self, frame: av.VideoFrame, index: int) -> None:
        offset = index % self.gop_frames
        if offset in self.offsets:
            np.save(self.directory / f"{index}.npy", self.scaled_luma(frame))
            self.saved.add(index)
        elif offset == 0:
            # A short last segment may end before its first sample offset; keep its first frame.
            self.last_start = (index, self.scaled_luma(frame))

    def plan(self, total_frames: int) -> dict[int, list[int]]:
        """Segment number (0-based) -> source frame indices compared in it."""
        plan: dict[int, list[int]] = {}
        for index in sorted(self.saved):
            plan.setdefault(index // self.gop_frames, []).append(index)
        last = (total_frames - 1) // self.gop_frames
        if last not in plan and self.last_start is not None and self.last_start[0] // self.gop_frames == last:
            np.save(self.directory / f"{self.last_start[0]}.npy", self.last_start[1])
            plan[last] = [self.last_start[0]]
        return plan

    def load(self, index: int) -> np.ndarray:
        return np.load(self.directory / f"{index}.npy")


class _Build:
    """One packaging run into a fresh build directory."""

    def __init__(
        self, source: MediaSource, build: Path, config: PackageConfig, ladder: tuple[Rung, ...], title: str
    ) -> None:
        self.source, self.build, self.config, self.ladder, self.title = source, build, config, ladder, title
        info: SourceInfo = source.info
        self.frame_rate = info.frame_rate
        self.gop_frames = max(1, round(config.segment_s * info.frame_rate))
        self.segment_duration = Fraction(self.gop_frames) / info.frame_rate  # seconds, exact
        self.work = build / ".work"
        self.work.mkdir()
        self.keys = _KeySet.generate(info.has_audio) if config.encrypt else None
        self.pssh = self.keys.pssh() if self.keys else b""
        self.sizes = [(even_size(r.height * info.width / info.height), r.height) for r in ladder]
        self.comparison = quality.comparison_size(info.width, info.height)

    def run(self) -> TitleSegments:
        encoders = [
            VideoRenditionEncoder(
                VideoEncodeSettings(
                    width=w, height=h, frame_rate=self.frame_rate, bitrate_bps=rung.bitrate_bps,
                    gop_frames=self.gop_frames, preset=self.config.preset, threads=self.config.encoder_threads,
                ),
                self.work / f"{rung.id}.mp4",
                self.keys.video if self.keys else None,
            )
            for rung, (w, h) in zip(self.ladder, self.sizes)
        ]
        audio = self._audio_packager() if self.source.info.has_audio else None
        sampler = _QualitySampler(
            self.work / "quality", self.gop_frames, self.config.quality_samples_per_segment, self.comparison
        )
        for encoder in encoders:
            encoder.start()
        try:
            total_frames = self._encode(encoders, audio, sampler)
            for encoder in encoders:
                encoder.finish()
        except BaseException:
            for encoder in encoders:
                encoder.abort()
            raise
        segment_count = math.ceil(total_frames / self.gop_frames)
        video_tracks = [
            encoder.write_segments(self.build / "video" / rung.id, self.pssh)
            for encoder, rung in zip(encoders, self.ladder)
        ]
        audio_track = None
        if audio is not None:
            total_samples = round(total_frames / self.frame_rate * self.config.audio_sample_rate_hz)
            audio_track = audio.finish(segment_count, total_samples)
            video_tracks, audio_track = align_tracks(video_tracks, audio_track, audio.priming_samples)
        for track in video_tracks + ([audio_track] if audio_track else []):
            if len(track.fragments) != segment_count:
                raise RuntimeError(
                    f"{track.directory.name}: {len(track.fragments)} segments, expected {segment_count}"
                )
        scores = self._measure_quality(video_tracks, sampler, total_frames, segment_count)
        segments = self._describe(video_tracks, audio_track, scores, segment_count)
        self._write_manifest(segments, video_tracks, audio_track, audio)
        (self.build / SEGMENTS_NAME).write_text(segments.to_json(), encoding="utf-8")
        write_hls(self.build, segments, video_kid=self.keys.video.kid if self.keys else None,
                  audio_kid=self.keys.audio.kid if self.keys and self.keys.audio else None)
        if self.keys is not None:
            self.keys.write(
                self.build / KEYS_NAME, self.title, [r.id for r in self.ladder], [a.id for a in segments.audio]
            )
        shutil.rmtree(self.work)
        return segments

    def _audio_packager(self) -> AudioTrackPackager:
        rate = self.config.audio_sample_rate_hz
        gop, fps = self.gop_frames, self.frame_rate
        return AudioTrackPackager(
            directory=self.build / "audio" / self.audio_id,
            sample_rate_hz=rate,
            channels=self.config.audio_channels,
            bitrate_bps=self.config.audio_bitrate_bps,
            boundary_samples=lambda k: round(Fraction(k * gop * rate) / fps),
            key=self.keys.audio if self.keys else None,
            pssh=self.pssh,
        )

    @property
    def audio_id(self) -> str:
        return f"a{round(self.config.audio_bitrate_bps / 1000)}k"

    def _encode(
        self, encoders: list[VideoRenditionEncoder], audio: AudioTrackPackager | None, sampler: _QualitySampler
    ) -> int:
        """Feeds every source frame to every encoder; returns the number of video frames."""
        info = self.source.info
        expected = round(info.duration_s * info.frame_rate) if info.duration_s else None
        frames = 0
        with tqdm(
            total=expected, unit="frame", desc=f"encode {self.title}", disable=not self.config.progress,
            dynamic_ncols=True,
        ) as bar:
            for chunk in self.source.media():
                if isinstance(chunk, AudioChunk):
                    if audio is not None:
                        audio.push(chunk.frame, chunk.time_s)
                    continue
                tags = ColorTags.of(chunk.frame)  # before any encoder thread reformats a copy
                for encoder in encoders:
                    encoder.put(chunk.frame, chunk.index, tags)
                sampler.offer(chunk.frame, chunk.index)
                frames = chunk.index + 1
                if audio is not None:
                    # Segments before the one holding the newest frame are surely not the last.
                    audio.video_segments_done(chunk.index // self.gop_frames)
                bar.update(1)
        if frames == 0:
            raise ValueError(f"{info.name}: no video frames decoded")
        return frames

    def _measure_quality(
        self, tracks: list[PackagedTrack], sampler: _QualitySampler, total_frames: int, segment_count: int
    ) -> list[tuple[float, ...]]:
        """Decodes every rendition from its segments (checking frame count and keyframes) and
        returns per-segment PSNR against the source samples."""
        plan = sampler.plan(total_frames)
        wanted = {index for indices in plan.values() for index in indices}
        decryption = self.keys.video.key.hex() if self.keys else None
        width, height = self.comparison

        def measure(track: PackagedTrack) -> tuple[float, ...]:
            reformatter = VideoReformatter()
            errors: dict[int, float] = {}
            count = 0
            with concat_reader(track.directory, segment_count) as stream:
                options = {"decryption_key": decryption} if decryption else {}
                with av.open(stream, "r", format="mp4", options=options) as container:
                    video = container.streams.video[0]
                    video.thread_type = "AUTO"
                    for frame in container.decode(video):
                        if count % self.gop_frames == 0 and not frame.key_frame:
                            raise RuntimeError(f"{track.directory.name}: frame {count} starts a segment but is no keyframe")
                        if count in wanted:
                            scaled = reformatter.reformat(
                                frame, width, height, "yuv420p", interpolation=Interpolation.BICUBIC
                            )
                            errors[count] = quality.mse(sampler.load(count), luma(scaled))
                        count += 1
                        bar.update(1)
            if count != total_frames:
                raise RuntimeError(f"{track.directory.name}: decoded {count} frames, expected {total_frames}")
            return tuple(
                round(quality.psnr_db([errors[i] for i in plan[segment]]), 3) for segment in range(segment_count)
            )

        with tqdm(
            total=total_frames * len(tracks), unit="frame", desc=f"verify {self.title}",
            disable=not self.config.progress, dynamic_ncols=True,
        ) as bar, ThreadPoolExecutor(max_workers=min(2, len(tracks))) as pool:
            return list(pool.map(measure, tracks))

    def _describe(
        self,
        video_tracks: list[PackagedTrack],
        audio_track: PackagedTrack | None,
        scores: list[tuple[float, ...]],
        segment_count: int,
    ) -> TitleSegments:
        video = []
        for rung, (w, h), track, score in zip(self.ladder, self.sizes, video_tracks, scores):
            durations = _durations_s(track)
            video.append(
                VideoRenditionInfo(
                    id=rung.id, bitrate_bps=rung.bitrate_bps,
                    measured_bitrate_bps=round(sum(track.segment_sizes_bytes) * 8 / sum(durations)),
                    width=w, height=h, frame_rate=round(float(self.frame_rate), 6), codecs=track.init.codecs,
                    segment_sizes_bytes=track.segment_sizes_bytes, segment_durations_s=durations,
                    quality_metric=QUALITY_METRIC, segment_quality=score,
                )
            )
        audio = []
        if audio_track is not None:
            durations = _durations_s(audio_track)
            audio.append(
                AudioRenditionInfo(
                    id=self.audio_id, bitrate_bps=self.config.audio_bitrate_bps, codecs=audio_track.init.codecs,
                    sample_rate_hz=audio_track.init.sample_rate_hz or self.config.audio_sample_rate_hz,
                    channels=audio_track.init.channels or self.config.audio_channels,
                    segment_sizes_bytes=audio_track.segment_sizes_bytes, segment_durations_s=durations,
                    measured_bitrate_bps=round(sum(audio_track.segment_sizes_bytes) * 8 / sum(durations)),
                )
            )
        return TitleSegments(
            title=self.title, segment_duration_s=round(float(self.segment_duration), 6),
            segment_count=segment_count, encrypted=self.keys is not None, video=tuple(video), audio=tuple(audio),
        )

    def _write_manifest(
        self,
        segments: TitleSegments,
        video_tracks: list[PackagedTrack],
        audio_track: PackagedTrack | None,
        audio: AudioTrackPackager | None,
    ) -> None:
        min_buffer_s = float(self.segment_duration)
        first = video_tracks[0]
        for track in video_tracks[1:]:
            if [f.earliest_presentation_time for f in track.fragments] != [
                f.earliest_presentation_time for f in first.fragments
            ]:
                raise RuntimeError(f"{track.directory.name}: segment boundaries differ from {first.directory.name}")
        video_starts = tuple(f.earliest_presentation_time for f in first.fragments)
        video_durations = tuple(b - a for a, b in zip(video_starts, video_starts[1:])) + (first.fragments[-1].duration,)
        sets = [
            MpdAdaptationSet(
                content_type="video", mime_type="video/mp4", timescale=first.init.timescale,
                presentation_time_offset=video_starts[0], segment_starts=video_starts,
                segment_durations=video_durations,
                initialization="video/$RepresentationID$/init.mp4", media="video/$RepresentationID$/$Number$.m4s",
                representations=tuple(
                    MpdRepresentation(
                        id=info.id, bandwidth_bps=_dash_bandwidth_bps(info.segment_sizes_bytes, info.segment_durations_s, min_buffer_s),
                        codecs=info.codecs, width=info.width, height=info.height, frame_rate=self.frame_rate,
                    )
                    for info in segments.video
                ),
                protection=self._protection(self.keys.video) if self.keys else None,
            )
        ]
        if audio_track is not None and audio is not None:
            info = segments.audio[0]
            sets.append(
                MpdAdaptationSet(
                    content_type="audio", mime_type="audio/mp4", timescale=audio_track.init.timescale,
                    presentation_time_offset=_audio_start_ticks(audio_track, audio.priming_samples),
                    segment_starts=tuple(f.base_media_decode_time for f in audio_track.fragments),
                    segment_durations=tuple(f.duration for f in audio_track.fragments),
                    initialization="audio/$RepresentationID$/init.mp4", media="audio/$RepresentationID$/$Number$.m4s",
                    representations=(
                        MpdRepresentation(
                            id=info.id, bandwidth_bps=_dash_bandwidth_bps(info.segment_sizes_bytes, info.segment_durations_s, min_buffer_s),
                            codecs=info.codecs, sample_rate_hz=info.sample_rate_hz, channels=info.channels,
                        ),
                    ),
                    protection=self._protection(self.keys.audio) if self.keys and self.keys.audio else None,
                )
            )
        mpd = build_mpd(
            title=self.title, duration_s=segments.duration_s, min_buffer_time_s=min_buffer_s, adaptation_sets=tuple(sets)
        )
        (self.build / MANIFEST_NAME).write_bytes(mpd)

    def _protection(self, key: TrackKey) -> MpdProtection:
        return MpdProtection(
            default_kid=uuid.UUID(bytes=key.kid),
            license_url=LAURL_PLACEHOLDER,
        )


def _audio_start_ticks(track: PackagedTrack, priming_samples: int) -> int:
    """Media time (track timescale) of the audio's first presented sample, the source's t=0: the
    first AAC frame decodes the encoder's priming samples, which are not presented."""
    rate = track.init.sample_rate_hz or track.init.timescale
    return track.fragments[0].base_media_decode_time + priming_samples * track.init.timescale // rate


def align_tracks(
    video: list[PackagedTrack], audio: PackagedTrack, priming_samples: int
) -> tuple[list[PackagedTrack], PackagedTrack]:
    """Moves the tracks that would present the source's t=0 first later on the media timeline
    (their tfdt), so that it has one media time in every track: the first video frame's presentation time (x264's B-frame
    delay, two frames) and the audio's first presented sample (after the AAC priming) agree.

    An HLS playlist cannot carry the MPD's presentationTimeOffset, and players that honour only the
    media timestamps (hls.js, Safari, ffplay, our HLS path) would otherwise present sound as much
    earlier as the video's delay exceeds the priming (62 ms at 24 fps). The MPD's offsets then name
    the same instant for both tracks (docs/PACKAGING.md, "A/V alignment").
    """
    first = video[0]
    video_start = Fraction(first.fragments[0].earliest_presentation_time, first.init.timescale)
    audio_start = Fraction(_audio_start_ticks(audio, priming_samples), audio.init.timescale)
    if video_start >= audio_start:
        return video, audio.shifted(round((video_start - audio_start) * audio.init.timescale))
    return [t.shifted(round((audio_start - video_start) * t.init.timescale)) for t in video], audio


def even_size(value: float) -> int:
    """The nearest even pixel count, at least 2 (4:2:0 chroma needs even sizes)."""
    return max(2, round(value / 2) * 2)


def _durations_s(track: PackagedTrack) -> tuple[float, ...]:
    return tuple(round(f.duration / track.init.timescale, 6) for f in track.fragments)


def _dash_bandwidth_bps(sizes: Sequence[int], durations_s: Sequence[float], min_buffer_s: float) -> int:
    """The smallest rate meeting the @bandwidth definition (ISO/IEC 23009-1 section 5.3.5.2).

    Delivered at this rate from any segment start, after a head start of min_buffer_s, every
    segment has fully arrived by the time it is due: for all s <= j,
    bits(s..j) <= rate * (min_buffer_s + start(j) - start(s)).
    """
    bits = np.cumsum(np.concatenate([[0.0], np.asarray(sizes, dtype=np.float64) * 8.0]))
    starts = np.concatenate([[0.0], np.cumsum(durations_s)])[:-1]
    best = 0.0
    for s in range(len(sizes)):
        window = (bits[s + 1 :] - bits[s]) / (min_buffer_s + starts[s:] - starts[s])
        best = max(best, float(window.max()))
    return math.ceil(best)


