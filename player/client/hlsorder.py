"""Which of two reloads of a live media playlist is the newer, and what a playlist lists: the order
RFC 8216 6.2.2 gives a live playlist's versions (player/client/hlslive.py reloads by it)."""

from __future__ import annotations

from player.client.hls import MediaPlaylist


def lists(playlist: MediaPlaylist, sequence: int, part: int | None) -> bool:
    """Whether `playlist` lists segment `sequence` (complete) or, with `part`, that part of it."""
    if playlist.segments[-1].sequence >= sequence:
        return True
    return part is not None and newest_part(playlist) >= (sequence, part)


def older(old: MediaPlaylist, new: MediaPlaylist) -> str | None:
    """What makes `new` older than `old` (None: it is not): its window starts before old's, or it
    lists fewer segments or parts at the end (RFC 8216 6.2.2: neither may happen on a reload)."""
    old_first, new_first = old.segments[0].sequence, new.segments[0].sequence
    if new_first < old_first:
        return f"EXT-X-MEDIA-SEQUENCE went back from {old_first} to {new_first} on reload"
    old_last, new_last = old.segments[-1].sequence, new.segments[-1].sequence
    if new_last < old_last:
        return f"the reload lists up to segment {new_last}, the last one listed up to {old_last}"
    if new_last == old_last and not new.ended and newest_part(new) < newest_part(old):
        return (f"the reload lists parts up to {'.'.join(map(str, newest_part(new)))}, the last one listed up to "
                f"{'.'.join(map(str, newest_part(old)))}")
    return None


def newest_part(playlist: MediaPlaylist) -> tuple[int, int]:
    """The newest part listed (the last complete segment's end where none is listed after it)."""
    last = playlist.segments[-1].sequence
    part = playlist.parts[-1] if playlist.parts else None
    return (part.sequence, part.index) if part is not None and part.sequence > last else (last, 1 << 30)
