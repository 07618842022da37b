"""HLS names both ends use (RFC 8216 and its successor draft rfc8216bis): tags, methods, the
ClearKey key format, the playlist content type and where a packaged title keeps its playlists.

The packager writes these (server/packaging/hls.py), the origin and edge serve and cache by them,
and the player's playlist reader (player/client/hls/) looks them up.
"""

from __future__ import annotations

# RFC 8216 section 4: the media type of a playlist (a server may also send audio/mpegurl).
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
PLAYLIST_CONTENT_TYPES = frozenset({PLAYLIST_CONTENT_TYPE, "audio/mpegurl", "audio/x-mpegurl",
                                    "application/x-mpegurl"})
PLAYLIST_SUFFIX = ".m3u8"

# Tags (RFC 8216 section 4.3).
EXTM3U = "#EXTM3U"
EXTINF = "#EXTINF"
EXT_X_VERSION = "#EXT-X-VERSION"
EXT_X_TARGETDURATION = "#EXT-X-TARGETDURATION"
EXT_X_MEDIA_SEQUENCE = "#EXT-X-MEDIA-SEQUENCE"
EXT_X_PLAYLIST_TYPE = "#EXT-X-PLAYLIST-TYPE"
EXT_X_INDEPENDENT_SEGMENTS = "#EXT-X-INDEPENDENT-SEGMENTS"
EXT_X_MAP = "#EXT-X-MAP"
EXT_X_KEY = "#EXT-X-KEY"
EXT_X_SESSION_KEY = "#EXT-X-SESSION-KEY"
EXT_X_BYTERANGE = "#EXT-X-BYTERANGE"
EXT_X_DISCONTINUITY = "#EXT-X-DISCONTINUITY"
EXT_X_ENDLIST = "#EXT-X-ENDLIST"
EXT_X_MEDIA = "#EXT-X-MEDIA"
EXT_X_STREAM_INF = "#EXT-X-STREAM-INF"
EXT_X_I_FRAME_STREAM_INF = "#EXT-X-I-FRAME-STREAM-INF"

# EXT-X-KEY METHODs: whole-segment AES-128-CBC (RFC 8216 5.2), and sample encryption. For fMP4,
# SAMPLE-AES is CENC 'cbcs' and SAMPLE-AES-CTR (alias SAMPLE-AES-CENC) is CENC 'cenc' (rfc8216bis 4.4.4.4).
METHOD_NONE = "NONE"
METHOD_AES_128 = "AES-128"
METHOD_SAMPLE_AES = "SAMPLE-AES"
METHOD_SAMPLE_AES_CTR = "SAMPLE-AES-CTR"
METHOD_SAMPLE_AES_CENC = "SAMPLE-AES-CENC"
SAMPLE_METHODS = frozenset({METHOD_SAMPLE_AES, METHOD_SAMPLE_AES_CTR, METHOD_SAMPLE_AES_CENC})

# KEYFORMATs. "identity" (the default) means the URI names the key itself. hls.js maps
# "org.w3.clearkey" to the EME ClearKey key system (its KeySystemFormats.CLEARKEY) and takes the
# key id from KEYID=0x<hex> or from a data: URI holding the 16 id bytes; see docs/HLS.md.
KEYFORMAT_IDENTITY = "identity"
KEYFORMAT_CLEARKEY = "org.w3.clearkey"

# A packaged title's HLS layout: `<title>/master.m3u8` beside `manifest.mpd`, and one media
# playlist in each rendition's directory (`video|audio/<rep_id>/playlist.m3u8`), whose relative
# URIs (`init.mp4`, `<n>.m4s`) name the same CMAF files the MPD does.
MASTER_PLAYLIST_NAME = "master.m3u8"
MEDIA_PLAYLIST_NAME = "playlist.m3u8"


def is_playlist_path(path: str) -> bool:
    """Whether a path (or URL path) names an HLS playlist by its suffix."""
    return path.lower().endswith(PLAYLIST_SUFFIX)


def is_playlist_content_type(content_type: str | None) -> bool:
    """Whether a Content-Type header (parameters allowed) is one HLS playlists are served with."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() in PLAYLIST_CONTENT_TYPES
