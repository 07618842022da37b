"""DASH MPD reader (ISO/IEC 23009-1): hostile input in, frozen dataclasses out.

`parse_mpd(text, url)` lists every media segment of every Representation with absolute URLs (one
per BaseURL failover choice) and times in seconds; anything malformed or hostile raises `MpdError`.
Pure parsing, no network I/O. What is supported and what is not: docs/MPD.md.

Import from here; the modules are the reader's parts: `limits` (the error and the budgets against
hostile input), `safexml` (UTF-8 and defusedxml), `values` (attribute values), `model` (the
dataclasses and `sidx`), `addressing` (SegmentTemplate/List/Base) and `reader` (the walk).
"""

from player.client.mpd.limits import (
    DEFAULT_MAX_SEGMENT_URLS,
    MAX_BANDWIDTH_BPS,
    MAX_BASE_URL_CHOICES,
    MAX_DIMENSION_PX,
    MAX_DURATION_S,
    MAX_FORMAT_WIDTH,
    MAX_FRAME_RATE,
    MAX_MPD_ATTRIBUTES,
    MAX_MPD_BYTES,
    MAX_MPD_TAGS,
    MAX_SAMPLE_RATE_HZ,
    MpdError,
)
from player.client.mpd.model import (
    AdaptationSet,
    ContentProtection,
    ContentType,
    LiveTemplate,
    Manifest,
    Period,
    Representation,
    SegmentCipher,
    SegmentRef,
    parse_sidx,
)
from player.client.mpd.reader import parse_mpd

__all__ = [
    "DEFAULT_MAX_SEGMENT_URLS", "MAX_BANDWIDTH_BPS", "MAX_BASE_URL_CHOICES", "MAX_DIMENSION_PX", "MAX_DURATION_S",
    "MAX_FORMAT_WIDTH", "MAX_FRAME_RATE", "MAX_MPD_ATTRIBUTES", "MAX_MPD_BYTES", "MAX_MPD_TAGS",
    "MAX_SAMPLE_RATE_HZ", "AdaptationSet", "LiveTemplate", "ContentProtection", "ContentType", "Manifest", "MpdError", "Period",
    "Representation", "SegmentCipher", "SegmentRef", "parse_mpd", "parse_sidx",
]
