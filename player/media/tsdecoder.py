"""MPEG-TS segments (HLS without EXT-X-MAP): the video decoder of a TS rendition.

A TS segment carries its own program tables and in-band parameter sets, so there is no init
segment: the codec context comes from the first segment's video stream and then lives as long as
the rendition, as `SegmentDecoder`'s does. Everything else (the demux loop, counts, the checks) is
`SegmentDecoder`'s; a segment is opened on its own with FFmpeg's mpegts demuxer.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import av

from player.media.decoder import DecoderConfig, DemuxError, SegmentDecoder, TrackInfo

# Enough to read the PAT/PMT of a segment and the first PES headers; the codec parameters come from
# in-band SPS/PPS when the first packets are decoded.
_TS_PROBE_OPTIONS = {"probesize": "65536", "analyzeduration": "0"}


class TsSegmentDecoder(SegmentDecoder):
    """The video decoder of one MPEG-TS rendition (segments with the program tables in each)."""

    def __init__(self, *, name: str = "video", config: DecoderConfig = DecoderConfig()) -> None:
        # No init segment: SegmentDecoder's constructor (which parses one) is not called; the codec
        # context is made by the first `_open`.
        self.name = name
        self.config = config
        self._init = b""
        self._key_hex = None
        self._codec: Any = None
        self._stream_index = 0
        self._stream_count = 1
        self._track_id = None
        self._time_base = Fraction(1, 90_000)
        self._slice_check = None  # Annex B with in-band parameter sets: no avcC to check slices against
        self.info = TrackInfo(codec="", kind="video", encrypted=False, time_base=self._time_base)

    def reset(self) -> None:
        if self._codec is not None:
            self._codec.flush_buffers()

    def _open(self, segment: bytes) -> av.container.InputContainer:
        container = av.open(io.BytesIO(segment), "r", format="mpegts", options=dict(_TS_PROBE_OPTIONS))
        try:
            video = [s for s in container.streams if s.type == "video"]
            if not video or video[0].codec_context is None:
                raise DemuxError(f"{self.name}: the MPEG-TS segment has no video stream", rendition=self.name,
                                 segment_number=None)
            stream = video[0]
            self._stream_index = stream.index
            self._stream_count = len(container.streams)
            if self._codec is None:
                self._time_base = Fraction(stream.time_base) if stream.time_base else self._time_base
                self._codec = stream.codec_context
                self._codec.thread_type = self.config.thread_type
                self._codec.thread_count = self.config.thread_count
                self.info = TrackInfo(codec=self._codec.name, kind="video", encrypted=False,
                                      time_base=self._time_base, width=self._codec.width, height=self._codec.height)
        except BaseException:
            container.close()
            raise
        return container
