"""HLS reader (RFC 8216): hostile playlists in, the same manifest model the DASH reader makes out.

`load_hls(fetcher, body, url)` reads a master (or lone media) playlist, its media playlists and
its AES-128 keys and maps them to `player.client.mpd.model.Manifest`; `parse_playlist(text, url)`
is the pure parser under it. Anything malformed or hostile raises `HlsError` naming the playlist,
line and tag. The parts: `limits` (the error and the budgets), `lexer` (lines and attribute
lists), `playlist` (the tags), `manifest` (the mapping), `loader` (the fetches), `aes` (AES-128).
What is supported and what is not: docs/HLS.md.
"""

from player.client.hls.limits import HlsError
from player.client.hls.loader import default_kid, load_hls, looks_like_hls
from player.client.hls.manifest import Track, build_manifest
from player.client.hls.playlist import (
    InitSection,
    Key,
    MasterPlaylist,
    MediaPlaylist,
    Part,
    Rendition,
    Segment,
    Variant,
    parse_playlist,
)

__all__ = [
    "HlsError", "InitSection", "Key", "MasterPlaylist", "MediaPlaylist", "Part", "Rendition", "Segment",
    "Track", "Variant", "build_manifest", "default_kid", "load_hls", "looks_like_hls", "parse_playlist",
]
