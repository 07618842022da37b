"""HLS playlists to the manifest model the headless driver plays (player/client/mpd/model.py).

A master's variants become the Representations of one video AdaptationSet (ascending BANDWIDTH);
the audio renditions (EXT-X-MEDIA TYPE=AUDIO with a URI) of the group the variants name become one
audio AdaptationSet each, the DEFAULT=YES one first. A lone media playlist is a one-rung ladder.
Segment times follow the EXTINF durations from 0. Where an EXT-X-MAP changes (at a discontinuity)
the presentation is split into Periods, one per discontinuity sequence, since a Representation has
one initialization segment. Pure: the playlists, key bytes and estimates come in, a Manifest goes out.
"""

from __future__ import annotations

import base64
import binascii
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from player.client.hls.aes import sequence_iv
from player.client.hls.limits import HlsError
from player.client.hls.playlist import Key, MasterPlaylist, MediaPlaylist, Rendition, Segment, Variant
from player.client.mpd.model import (
    AdaptationSet,
    ContentProtection,
    Manifest,
    Period,
    Representation,
    SegmentCipher,
    SegmentRef,
)
from server.formats import hls as tags
from server.formats.dash import CLEARKEY_SCHEME, MP4_PROTECTION_SCHEME

_PACKED_AUDIO = (".aac", ".mp3", ".ac3", ".ec3", ".eac3", ".vtt", ".webvtt")
# The key tag whose KEYID/URI we read first, among several for one segment (multi-DRM playlists).
_KEYFORMAT_PREFERENCE = (tags.KEYFORMAT_CLEARKEY, CLEARKEY_SCHEME, tags.KEYFORMAT_IDENTITY)


@dataclass(frozen=True, kw_only=True, slots=True)
class Track:
    """One media playlist as a rendition: what the master says about it, and the playlist itself."""

    id: str
    kind: str  # "video" or "audio"
    bandwidth_bps: int
    playlist: MediaPlaylist
    variant: Variant | None = None
    rendition: Rendition | None = None


def video_variants(master: MasterPlaylist) -> list[Variant]:
    """The variants to play, one per media playlist (the first listing of a URI wins: the same video
    may be listed once per audio group), in ascending BANDWIDTH."""
    unique: dict[str, Variant] = {}
    for variant in master.variants:
        unique.setdefault(variant.uri, variant)
    # An audio-only variant (FFmpeg's var_stream_map lists the audio group's playlist as one too) is
    # no rung of the video ladder while video variants exist: hls.js and Shaka drop it the same way.
    audio_uris = {r.uri for r in master.renditions if r.type == "AUDIO" and r.uri is not None}
    video = {uri: v for uri, v in unique.items() if not (uri in audio_uris or _audio_only(v.codecs))}
    ordered = sorted((video or unique).values(), key=lambda v: v.bandwidth_bps)
    for low, high in zip(ordered, ordered[1:]):
        if low.bandwidth_bps == high.bandwidth_bps:
            raise HlsError(f"HLS playlist {_name(master.url)}: the variants of lines {low.line} and {high.line} "
                           f"both have BANDWIDTH={low.bandwidth_bps}; an ABR ladder needs distinct bitrates")
    return ordered


_AUDIO_CODECS = ("mp4a", "ac-3", "ec-3", "opus", "flac", "alac", "mp3", "dts")


def _audio_only(codecs: str | None) -> bool:
    """CODECS lists audio codecs only (RFC 8216 4.3.4.2: "every media format present")."""
    listed = [c.strip().lower() for c in (codecs or "").split(",") if c.strip()]
    return bool(listed) and all(c.startswith(_AUDIO_CODECS) for c in listed)


def audio_renditions(master: MasterPlaylist, variants: Sequence[Variant]) -> list[Rendition]:
    """The audio renditions of the group the lowest variant names (DEFAULT=YES first), those with a
    URI (without one, the audio is in the variant's own stream)."""
    group = next((v.audio_group for v in variants if v.audio_group), None)
    if group is None:
        return []
    members = [r for r in master.renditions if r.type == "AUDIO" and r.group_id == group]
    if not members:
        raise HlsError(f"HLS playlist {_name(master.url)}: the variants name AUDIO={group!r} but no "
                       f"#EXT-X-MEDIA:TYPE=AUDIO has GROUP-ID={group!r}")
    members.sort(key=lambda r: not r.default)  # stable: document order otherwise
    return [r for r in members if r.uri is not None]


def rendition_ids(uris: Sequence[str], prefix: str) -> list[str]:
    """Readable, unique ids for media playlists: the playlist's file stem (`v216p` for
    `.../v216p.m3u8`) or its directory (`v216p` for `.../v216p/playlist.m3u8`), else `prefix<n>`."""
    for pick in (lambda p: p.stem, lambda p: p.parent.name):
        names = [pick(PurePosixPath(unquote(urlsplit(u).path))) for u in uris]
        if all(names) and len(set(names)) == len(names) and all(n.isprintable() and len(n) <= 64 for n in names):
            return names
    return [f"{prefix}{index}" for index in range(len(uris))]


def build_manifest(url: str, tracks: Sequence[Track], *, aes_keys: Mapping[str, bytes] | None = None,
                   init_kids: Mapping[str, str] | None = None) -> Manifest:
    """The manifest of `tracks` (video first, in ladder order; then audio). `aes_keys` maps each
    AES-128 key URI to its 16 bytes; `init_kids` maps an init section URI to the default KID (32 hex)
    read from its `tenc`, for SAMPLE-AES tracks whose playlist names none."""
    aes_keys = aes_keys or {}
    init_kids = init_kids or {}
    live = [t for t in tracks if not t.playlist.ended]
    if live:
        return _live_manifest(url, tracks, live, aes_keys, init_kids)
    groups = [_groups(track) for track in tracks]
    split = any(len({(s.init.uri, s.init.byte_range) if s.init else None for s in track.playlist.segments}) > 1
                for track in tracks)
    if not split:
        groups = [[list(track.playlist.segments)] for track in tracks]
    counts = {len(g) for g in groups}
    if len(counts) > 1:
        raise HlsError("HLS: the media playlists have different numbers of discontinuities "
                       f"({', '.join(f'{t.id}: {len(g) - 1}' for t, g in zip(tracks, groups))}); "
                       "they must align (RFC 8216 6.2.1)")
    periods = []
    start_s = 0.0
    video = [t for t in tracks if t.kind == "video"]
    for index in range(counts.pop()):
        suffix = f"@{index}" if split and index else ""
        reps = {track.id: _representation(track, groups[k][index], start_s, suffix, aes_keys, init_kids)
                for k, track in enumerate(tracks)}
        video_reps = [reps[t.id] for t in video]
        _check_aligned(video, video_reps)
        sets = [AdaptationSet(id="video", content_type="video", lang=None, representations=tuple(video_reps))]
        sets.extend(
            AdaptationSet(id=t.id, content_type="audio",
                          lang=t.rendition.language if t.rendition is not None else None,
                          representations=(reps[t.id],))
            for t in tracks if t.kind == "audio"
        )
        duration_s = sum(s.duration_s for s in video_reps[0].segments)
        periods.append(Period(id=str(index), start_s=start_s, duration_s=duration_s, base_urls=(url,),
                              adaptation_sets=tuple(sets)))
        start_s += duration_s
    targets = [t.playlist.target_duration_s for t in tracks if t.playlist.target_duration_s]
    return Manifest(url=url, type="static", duration_s=start_s,
                    min_buffer_s=max(targets) if targets else 0.0,
                    max_segment_duration_s=max(targets) if targets else None, periods=tuple(periods), protocol="hls")


def _live_manifest(url: str, tracks: Sequence[Track], live: Sequence[Track], aes_keys: Mapping[str, bytes],
                   init_kids: Mapping[str, str]) -> Manifest:
    """A live presentation (media playlists without EXT-X-ENDLIST, RFC 8216 6.2.2): a dynamic manifest
    whose Representations hold the segments listed when it was read (media sequence numbers as
    `SegmentRef.number`) and whose base URL is the media playlist, which the live player reloads
    (player/client/hlslive.py)."""
    if len(live) != len(tracks):
        ended = next(t for t in tracks if t.playlist.ended)
        raise HlsError(f"HLS: the media playlist {_name(ended.playlist.url)} has #EXT-X-ENDLIST but "
                       f"{_name(live[0].playlist.url)} is live: a presentation is live or not, in every playlist")
    for track in tracks:
        segments = track.playlist.segments
        if any(s.discontinuity != segments[0].discontinuity for s in segments):
            changed = next(s for s in segments if s.discontinuity != segments[0].discontinuity)
            raise HlsError(f"HLS playlist {_name(track.playlist.url)} line {changed.line}: a discontinuity in a live "
                           "playlist is not supported")
        if track.playlist.target_duration_s is None:
            raise HlsError(f"HLS playlist {_name(track.playlist.url)}: a live playlist needs #EXT-X-TARGETDURATION "
                           "(RFC 8216 4.3.3.1): its reload interval")
    reps = {t.id: _representation(t, list(t.playlist.segments), 0.0, "", aes_keys, init_kids) for t in tracks}
    sets = [AdaptationSet(id="video", content_type="video", lang=None,
                          representations=tuple(reps[t.id] for t in tracks if t.kind == "video"))]
    sets.extend(AdaptationSet(id=t.id, content_type="audio", lang=t.rendition.language if t.rendition else None,
                              representations=(reps[t.id],)) for t in tracks if t.kind == "audio")
    target_s = max(t.playlist.target_duration_s or 0.0 for t in tracks)
    return Manifest(url=url, type="dynamic", duration_s=None, min_buffer_s=target_s, max_segment_duration_s=target_s,
                    periods=(Period(id="0", start_s=0.0, duration_s=None, base_urls=(url,), adaptation_sets=tuple(sets)),),
                    minimum_update_period_s=target_s, protocol="hls")


def _groups(track: Track) -> list[list[Segment]]:
    """The track's segments by discontinuity sequence; the init section must be constant in each."""
    out = [list(g) for _, g in groupby(track.playlist.segments, key=lambda s: s.discontinuity)]
    for group in out:
        inits = {(s.init.uri, s.init.byte_range) if s.init else None for s in group}
        if len(inits) > 1:
            changed = next(s for s in group if s.init is not group[0].init)
            line = changed.init.line if changed.init is not None else changed.line
            raise HlsError(f"HLS playlist {_name(track.playlist.url)} line {line}: #EXT-X-MAP: the initialization "
                           "section changes without an #EXT-X-DISCONTINUITY before it: not supported")
    return out


def _check_aligned(video: Sequence[Track], reps: Sequence[Representation]) -> None:
    counts = {rep.segment_count for rep in reps}
    if len(counts) > 1:
        listing = ", ".join(f"{t.id}: {r.segment_count}" for t, r in zip(video, reps))
        raise HlsError(f"HLS: the variants list different numbers of segments ({listing}); the player switches "
                       "quality at segment boundaries, so variants must have aligned segments")


def _representation(track: Track, segments: list[Segment], period_start_s: float, suffix: str,
                    aes_keys: Mapping[str, bytes], init_kids: Mapping[str, str]) -> Representation:
    playlist = track.playlist
    first = segments[0]
    urls = (playlist.url,)
    init = None
    if first.init is not None:
        init = SegmentRef(number=0, start_s=period_start_s, duration_s=0.0, urls=(first.init.uri,),
                          byte_range=first.init.byte_range,
                          cipher=_init_cipher(playlist, first.init.keys, first.init.line, aes_keys))
    elif first.uri.lower().split("?", 1)[0].endswith(_PACKED_AUDIO):
        raise HlsError(f"HLS playlist {_name(playlist.url)} line {first.line}: packed audio or text segments "
                       "are not supported (only MPEG-TS and fMP4)")
    refs = []
    time_s = period_start_s
    for segment in segments:
        refs.append(SegmentRef(number=segment.sequence, start_s=time_s, duration_s=segment.duration_s,
                               urls=(segment.uri,), byte_range=segment.byte_range,
                               cipher=_segment_cipher(playlist, segment, aes_keys)))
        time_s += segment.duration_s
    variant = track.variant
    width, height = variant.resolution if variant is not None and variant.resolution else (None, None)
    return Representation(
        id=track.id + suffix, bandwidth_bps=track.bandwidth_bps,
        mime_type=f"{track.kind}/mp4" if init is not None else f"{track.kind}/mp2t",
        codecs=variant.codecs if variant is not None else None, width=width, height=height,
        frame_rate=variant.frame_rate if variant is not None else None, audio_sampling_rate_hz=None,
        base_urls=urls, init=init, segments=tuple(refs),
        segment_duration_s=statistics.median(s.duration_s for s in segments), period_start_s=period_start_s,
        content_protection=_protection(playlist, segments, init is not None, init_kids),
    )


def _aes_key(keys: Sequence[Key]) -> Key | None:
    return next((k for k in keys if k.method == tags.METHOD_AES_128), None)


def _segment_cipher(playlist: MediaPlaylist, segment: Segment, aes_keys: Mapping[str, bytes]) -> SegmentCipher | None:
    key = _aes_key(segment.keys)
    if key is None:
        return None
    assert key.uri is not None  # _key requires a URI for every method but NONE
    return SegmentCipher(key_uri=key.uri, iv=key.iv or sequence_iv(segment.sequence), key=aes_keys.get(key.uri))


def _init_cipher(playlist: MediaPlaylist, keys: Sequence[Key], line: int,
                 aes_keys: Mapping[str, bytes]) -> SegmentCipher | None:
    key = _aes_key(keys)
    if key is None:
        return None
    assert key.uri is not None
    if key.iv is None:
        raise HlsError(f"HLS playlist {_name(playlist.url)} line {line}: #EXT-X-MAP: the init section is under "
                       f"METHOD=AES-128 (line {key.line}) without an IV, which RFC 8216 4.3.2.5 requires")
    return SegmentCipher(key_uri=key.uri, iv=key.iv, key=aes_keys.get(key.uri))


def _protection(playlist: MediaPlaylist, segments: Sequence[Segment], fmp4: bool,
                init_kids: Mapping[str, str]) -> tuple[ContentProtection, ...]:
    """Sample encryption (SAMPLE-AES*) as ContentProtection descriptors with the default KID."""
    sample_keys = {(k.keyformat, k.method): k for s in segments for k in s.keys if k.method in tags.SAMPLE_METHODS}
    if not sample_keys:
        return ()
    any_key = next(iter(sample_keys.values()))
    if not fmp4:
        raise HlsError(f"HLS playlist {_name(playlist.url)} line {any_key.line}: METHOD={any_key.method} on MPEG-TS "
                       "segments (Apple sample encryption) is not supported; sample encryption works on fMP4 (CENC)")
    kid = next((k.keyid for k in sample_keys.values() if k.keyid), None)
    if kid is None:
        kid = next((_data_kid(k) for fmt in _KEYFORMAT_PREFERENCE for k in sample_keys.values()
                    if k.keyformat.lower() == fmt and _data_kid(k)), None)
    if kid is None:
        init = segments[0].init
        kid = init_kids.get(init.uri) if init is not None else None
    return tuple(
        ContentProtection(scheme_id_uri=_scheme(key.keyformat), value=_cenc_scheme(key.method), default_kid=kid)
        for key in sample_keys.values()
    )


def _data_kid(key: Key) -> str | None:
    """The key id in a data: URI (hls.js reads a ClearKey KEYFORMAT's id there; Shaka Packager writes
    its identity key id there): 16 bytes base64."""
    if key.uri is None or not key.uri.startswith("data:") or "," not in key.uri:
        return None
    header, _, payload = key.uri[5:].partition(",")
    if not header.endswith(";base64"):
        return None
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def _scheme(keyformat: str) -> str:
    lowered = keyformat.lower()
    if lowered == tags.KEYFORMAT_CLEARKEY:
        return CLEARKEY_SCHEME
    if lowered == tags.KEYFORMAT_IDENTITY:
        return MP4_PROTECTION_SCHEME
    return lowered if lowered.startswith("urn:uuid:") else keyformat


def _cenc_scheme(method: str) -> str:
    return "cbcs" if method == tags.METHOD_SAMPLE_AES else "cenc"


def _name(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1] or url
