"""How long a live server held a request waiting for its channel to publish (the answer's head).

A live origin holds an LL-HLS blocking playlist reload (`_HLS_msn`/`_HLS_part`) until the playlist
lists what it asks for, and a preload hint's part until the part is made (draft-pantos-hls-rfc8216bis
6.2.5.2, 6.2.6). That wait is the channel's time, not the stack's work, so a clock that leaves out the
stack's time (netsim.clock.WarpClock) must count it. The server says it in a W3C Server Timing metric
(https://www.w3.org/TR/server-timing/): `Server-Timing: publish-wait;dur=812.500` (milliseconds of
wall time before the first byte of the answer). The origin writes it, the edge passes on each
client's share of it, and the shaping proxy (netsim.shaper) reads it from the answer's head.
"""

from __future__ import annotations

import math
import re

PUBLISH_WAIT_METRIC = "publish-wait"
HEAD_LIMIT_BYTES = 64 * 1024  # an answer's head longer than this is not read for the metric

_HEADER = re.compile(rb"^server-timing[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_METRIC = re.compile(r"^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*((?:;[^,]*)?)$")
_DUR = re.compile(r";\s*dur\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)\"?", re.IGNORECASE)


def publish_wait_header(wait_s: float) -> str:
    """The `Server-Timing` value saying a request waited `wait_s` wall seconds for publication."""
    return f"{PUBLISH_WAIT_METRIC};dur={max(0.0, wait_s) * 1000:.3f}"


def publish_wait_s(value: str | None) -> float:
    """The publication wait (seconds) in a `Server-Timing` value (0: none, or not a valid one)."""
    if not value:
        return 0.0
    total = 0.0
    for entry in value.split(","):
        metric = _METRIC.match(entry)
        if metric is None or metric[1].lower() != PUBLISH_WAIT_METRIC:
            continue
        dur = _DUR.search(metric[2])
        if dur is not None and math.isfinite(ms := float(dur[1])):
            total += ms / 1000.0
    return total


def head_end(data: bytes | bytearray) -> int:
    """Where an HTTP/1.1 response head ends in `data` (just past its blank line), -1 if not yet."""
    end = data.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def head_publish_wait_s(head: bytes | bytearray) -> float:
    """The publication wait an HTTP/1.1 response head states (every `Server-Timing` line counted;
    an interim 1xx head states none)."""
    if head[:9].startswith(b"HTTP/1.") and head[9:10] == b"1":
        return 0.0
    return sum(publish_wait_s(m[1].decode("latin-1").strip()) for m in _HEADER.finditer(head))
