"""Limits against hostile MPDs, and the one error the reader raises for anything it refuses."""

from __future__ import annotations

from fractions import Fraction

# A segment costs ~300 bytes in memory and each further BaseURL
# choice ~100 more, so the default budget of segment URLs keeps a parsed MPD under ~80 MB (24 h of
# 2 s segments in 5 renditions) and its parse around a second.
DEFAULT_MAX_SEGMENT_URLS = 250_000
# The element tree costs ~400 bytes an element and ~300 an attribute, so these keep it under
# ~100 MB; real MPDs are far smaller (our 60 s title's is 4 kB; 3 h as SegmentList in 10
# renditions, ~2 MB and 55,000 tags).
MAX_MPD_BYTES = 4 * 1024 * 1024
MAX_MPD_TAGS = 100_000  # counted as '<' characters
MAX_MPD_ATTRIBUTES = 200_000  # counted as '=' characters
MAX_BASE_URL_CHOICES = 16  # failover alternatives per Representation after combining the levels
MAX_DIMENSION_PX = 32_768
MAX_BANDWIDTH_BPS = 10**11
MAX_SAMPLE_RATE_HZ = 10**7
MAX_FRAME_RATE = Fraction(10_000)
MAX_DURATION_S = 1e9  # ~31 years
MAX_FORMAT_WIDTH = 32  # $Number%0<width>d$
_MAX_UINT32 = 2**32 - 1
_MAX_UINT64 = 2**64 - 1
_MAX_INT32 = 2**31 - 1


class MpdError(ValueError):
    """The MPD is malformed, hostile or uses a feature this reader does not support.

    The message names the element, attribute and value at fault.
    """
