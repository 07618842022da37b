"""The live origin's cache of built segments: a segment's chunks (re-timed `tfdt`, new `mfhd` sequence
numbers, the CMAF chunk split; server.live.rewrite) are built once per (rendition, segment) and
served from here to every LL-HLS part request and whole-segment request after the first.

Bounded two ways: by segments (the channel gives the time-shift window's, per rendition) and by
bytes, least recently used first out; and a segment that has left the time-shift window is dropped
at the next insertion (it is never asked for again; a request for it is a 404 before the cache is
asked). A segment's chunks are a pure function of the channel and its number, so what is kept
never goes stale: dropping an entry only means the next request builds it again. Concurrent
requests for a segment not built yet wait for one build (single flight) instead of each building it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str, int]  # (media, rendition id, segment number)
Chunks = tuple[bytes, ...]
DEFAULT_MAX_BYTES = 256 * 2**20  # a bound whatever the window: 30 s of a 15 Mbit/s ladder is about 56 MB


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    builds: int  # misses that built the segment (waiters on another request's build are hits)
    entries: int
    bytes: int


class _Build:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Chunks | None = None
        self.error: BaseException | None = None


class ChunkCache:
    """Built segments by (media, rendition, number); thread-safe (builds run in executor threads)."""

    def __init__(self, *, max_segments: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_segments < 0 or max_bytes < 0:
            raise ValueError(f"cache bounds must be >= 0, got {max_segments} segments, {max_bytes} bytes")
        self.max_segments, self.max_bytes = max_segments, max_bytes
        self._entries: OrderedDict[Key, Chunks] = OrderedDict()
        self._building: dict[Key, _Build] = {}
        self._bytes = 0
        self._hits = self._builds = 0
        self._lock = threading.Lock()

    def get(self, key: Key, build: Callable[[], Chunks], *, oldest: int = 0) -> Chunks:
        """`key`'s chunks, built by `build()` if not kept; `oldest`: the oldest segment number still
        in the time-shift window (older entries are dropped when this one is kept)."""
        with self._lock:
            chunks = self._hit(key)
            if chunks is not None:
                return chunks
            pending = self._building.get(key)
            owner = pending is None
            if pending is None:
                pending = self._building[key] = _Build()
            else:
                self._hits += 1
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.value is not None
            return pending.value
        try:
            chunks = build()
        except BaseException as exc:
            pending.error = exc
            raise
        else:
            pending.value = chunks
            with self._lock:
                self._builds += 1
                self._keep(key, chunks, oldest)
            return chunks
        finally:
            with self._lock:
                self._building.pop(key, None)
            pending.done.set()

    def peek(self, key: Key) -> Chunks | None:
        """`key`'s chunks if kept (a hit), else None: no build, so an event loop may ask without a thread."""
        with self._lock:
            return self._hit(key)

    def _hit(self, key: Key) -> Chunks | None:  # under the lock
        chunks = self._entries.get(key)
        if chunks is not None:
            self._entries.move_to_end(key)
            self._hits += 1
        return chunks

    def _keep(self, key: Key, chunks: Chunks, oldest: int) -> None:
        size = sum(len(c) for c in chunks)
        if key[2] < oldest or size > self.max_bytes or self.max_segments == 0:
            return
        for old in [k for k in self._entries if k[2] < oldest]:  # left the time-shift window
            self._drop(old)
        self._entries[key] = chunks
        self._bytes += size
        while len(self._entries) > self.max_segments or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Key) -> None:
        self._bytes -= sum(len(c) for c in self._entries.pop(key))

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self._hits, builds=self._builds, entries=len(self._entries), bytes=self._bytes)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
