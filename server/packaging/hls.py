"""HLS playlists (RFC 8216) for a packaged title, from the same CMAF segments the MPD describes.

`master.m3u8` sits beside `manifest.mpd`; each rendition directory gets a `playlist.m3u8` whose
relative URIs (`init.mp4`, `1.m4s`, ...) name the files the MPD names, so a signed path prefix
(`/s/<token>/<title>/...`) carries over to every URI. Durations and sizes come from
`segments.json`'s record of the packaged boxes. Encrypted renditions are CENC `cenc` (AES-CTR):
they are signalled as METHOD=SAMPLE-AES-CTR with KEYFORMAT "org.w3.clearkey" and the KID both in
KEYID and in a data: URI, which is what hls.js reads (docs/HLS.md has the survey).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from pathlib import Path

from server.formats import hls as tags
from server.formats.hls import MASTER_PLAYLIST_NAME, MEDIA_PLAYLIST_NAME
from server.formats.segments import AudioRenditionInfo, TitleSegments, VideoRenditionInfo

_VERSION = 6  # EXT-X-MAP in a media playlist without EXT-X-I-FRAMES-ONLY needs 6 (RFC 8216 7)
AUDIO_GROUP = "audio"


def peak_bps(sizes: Sequence[int], durations_s: Sequence[float]) -> int:
    """The peak segment bit rate (RFC 8216 4.3.4.2: BANDWIDTH), over single segments."""
    return math.ceil(max(size * 8 / duration for size, duration in zip(sizes, durations_s)))


def average_bps(sizes: Sequence[int], durations_s: Sequence[float]) -> int:
    """The average bit rate over the whole rendition (AVERAGE-BANDWIDTH)."""
    return math.ceil(sum(sizes) * 8 / sum(durations_s))


def clearkey_key_tag(kid: bytes) -> str:
    """The EXT-X-KEY of a CENC 'cenc' rendition whose key comes from a ClearKey license server."""
    if len(kid) != 16:
        raise ValueError("a KID is 16 bytes")
    uri = "data:text/plain;base64," + base64.b64encode(kid).decode("ascii")
    return (f'{tags.EXT_X_KEY}:METHOD={tags.METHOD_SAMPLE_AES_CTR},KEYFORMAT="{tags.KEYFORMAT_CLEARKEY}",'
            f'KEYFORMATVERSIONS="1",URI="{uri}",KEYID=0x{kid.hex()}')


def media_playlist(durations_s: Sequence[float], *, kid: bytes | None = None, first_number: int = 1) -> str:
    """A VOD media playlist of `init.mp4` and `<n>.m4s` (n from `first_number`), in this directory."""
    if not durations_s or any(not d > 0 for d in durations_s):
        raise ValueError("a media playlist needs segments with durations > 0")
    lines = [
        tags.EXTM3U,
        f"{tags.EXT_X_VERSION}:{_VERSION}",
        # Each EXTINF rounded to the nearest integer must not exceed it (4.3.3.1).
        f"{tags.EXT_X_TARGETDURATION}:{max(1, math.floor(max(durations_s) + 0.5))}",
        f"{tags.EXT_X_MEDIA_SEQUENCE}:{first_number}",
        f"{tags.EXT_X_PLAYLIST_TYPE}:VOD",
        tags.EXT_X_INDEPENDENT_SEGMENTS,
        f'{tags.EXT_X_MAP}:URI="init.mp4"',
    ]
    if kid is not None:
        lines.append(clearkey_key_tag(kid))
    for number, duration in enumerate(durations_s, start=first_number):
        lines += [f"{tags.EXTINF}:{duration:.6f},", f"{number}.m4s"]
    lines.append(tags.EXT_X_ENDLIST)
    return "\n".join(lines) + "\n"


def master_playlist(video: Sequence[VideoRenditionInfo], audio: Sequence[AudioRenditionInfo], *,
                    language: str = "und") -> str:
    """The master playlist: one variant per video rendition (ascending), each with the audio group."""
    if not video:
        raise ValueError("a master playlist needs at least one video rendition")
    lines = [tags.EXTM3U, f"{tags.EXT_X_VERSION}:{_VERSION}", tags.EXT_X_INDEPENDENT_SEGMENTS]
    audio_peak = audio_average = 0
    for index, rendition in enumerate(audio):
        default = "YES" if index == 0 else "NO"
        lines.append(
            f'{tags.EXT_X_MEDIA}:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="{rendition.id}",LANGUAGE="{language}",'
            f'DEFAULT={default},AUTOSELECT=YES,CHANNELS="{rendition.channels}",'
            f'URI="audio/{rendition.id}/{MEDIA_PLAYLIST_NAME}"')
        # A variant's BANDWIDTH counts the rendition it plays with (4.3.4.2): the largest one.
        audio_peak = max(audio_peak, peak_bps(rendition.segment_sizes_bytes, rendition.segment_durations_s))
        audio_average = max(audio_average, average_bps(rendition.segment_sizes_bytes, rendition.segment_durations_s))
    audio_codecs = audio[0].codecs if audio else None
    previous = 0
    for rendition in video:
        codecs = rendition.codecs + (f",{audio_codecs}" if audio_codecs else "")
        # Players order variants by BANDWIDTH; kept strictly ascending along the ladder (an upper
        # bound stays an upper bound) so that a quality index names the same rung as segments.json.
        bandwidth = previous = max(peak_bps(rendition.segment_sizes_bytes, rendition.segment_durations_s) + audio_peak,
                                   previous + 1)
        attrs = [
            f"BANDWIDTH={bandwidth}",
            f"AVERAGE-BANDWIDTH={average_bps(rendition.segment_sizes_bytes, rendition.segment_durations_s) + audio_average}",
            f'CODECS="{codecs}"',
            f"RESOLUTION={rendition.width}x{rendition.height}",
            f"FRAME-RATE={rendition.frame_rate:.3f}",
        ]
        if audio:
            attrs.append(f'AUDIO="{AUDIO_GROUP}"')
        lines += [f"{tags.EXT_X_STREAM_INF}:{','.join(attrs)}", f"video/{rendition.id}/{MEDIA_PLAYLIST_NAME}"]
    return "\n".join(lines) + "\n"


def write_hls(title_dir: Path, segments: TitleSegments, *, video_kid: bytes | None = None,
              audio_kid: bytes | None = None) -> None:
    """Writes `master.m3u8` and every rendition's `playlist.m3u8` into a packaged title's directory."""
    for kind, renditions, kid in (("video", segments.video, video_kid), ("audio", segments.audio, audio_kid)):
        for rendition in renditions:
            text = media_playlist(rendition.segment_durations_s, kid=kid)
            (title_dir / kind / rendition.id / MEDIA_PLAYLIST_NAME).write_text(text, encoding="utf-8")
    (title_dir / MASTER_PLAYLIST_NAME).write_text(master_playlist(segments.video, segments.audio), encoding="utf-8")
