"""Requests a live server will hold for its channel, known before they go out (emulation only).

An LL-HLS blocking playlist reload (`_HLS_msn`/`_HLS_part`) and a preload hint's part wait at the
server until the channel publishes what they ask for (draft-pantos-hls-rfc8216bis 6.2.5.2, 6.2.6).
That wait is the channel's time, not the stack's, so a `WarpClock` that stands still while a request
is at the server must count it; learnt from the answer's `Server-Timing` it can only be counted in
one step at the end, with every other transfer on the link standing still meanwhile. The player,
though, knows when the part it asks for is published on its own clock (the channel follows it, and
the playlists date it): it says so here (`ExpectedWaits.expect`, keyed by the request's target),
and the shaper, which sees each request's target on the wire (`RequestTargets`), lets the clock run
until then and holds it only for what is left (the stack's time after publication).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

MAX_EXPECTED = 256  # announcements kept (the oldest dropped: a request that never went out)
_HEAD_LIMIT_BYTES = 64 * 1024  # a request head longer than this ends the parsing of its connection
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([0-9]+)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.IGNORECASE | re.MULTILINE)


class ExpectedWaits:
    """Request targets (origin-form, `path?query`, as on the request line) a player expects the
    server to hold for publication, each with the clock time (`WarpClock.now`) of that publication."""

    __slots__ = ("_until", "_limit", "announced", "taken")

    def __init__(self, limit: int = MAX_EXPECTED) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._until: OrderedDict[str, float] = OrderedDict()
        self._limit = limit
        self.announced = 0  # (reporting)
        self.taken = 0  # announcements a request on the wire matched (reporting)

    def __len__(self) -> int:
        return len(self._until)

    def expect(self, target: str, until_s: float) -> None:
        """The next request for `target` waits at the server until clock time `until_s` at most."""
        if not target.startswith("/"):
            raise ValueError(f"target must be in origin form (/path?query), got {target!r}")
        if not math.isfinite(until_s):
            raise ValueError(f"until_s must be finite, got {until_s}")
        self._until.pop(target, None)
        self._until[target] = until_s
        self.announced += 1
        while len(self._until) > self._limit:
            self._until.popitem(last=False)

    def take(self, target: str) -> float | None:
        """The publication time announced for `target` (None: none), forgotten once taken."""
        until = self._until.pop(target, None)
        self.taken += until is not None
        return until


class RequestHeads:
    """One HTTP/1.1 client connection's byte stream, split as it comes (`feed`) into whole request
    heads and what passes as it is: a body with `Content-Length`; after a chunked request body, or a
    head past 64 KiB, everything (`lost`: no later head can be told apart)."""

    __slots__ = ("_head", "_skip_bytes", "lost")

    def __init__(self) -> None:
        self._head = bytearray()  # of a head still coming
        self._skip_bytes = 0  # of a request body still to pass
        self.lost = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """The pieces `data` completes, in order, each with whether it is a whole head."""
        pieces: list[tuple[bytes, bool]] = []
        view = memoryview(data)
        while view:
            if self.lost:
                pieces.append((bytes(view), False))
                break
            if self._skip_bytes:
                passed = min(self._skip_bytes, len(view))
                pieces.append((bytes(view[:passed]), False))
                self._skip_bytes -= passed
                view = view[passed:]
                continue
            start = max(0, len(self._head) - 3)  # the blank line may straddle two reads
            self._head += view
            end = self._head.find(b"\r\n\r\n", start)
            if end < 0:
                if len(self._head) > _HEAD_LIMIT_BYTES:
                    self.lost = True
                    pieces.append((self.rest(), False))
                break
            end += 4
            rest = len(self._head) - end
            head = bytes(self._head[:end])
            view = view[len(view) - rest:]
            self._head.clear()
            pieces.append((head, True))
            skip = body_after(head)
            if skip is None:
                self.lost = True
            else:
                self._skip_bytes = skip
        return pieces

    def rest(self) -> bytes:
        """The bytes of a head that has not ended (the stream ends: they pass as they came)."""
        rest = bytes(self._head)
        self._head.clear()
        return rest


class RequestTargets:
    """The request targets in one HTTP/1.1 client connection's byte stream, as each request head
    completes (`feed`, split by `RequestHeads`): after a chunked request body, or a head past 64 KiB,
    the connection's later requests are not matched (`lost`)."""

    __slots__ = ("_heads",)

    def __init__(self) -> None:
        self._heads = RequestHeads()

    @property
    def lost(self) -> bool:
        return self._heads.lost

    def feed(self, data: bytes) -> list[str]:
        """The targets of the request heads `data` completes (in order)."""
        targets: list[str] = []
        for head, whole in self._heads.feed(data):
            line = head.split(b"\r\n", 1)[0].split(b" ")
            if whole and len(line) == 3 and line[1].startswith(b"/"):
                targets.append(line[1].decode("latin-1"))
        return targets


def body_after(head: bytes) -> int | None:
    """The length of the body after request head `head` (None: chunked, which cannot be followed)."""
    if _CHUNKED.search(head):
        return None
    length = _CONTENT_LENGTH.search(head)
    return 0 if length is None else int(length[1])
