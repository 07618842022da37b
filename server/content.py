"""The on-disk layout of packaged titles and safe resolution of request paths to their files.

A content root holds one directory per title (`ROOT/<title>/manifest.mpd`, `master.m3u8`,
`segments.json`, `video|audio/<rep_id>/init.mp4|<n>.m4s|playlist.m3u8`; the names are in
`server.formats.names` and `server.formats.hls`). Only those
names resolve: keys, dotfiles, other files, traversal and symlinks leading out of the root do not.
Shared by the origin and the edge caches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from server.formats.hls import MASTER_PLAYLIST_NAME, MEDIA_PLAYLIST_NAME, PLAYLIST_CONTENT_TYPE
from server.formats.names import MANIFEST_NAME, SEGMENTS_NAME, is_valid_title

REPRESENTATION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_MEDIA_PATH = re.compile(
    r"(?P<media>video|audio)/(?P<rep>[A-Za-z0-9][A-Za-z0-9_-]{0,63})/"
    rf"(?:(?P<init>init\.mp4)|(?P<playlist>{re.escape(MEDIA_PLAYLIST_NAME)})"
    r"|[1-9][0-9]{0,8}(?:\.(?:0|[1-9][0-9]{0,2}))?\.m4s)"  # <n>.m4s, or a live LL-HLS part <n>.<c>.m4s
)


class ContentKind(Enum):
    MANIFEST = "manifest"
    PLAYLIST = "playlist"  # HLS: the master playlist, or a rendition's media playlist
    SIDECAR = "sidecar"
    INIT = "init"
    SEGMENT = "segment"


_CONTENT_TYPES = {
    (ContentKind.MANIFEST, None): "application/dash+xml",
    (ContentKind.PLAYLIST, None): PLAYLIST_CONTENT_TYPE,
    (ContentKind.PLAYLIST, "video"): PLAYLIST_CONTENT_TYPE,
    (ContentKind.PLAYLIST, "audio"): PLAYLIST_CONTENT_TYPE,
    (ContentKind.SIDECAR, None): "application/json",
    (ContentKind.INIT, "video"): "video/mp4",
    (ContentKind.INIT, "audio"): "audio/mp4",
    (ContentKind.SEGMENT, "video"): "video/iso.segment",
    (ContentKind.SEGMENT, "audio"): "video/iso.segment",  # RFC 8972 registers one type for both
}


@dataclass(frozen=True, slots=True)
class ContentFile:
    """A servable file of a title: where it is and what it is."""

    path: Path
    title: str
    relative: str
    kind: ContentKind
    media: str | None  # "video", "audio" or None for manifest/sidecar

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[(self.kind, self.media)]

    @property
    def immutable(self) -> bool:
        """Init and media segments never change once published; manifests may be re-packaged."""
        return self.kind in (ContentKind.INIT, ContentKind.SEGMENT)


def classify(relative: str) -> tuple[ContentKind, str | None] | None:
    """What a title-relative path names in the layout, or None if it is not a servable name."""
    if relative == MANIFEST_NAME:
        return ContentKind.MANIFEST, None
    if relative == SEGMENTS_NAME:
        return ContentKind.SIDECAR, None
    if relative == MASTER_PLAYLIST_NAME:
        return ContentKind.PLAYLIST, None
    match = _MEDIA_PATH.fullmatch(relative)
    if match is None:
        return None
    if match["playlist"]:
        return ContentKind.PLAYLIST, match["media"]
    return (ContentKind.INIT if match["init"] else ContentKind.SEGMENT), match["media"]


def resolve_content_path(content_root: Path, title: str, relative: str) -> ContentFile | None:
    """The file for `/<title>/<relative>` (both already percent-decoded), or None (-> 404).

    None unless the title and path match the layout exactly and the file, after resolving every
    symlink, is a regular file inside the content root.
    """
    if not is_valid_title(title):
        return None
    kind = classify(relative)
    if kind is None:
        return None
    root = content_root.resolve()
    try:
        real = (root / title / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return ContentFile(path=real, title=title, relative=relative, kind=kind[0], media=kind[1])


def list_titles(content_root: Path) -> list[str]:
    """Titles under a content root that have a manifest, sorted."""
    if not content_root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in content_root.iterdir()
        if is_valid_title(entry.name) and resolve_content_path(content_root, entry.name, MANIFEST_NAME)
    )
