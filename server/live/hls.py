"""HLS live media playlists of a live channel (RFC 8216 section 6.2.2: a sliding window, no
EXT-X-ENDLIST, EXT-X-MEDIA-SEQUENCE the number of the first segment listed, EXT-X-PROGRAM-DATE-TIME
on every segment). The master playlist is the source title's, unchanged: its media playlist URIs
are the same in the channel.

At low latency the playlists are LL-HLS (draft-pantos-hls-rfc8216bis, sections 4.4.3.7-4.4.3.8,
4.4.4.9, 4.4.5.2, 6.2.5.2): each CMAF chunk is a Partial Segment `<n>.<c>.m4s` (an `EXT-X-PART`
listed once the chunk is published, `INDEPENDENT=YES` where it starts with a sync sample), the
segment being published is listed by its parts alone, an `EXT-X-PRELOAD-HINT` names the next part,
and `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES` lets a client ask with `_HLS_msn`/`_HLS_part` for
the playlist that contains a segment or part not published yet (`BlockingRequest`; the origin holds
the request until then). Without low latency only complete segments are listed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from server.formats import hls as tags
from server.live.channel import LiveChannel
from server.live.mpd import iso_datetime
from server.packaging.hls import clearkey_key_tag

# EXT-X-MAP without EXT-X-I-FRAMES-ONLY needs 6 (RFC 8216 section 7); none of the LL-HLS tags used
# here asks for more (rfc8216bis section 7: version 9 is for EXT-X-SKIP, which is not offered).
_VERSION = 6
MSN_PARAM = "_HLS_msn"
PART_PARAM = "_HLS_part"
SKIP_PARAM = "_HLS_skip"
PART_HISTORY_TARGET_DURATIONS = 3  # parts are listed for segments this close to the playlist's end (4.4.4.9)
PART_HOLD_BACK_PARTS = 3  # PART-HOLD-BACK >= 3 part targets (rfc8216bis 4.4.3.8 recommends it)
HOLD_BACK_TARGET_DURATIONS = 3  # HOLD-BACK >= 3 target durations (4.4.3.8)
_NUMBER = re.compile(r"0|[1-9][0-9]{0,9}")


class BadBlockingRequest(ValueError):
    """`_HLS_msn`/`_HLS_part` that are malformed, or a request too far ahead (rfc8216bis 6.2.5.2: 400)."""


@dataclass(frozen=True, slots=True)
class BlockingRequest:
    """A blocking playlist reload: the playlist that contains segment `msn` (complete) or, with
    `part`, part `part` of it (a part past the segment's last one means its last one)."""

    msn: int
    part: int | None = None

    @property
    def query(self) -> str:
        """The canonical query (the edge's cache key and what it forwards to the origin)."""
        text = f"{MSN_PARAM}={self.msn}"
        return text if self.part is None else f"{text}&{PART_PARAM}={self.part}"


def blocking_request(query: Mapping[str, str]) -> BlockingRequest | None:
    """The blocking reload a playlist request's query asks for (None: an ordinary reload; other
    parameters, `_HLS_skip` among them as delta updates are not offered, are ignored);
    `BadBlockingRequest` naming what is wrong with a malformed one."""
    getall = getattr(query, "getall", None)
    values = {}
    for name in (MSN_PARAM, PART_PARAM):
        found = getall(name, []) if getall is not None else ([query[name]] if name in query else [])
        if len(found) > 1:
            raise BadBlockingRequest(f"{name} is given {len(found)} times")
        if found:
            if _NUMBER.fullmatch(found[0]) is None:
                raise BadBlockingRequest(f"{name} must be a decimal integer >= 0, got {found[0][:40]!r}")
            values[name] = int(found[0])
    if PART_PARAM in values and MSN_PARAM not in values:
        raise BadBlockingRequest(f"{PART_PARAM} without {MSN_PARAM} (rfc8216bis 6.2.5.2)")
    if MSN_PARAM not in values:
        return None
    return BlockingRequest(values[MSN_PARAM], values.get(PART_PARAM))


def part_target_s(channel: LiveChannel, media: str, rep_id: str) -> float:
    """EXT-X-PART-INF:PART-TARGET: the chunk duration, or the longest chunk if a rendition's run over
    (audio frames do not fit 0.5 s exactly), to the millisecond above."""
    return math.ceil(max(channel.chunk_duration_s, channel.longest_chunk_s(media, rep_id)) * 1000 - 1e-6) / 1000


def part_hold_back_s(channel: LiveChannel, part_target: float) -> float:
    """PART-HOLD-BACK: the channel's target latency (the MPD's), at least three part targets."""
    return round(max(PART_HOLD_BACK_PARTS * part_target, channel.target_latency_s), 3)


def blocking_ready_at_s(channel: LiveChannel, request: BlockingRequest) -> float:
    """When the playlist first contains what `request` asks for (channel clock, unix seconds)."""
    if request.part is None:
        return channel.segment_complete_at_s(request.msn)
    return channel.chunk_available_at_s(request.msn, min(request.part, channel.chunks_per_segment - 1))


def check_blocking(channel: LiveChannel, media: str, rep_id: str, request: BlockingRequest, now_s: float) -> None:
    """`BadBlockingRequest` for a request too far ahead (rfc8216bis 6.2.5.2): `_HLS_msn` more than two
    past the playlist's last segment, or `_HLS_part` past its last part by more than the Advance
    Part Limit (3 / PART-TARGET parts for targets under a second)."""
    if not channel.config.low_latency:
        if request.part is not None:
            raise BadBlockingRequest(f"{PART_PARAM}: this channel has no parts (it is not low latency)")
        return  # whole-segment playlists do not offer blocking reloads: an ordinary reload
    last = channel.newest_complete(now_s)
    if request.msn > last + 2:
        raise BadBlockingRequest(f"{MSN_PARAM}={request.msn} is more than two segments past the playlist's last "
                                 f"segment ({last})")
    if request.part is None:
        return
    k = channel.chunks_per_segment
    target = part_target_s(channel, media, rep_id)
    limit = 3 / target if target < 1 else 3
    newest_part = (last * k) + channel.chunks_available(last + 1, now_s) - 1  # index of the newest part
    asked = (request.msn - 1) * k + min(request.part, k - 1)
    if asked - newest_part > limit:
        raise BadBlockingRequest(f"{MSN_PARAM}={request.msn}&{PART_PARAM}={request.part} is more than "
                                 f"{limit:g} parts past the playlist's last part, {newest_part // k + 1}.{newest_part % k} "
                                 "(the Advance Part Limit)")


def live_media_playlist(channel: LiveChannel, media: str, rep_id: str, now_s: float) -> str:
    """The media playlist of one rendition at `now_s`: the complete segments still in the window,
    and at low latency the parts of the recent ones and of the one being published."""
    last = channel.newest_complete(now_s)
    first = max(channel.oldest_available(now_s), 1)
    segment_s = float(channel.segment_s)
    target_duration = max(1, math.floor(segment_s + 0.5))
    lines = [tags.EXTM3U, f"{tags.EXT_X_VERSION}:{_VERSION}",
             f"{tags.EXT_X_TARGETDURATION}:{target_duration}"]
    low_latency = channel.config.low_latency
    if low_latency:
        part_target = part_target_s(channel, media, rep_id)
        lines += [f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
                  f"PART-HOLD-BACK={part_hold_back_s(channel, part_target):.3f},"
                  f"HOLD-BACK={HOLD_BACK_TARGET_DURATIONS * target_duration:.3f}",
                  f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}"]
    lines += [f"{tags.EXT_X_MEDIA_SEQUENCE}:{first if last >= first else last + 1}",
              tags.EXT_X_INDEPENDENT_SEGMENTS, f'{tags.EXT_X_MAP}:URI="init.mp4"']
    kid = channel.kid(media)
    if kid is not None:
        lines.append(clearkey_key_tag(kid))
    parts_from = last + 1 - math.ceil(PART_HISTORY_TARGET_DURATIONS * target_duration / segment_s)
    for number in range(first, last + 1):
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_datetime(channel.segment_start_s(number))}")
        if low_latency and number >= parts_from:
            lines += _parts(channel, media, rep_id, number, channel.chunks_per_segment)
        lines += [f"{tags.EXTINF}:{segment_s:.6f},", f"{number}.m4s"]
    if low_latency:
        current = last + 1
        published = channel.chunks_available(current, now_s)
        if published:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_datetime(channel.segment_start_s(current))}")
            lines += _parts(channel, media, rep_id, current, published)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{current}.{published}.m4s"')
    return "\n".join(lines) + "\n"


def _parts(channel: LiveChannel, media: str, rep_id: str, number: int, count: int) -> list[str]:
    durations = channel.chunk_durations_s(media, rep_id, number)
    out = []
    for index in range(count):
        # Audio samples are all sync samples; of a video segment's chunks only the first is marked
        # (it starts with the segment's sync sample; the rewrite keeps no other chunk's flags).
        independent = ",INDEPENDENT=YES" if media == "audio" or index == 0 else ""
        out.append(f'#EXT-X-PART:DURATION={durations[index]:.5f},URI="{number}.{index}.m4s"{independent}')
    return out
