"""HLS live media playlists of a live channel (RFC 8216 section 6.2.2: a sliding window, no
EXT-X-ENDLIST, EXT-X-MEDIA-SEQUENCE the number of the first segment listed, EXT-X-PROGRAM-DATE-TIME
on every segment). The master playlist is the source title's, unchanged: its media playlist URIs
are the same in the channel. Only complete segments are listed (no LL-HLS parts).
"""

from __future__ import annotations

import math

from server.formats import hls as tags
from server.live.channel import LiveChannel
from server.live.mpd import iso_datetime
from server.packaging.hls import clearkey_key_tag

_VERSION = 6  # EXT-X-MAP without EXT-X-I-FRAMES-ONLY (RFC 8216 section 7)


def live_media_playlist(channel: LiveChannel, media: str, rep_id: str, now_s: float) -> str:
    """The media playlist of one rendition at `now_s`: the complete segments still in the window."""
    last = channel.newest_complete(now_s)
    first = max(channel.oldest_available(now_s), 1)
    segment_s = float(channel.segment_s)
    lines = [tags.EXTM3U, f"{tags.EXT_X_VERSION}:{_VERSION}",
             f"{tags.EXT_X_TARGETDURATION}:{max(1, math.floor(segment_s + 0.5))}",
             f"{tags.EXT_X_MEDIA_SEQUENCE}:{first if last >= first else last + 1}",
             tags.EXT_X_INDEPENDENT_SEGMENTS, f'{tags.EXT_X_MAP}:URI="init.mp4"']
    kid = channel.kid(media)
    if kid is not None:
        lines.append(clearkey_key_tag(kid))
    for number in range(first, last + 1):
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{iso_datetime(channel.segment_start_s(number))}",
                  f"{tags.EXTINF}:{segment_s:.6f},", f"{number}.m4s"]
    return "\n".join(lines) + "\n"
