"""Reading an HLS presentation over HTTP: the master playlist (already fetched by the bootstrap), its
media playlists, the AES-128 keys, and what else the model needs before playback starts.

Bounded against hostile servers: at most MAX_MEDIA_PLAYLISTS playlists and MAX_KEY_URIS keys, each
checked as it arrives; every failure is an `HlsError` naming the playlist or key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from player.client.fetch import Fetcher, FetchError, FetchResult
from player.client.hls.lexer import show
from player.client.hls.limits import MAX_KEY_URIS, MAX_MEDIA_PLAYLISTS, HlsError, NoSegmentsYet
from player.client.hls.manifest import Track, audio_renditions, build_manifest, rendition_ids, video_variants
from player.client.hls.playlist import MasterPlaylist, MediaPlaylist, parse_playlist
from player.client.mpd.model import Manifest
from server.formats import hls as tags
from server.formats.boxes import Mp4FormatError, find_box
from server.formats.urls import redact_url

_T = TypeVar("_T")
_CONCURRENCY = 8
# A live channel in its first segment lists none complete yet (LL-HLS: that segment's parts only).
# The loader reloads until one is listed, for at most this many reloads (a blocking reload holds
# until the segment is complete; otherwise one part target, else one target duration, apart).
FIRST_SEGMENT_RELOADS = 8


def looks_like_hls(url: str, content_type: str | None, body: bytes) -> bool:
    """Whether a fetched manifest is an HLS playlist: its content type, its URL's suffix, or its first line."""
    if tags.is_playlist_content_type(content_type):
        return True
    if tags.is_playlist_path(url.split("?", 1)[0]):
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:7] == tags.EXTM3U.encode()


async def load_hls(fetcher: Fetcher, body: bytes, url: str) -> Manifest:
    """The manifest of the playlist `body` fetched from `url` (a master or a lone media playlist),
    with every media playlist and AES-128 key fetched (the caller times it all as manifest time)."""
    first = await _parsed(fetcher, body, url)
    if isinstance(first, MediaPlaylist):
        bandwidth = _measured_bps(first) or await _probe_bps(fetcher, first)
        tracks = [Track(id=rendition_ids([url], "v")[0], kind="video", bandwidth_bps=bandwidth, playlist=first)]
    else:
        tracks = await _tracks(fetcher, first)
    aes_keys = await _aes_keys(fetcher, tracks)
    init_kids = await _init_kids(fetcher, tracks)
    return build_manifest(url, tracks, aes_keys=aes_keys, init_kids=init_kids)


async def _tracks(fetcher: Fetcher, master: MasterPlaylist) -> list[Track]:
    variants = video_variants(master)
    audio = audio_renditions(master, variants)
    uris = [v.uri for v in variants] + [r.uri for r in audio if r.uri is not None]
    if len(uris) > MAX_MEDIA_PLAYLISTS:
        raise HlsError(f"HLS playlist {_name(master.url)}: names {len(uris)} media playlists, more than the "
                       f"{MAX_MEDIA_PLAYLISTS} allowed")
    playlists = await _bounded([lambda u=u: _media_playlist(fetcher, u) for u in uris])
    ids = rendition_ids(uris, "r")  # unique across video and audio
    video_ids, audio_ids = ids[:len(variants)], ids[len(variants):]
    tracks = [Track(id=rid, kind="video", bandwidth_bps=v.bandwidth_bps, playlist=p, variant=v)
              for rid, v, p in zip(video_ids, variants, playlists)]
    for rid, rendition, playlist in zip(audio_ids, audio, playlists[len(variants):]):
        tracks.append(Track(id=rid, kind="audio", bandwidth_bps=_measured_bps(playlist) or 1, playlist=playlist,
                            rendition=rendition))
    return tracks


async def _media_playlist(fetcher: Fetcher, url: str) -> MediaPlaylist:
    result = await _fetch(fetcher, url, "media playlist", {"CMCD-Object": "ot=m"})
    playlist = await _parsed(fetcher, result.body, result.url)
    if not isinstance(playlist, MediaPlaylist):
        raise HlsError(f"HLS playlist {_name(url)}: a master playlist names another master playlist")
    return playlist


async def _parsed(fetcher: Fetcher, body: bytes, url: str) -> MasterPlaylist | MediaPlaylist:
    """The playlist `body` fetched from `url`; a live one that lists no complete segment yet is
    reloaded (at most FIRST_SEGMENT_RELOADS times) until it does. The reloads' answers are parsed
    against `url`: a blocking reload's query is not part of where the playlist is."""
    for reload in range(FIRST_SEGMENT_RELOADS + 1):
        try:
            return parse_playlist(body, url)
        except NoSegmentsYet as empty:
            if reload == FIRST_SEGMENT_RELOADS:
                raise HlsError(f"{empty} after {FIRST_SEGMENT_RELOADS} reloads") from None
            body = (await _first_segment(fetcher, url, empty)).body
    raise AssertionError("unreachable: the loop returns or raises")


async def _first_segment(fetcher: Fetcher, url: str, empty: NoSegmentsYet) -> FetchResult:
    """The playlist reloaded once its first segment may be listed: a blocking reload for that segment
    where the server offers one (RFC 8216bis 6.2.5.2), else a plain reload after one part (or target)."""
    if empty.can_block_reload:
        separator = "&" if "?" in url else "?"
        return await _fetch(fetcher, f"{url}{separator}_HLS_msn={empty.media_sequence}", "media playlist",
                            {"CMCD-Object": "ot=m"})
    if empty.wait_s is None:
        raise HlsError(f"{empty}, and names no target duration to wait for one") from None
    await asyncio.sleep(empty.wait_s)
    return await _fetch(fetcher, url, "media playlist", {"CMCD-Object": "ot=m"})


def _measured_bps(playlist: MediaPlaylist) -> int | None:
    """The peak segment bitrate, when every segment is a byte range (EXT-X-BYTERANGE) of known size."""
    if any(s.byte_range is None for s in playlist.segments):
        return None
    rates = [(s.byte_range[1] - s.byte_range[0] + 1) * 8 / s.duration_s
             for s in playlist.segments if s.byte_range is not None]
    return max(1, round(max(rates)))


async def _probe_bps(fetcher: Fetcher, playlist: MediaPlaylist) -> int:
    """A lone media playlist names no BANDWIDTH: the first segment's size over its duration. The size
    is asked with a one-byte Range (206 with Content-Range); a server that ignores Range sends it all."""
    segment = playlist.segments[0]
    size = 0
    try:
        result = await fetcher.fetch([segment.uri], headers={"Range": "bytes=0-0", "CMCD-Object": "ot=v"})
        total = result.headers.get("Content-Range", "").rpartition("/")[2]
        size = int(total) if result.status == 206 and total.isdigit() else len(result.body)
    except FetchError:
        pass
    # Without a size the ladder still needs a positive rate: one rung, so the ABR has no choice to make.
    return max(1, round(size * 8 / segment.duration_s))


async def _aes_keys(fetcher: Fetcher, tracks: Sequence[Track]) -> dict[str, bytes]:
    uris: dict[str, None] = {}
    for track in tracks:
        for segment in track.playlist.segments:
            for key in (*segment.keys, *(segment.init.keys if segment.init else ())):
                if key.method == tags.METHOD_AES_128 and key.uri is not None:
                    uris[key.uri] = None
    if len(uris) > MAX_KEY_URIS:
        raise HlsError(f"HLS: the playlists name {len(uris)} AES-128 keys, more than the {MAX_KEY_URIS} allowed")
    keys = await _bounded([lambda u=u: _key_bytes(fetcher, u) for u in uris])
    return dict(zip(uris, keys))


async def _key_bytes(fetcher: Fetcher, uri: str) -> bytes:
    if uri.startswith("data:"):
        header, _, payload = uri[5:].partition(",")
        try:
            data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
        except (binascii.Error, ValueError):
            raise HlsError(f"HLS: the AES-128 key URI {show(uri)} is not valid base64") from None
    else:
        data = (await _fetch(fetcher, uri, "AES-128 key", {"CMCD-Object": "ot=k"})).body
    if len(data) != 16:
        raise HlsError(f"HLS: the AES-128 key at {redact_url(uri) if not uri.startswith('data:') else 'data:'} is "
                       f"{len(data)} bytes, not 16")
    return data


async def _init_kids(fetcher: Fetcher, tracks: Sequence[Track]) -> dict[str, str]:
    """Default KIDs read from the init sections of SAMPLE-AES tracks whose keys name no KEYID."""
    wanted: dict[str, tuple[int, int] | None] = {}
    for track in tracks:
        for segment in track.playlist.segments:
            sample = [k for k in segment.keys if k.method in tags.SAMPLE_METHODS]
            if sample and not any(k.keyid for k in sample) and segment.init is not None:
                wanted.setdefault(segment.init.uri, segment.init.byte_range)
    if len(wanted) > MAX_MEDIA_PLAYLISTS:
        raise HlsError(f"HLS: {len(wanted)} encrypted init sections, more than the {MAX_MEDIA_PLAYLISTS} allowed")

    async def read(uri: str, byte_range: tuple[int, int] | None) -> str | None:
        headers = {"CMCD-Object": "ot=i"}
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        return default_kid((await _fetch(fetcher, uri, "init section", headers)).body)

    kids = await _bounded([lambda u=u, r=r: read(u, r) for u, r in wanted.items()])
    return {uri: kid for uri, kid in zip(wanted, kids) if kid is not None}


def default_kid(init: bytes) -> str | None:
    """The default KID (32 hex) of the first encrypted sample entry's `tenc` (ISO/IEC 23001-7 8.2)."""
    for entry in ("encv", "enca"):
        try:
            tenc = find_box(init, f"moov/trak/mdia/minf/stbl/stsd/{entry}/sinf/schi/tenc")
        except Mp4FormatError:
            return None
        if tenc is not None and tenc.size - tenc.header_size >= 24:
            # version/flags (4), reserved/pattern (2), isProtected (1), Per_Sample_IV_Size (1), KID (16)
            return bytes(init[tenc.payload_offset + 8:tenc.payload_offset + 24]).hex()
    return None


async def _fetch(fetcher: Fetcher, url: str, what: str, headers: Mapping[str, str]) -> FetchResult:
    try:
        return await fetcher.fetch([url], headers=headers)
    except FetchError as exc:
        raise HlsError(f"HLS: the {what} {redact_url(url)} could not be fetched ({exc})") from None


async def _bounded(calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Runs the calls with at most _CONCURRENCY at once; results in order."""
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(call: Callable[[], Awaitable[_T]]) -> _T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def _name(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[-1] or url
