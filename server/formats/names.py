"""Names in a packaged title's layout, and the one rule for title names.

A content root holds one directory per title: `<title>/manifest.mpd`, `segments.json` and
`video|audio/<rep_id>/init.mp4|<n>.m4s` (plus `keys.json`, which only the license service reads).
A title name is also a path segment of every URL and a directory name, hence the narrow rule.
"""

from __future__ import annotations

import re

MANIFEST_NAME = "manifest.mpd"
SEGMENTS_NAME = "segments.json"
KEYS_NAME = "keys.json"  # read by the license service only; never served
# Channel seconds an emulated live player's clock runs behind the channel's (server.live.origin,
# player.client.liveplay, netsim.lagstamp).
CHANNEL_LAG_HEADER = "X-Abrkit-Channel-Lag"
TITLE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TITLE_RULE = "use up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_valid_title(name: str) -> bool:
    """True for a name of 1 to 128 letters, digits, '.', '_' or '-' that starts with a letter or digit."""
    return TITLE_PATTERN.fullmatch(name) is not None


def check_title(title: str, *, hint: str = "") -> None:
    """Raises ValueError naming the rule (and `hint`, e.g. which option sets the title) for a bad title."""
    if not is_valid_title(title):
        raise ValueError(f"invalid title {title!r}: {TITLE_RULE}" + (f" ({hint})" if hint else ""))
