"""Limits against hostile HLS playlists, and the one error the reader raises for anything it refuses."""

from __future__ import annotations

from player.client.mpd.limits import DEFAULT_MAX_SEGMENT_URLS, MAX_BANDWIDTH_BPS, MAX_DIMENSION_PX, MAX_FRAME_RATE

# Real playlists are far smaller: a 3 h VOD media playlist of 2 s segments with signed 300-character
# URLs is ~1.7 MB and 11,000 lines; a master with 20 variants, a few kB.
MAX_PLAYLIST_BYTES = 4 * 1024 * 1024
MAX_PLAYLIST_LINES = 200_000
MAX_LINE_CHARS = 64 * 1024  # a data: URI with a multi-DRM pssh is a few kB
MAX_ATTRIBUTES = 64  # per attribute list
MAX_VARIANTS = 128  # EXT-X-STREAM-INF entries of a master
MAX_RENDITIONS = 128  # EXT-X-MEDIA entries of a master
MAX_MEDIA_PLAYLISTS = 64  # media playlists one presentation may make us fetch
MAX_KEY_URIS = 256  # distinct AES-128 key URIs (key rotation) fetched before playback
MAX_DURATION_S = 1e7  # one segment (~116 days), and a whole presentation below
MAX_PRESENTATION_S = 1e9
MAX_SEQUENCE = 2**63 - 1
MAX_BYTE_OFFSET = 2**63 - 1

__all__ = [
    "DEFAULT_MAX_SEGMENT_URLS", "MAX_ATTRIBUTES", "MAX_BANDWIDTH_BPS", "MAX_BYTE_OFFSET", "MAX_DIMENSION_PX",
    "MAX_DURATION_S", "MAX_FRAME_RATE", "MAX_KEY_URIS", "MAX_LINE_CHARS", "MAX_MEDIA_PLAYLISTS",
    "MAX_PLAYLIST_BYTES", "MAX_PLAYLIST_LINES", "MAX_PRESENTATION_S", "MAX_RENDITIONS", "MAX_SEQUENCE",
    "MAX_VARIANTS", "HlsError", "NoSegmentsYet",
]


class HlsError(ValueError):
    """The playlist is malformed, hostile or uses a feature this reader does not support.

    The message names the playlist, the line and the tag at fault.
    """


class NoSegmentsYet(HlsError):
    """A live media playlist that lists no complete segment yet (a channel in its first segment:
    LL-HLS lists that segment's parts only). The loader waits for the first one; the fields say how."""

    def __init__(self, message: str, *, media_sequence: int, can_block_reload: bool,
                 wait_s: float | None) -> None:
        super().__init__(message)
        self.media_sequence = media_sequence  # the number the first segment will have
        self.can_block_reload = can_block_reload  # the server holds a reload with _HLS_msn until it is listed
        self.wait_s = wait_s  # the part target (else the target duration): how long to wait between reloads
