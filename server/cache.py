"""The edge's object store: an LRU bounded by bytes, and request coalescing for concurrent misses.

Both are plain in-process structures owned by one edge app (no globals); `Coalescer` needs a running
asyncio loop, `ByteLRU` does not.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")
T = TypeVar("T")


class ByteLRU(Generic[V]):
    """Least-recently-used map whose bound is the sum of its values' sizes in bytes.

    `put` evicts the least recently used entries until the new one fits; an entry larger than the
    whole bound is not stored. `get` counts as a use, `peek` does not.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._used_bytes = 0
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> Iterator[str]:
        """Keys from least to most recently used."""
        return iter(list(self._entries))

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def peek(self, key: str) -> V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: str, value: V, size_bytes: int) -> bool:
        """Store `value` as the most recently used entry; False (and nothing stored) if it can never fit."""
        if size_bytes < 0:
            raise ValueError(f"size_bytes must be >= 0, got {size_bytes}")
        self.pop(key)
        if size_bytes > self.max_bytes:
            return False
        while self._used_bytes + size_bytes > self.max_bytes:
            _, (_, evicted_bytes) = self._entries.popitem(last=False)
            self._used_bytes -= evicted_bytes
            self.evictions += 1
        self._entries[key] = (value, size_bytes)
        self._used_bytes += size_bytes
        return True

    def pop(self, key: str) -> V | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._used_bytes -= entry[1]
        return entry[0]


class Coalescer(Generic[T]):
    """At most one fetch in flight per key; callers that arrive meanwhile share its outcome.

    The fetch runs in its own task, so a caller that gives up (client disconnect, cancellation)
    does not cancel it for the others; success and failure alike reach every waiter.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}
        self.coalesced = 0

    def in_flight(self, key: str) -> bool:
        return key in self._inflight

    async def run(self, key: str, fetch: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(the fetch's result, whether this caller started it); re-raises the fetch's exception."""
        future = self._inflight.get(key)
        leader = future is None
        if future is None:
            future = asyncio.ensure_future(fetch())
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._finished(key, done))
        else:
            self.coalesced += 1
        return await asyncio.shield(future), leader

    def _finished(self, key: str, future: asyncio.Future[T]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            # Every waiter may have gone away; mark the outcome as seen so asyncio does not report
            # "exception was never retrieved" for a failure that the waiters did receive.
            future.exception()
