"""MPEG-TS segments (HLS without EXT-X-MAP): the video and audio decoders of a TS rendition.

A TS segment carries its own program tables and in-band parameter sets (ADTS headers for AAC), so
there is no init segment: the codec context comes from the first segment's stream of the kind and
then lives as long as the rendition, as `SegmentDecoder`'s and `AudioDecoder`'s do. Everything else
(the demux loop, counts, checks, resampling) is theirs; a segment is opened alone with FFmpeg's
mpegts demuxer.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import av

from player.media.decoder import AudioDecoder, AudioOutputFormat, DecoderConfig, DemuxError, SegmentDecoder, TrackInfo

# Enough to read a segment's PAT/PMT and first PES headers; codec parameters come in-band.
_TS_PROBE_OPTIONS = {"probesize": "65536", "analyzeduration": "0"}


class _TsTrack:
    """What both TS decoders replace in the fMP4 decoders: construction without an init segment,
    and opening a segment as MPEG-TS (the codec context is made from the first one)."""

    kind: str
    name: str
    config: DecoderConfig
    _codec: Any
    info: TrackInfo

    def _setup(self, name: str, config: DecoderConfig) -> None:
        self.name = name
        self.config = config
        self._init = b""
        self._key_hex = None
        self._codec = None
        self._stream_index = 0
        self._stream_count = 1
        self._track_id = None
        self._time_base = Fraction(1, 90_000)
        self._slice_check = None  # Annex B with in-band parameter sets: no avcC to check slices against
        self.info = TrackInfo(codec="", kind=self.kind, encrypted=False, time_base=self._time_base)  # type: ignore[arg-type]

    def reset(self) -> None:
        if self._codec is not None:
            self._codec.flush_buffers()

    def _open(self, segment: bytes) -> av.container.InputContainer:
        container = av.open(io.BytesIO(segment), "r", format="mpegts", options=dict(_TS_PROBE_OPTIONS))
        try:
            streams = [s for s in container.streams if s.type == self.kind]
            if not streams or streams[0].codec_context is None:
                raise DemuxError(f"{self.name}: the MPEG-TS segment has no {self.kind} stream", rendition=self.name,
                                 segment_number=None)
            stream = streams[0]
            self._stream_index = stream.index
            self._stream_count = len(container.streams)
            if self._codec is None:
                self._time_base = Fraction(stream.time_base) if stream.time_base else self._time_base
                self._codec = stream.codec_context
                self._codec.thread_type = self.config.thread_type
                self._codec.thread_count = self.config.thread_count
                self.info = self._track_info(False)  # type: ignore[attr-defined]
        except BaseException:
            container.close()
            raise
        return container


class TsSegmentDecoder(_TsTrack, SegmentDecoder):
    """The video decoder of one MPEG-TS rendition."""

    def __init__(self, *, name: str = "video", config: DecoderConfig = DecoderConfig()) -> None:
        self._setup(name, config)  # no init segment to build SegmentDecoder's state from


class TsAudioDecoder(_TsTrack, AudioDecoder):
    """The audio decoder (and resampler) of one MPEG-TS rendition."""

    def __init__(self, *, name: str = "audio", config: DecoderConfig = DecoderConfig(),
                 output: AudioOutputFormat = AudioOutputFormat()) -> None:
        self._setup(name, config)
        self.output = output
        self._resampler = self._new_resampler()

    def reset(self) -> None:
        super().reset()
        self._resampler = self._new_resampler()
