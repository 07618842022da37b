"""Isolation primitives of the gateway: rate limiter, circuit breaker, bulkhead. Pure and synchronous.

No I/O and no clock of their own: every time-dependent call takes `now` (seconds, monotonic), so
tests drive them with a fake clock. The patterns are those of Netflix Hystrix / resilience4j.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """`rate_per_s` tokens a second up to `burst`; one request takes one token."""

    rate_per_s: float
    burst: float
    tokens: float
    updated_at: float

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one will be available."""
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
        self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` is whole seconds (RFC 9110 10.2.3): round up, at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter:
    """One token bucket per client key; at most `max_clients` buckets (least recently used forgotten)."""

    def __init__(self, *, rate_per_s: float, burst: int, max_clients: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate_per_s must be > 0, burst and max_clients >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str, now: float) -> RateDecision:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate_per_s=self.rate_per_s, burst=self.burst, tokens=self.burst, updated_at=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_clients:
                # A forgotten client comes back with a full bucket: at worst one extra burst.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait_s = bucket.take(now)
        return RateDecision(allowed=wait_s == 0.0, retry_after_s=wait_s)

    def __len__(self) -> int:
        return len(self._buckets)


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_timeout_s` lets one probe
    through (half-open); the probe's success closes it, its failure opens it again.

    Callers do: `if breaker.allow(now): ... record_success(now) / record_failure(now) / release()`,
    where `release()` is for a permitted call that ended with neither verdict (e.g. cancelled).
    """

    def __init__(self, *, failure_threshold: int, reset_timeout_s: float) -> None:
        if failure_threshold < 1 or reset_timeout_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_timeout_s > 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def state(self, now: float) -> CircuitState:
        if self._state is CircuitState.OPEN and now - self._opened_at >= self.reset_timeout_s:
            return CircuitState.HALF_OPEN
        return self._state

    def retry_after_s(self, now: float) -> float:
        """Seconds until a probe may be let through (0 unless open)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout_s - now)

    def allow(self, now: float) -> bool:
        state = self.state(now)
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            self._state = CircuitState.HALF_OPEN
            self._probe_in_flight = True
            return True
        return False

    def record_success(self, now: float) -> None:
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self, now: float) -> None:
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = CircuitState.OPEN
            self._opened_at = now
        self._probe_in_flight = False

    def release(self) -> None:
        """A permitted call ended without a verdict: let the next one probe."""
        self._probe_in_flight = False

    @property
    def consecutive_failures(self) -> int:
        return self._failures


class Priority(enum.Enum):
    """What a request does for its client (the shedding order of Netflix's Zuul: the least valuable
    work goes first): keep a running session alive, or start a new one."""

    RUNNING = "running"
    NEW = "new"


class Bulkhead:
    """At most `max_concurrent` calls in flight; the next one is refused at once (no queue). The last
    `reserved` slots take `Priority.RUNNING` calls only: under overload new sessions are shed while
    running ones keep their renewals."""

    def __init__(self, max_concurrent: int, *, reserved: int = 0) -> None:
        if max_concurrent < 1 or not 0 <= reserved < max_concurrent:
            raise ValueError("max_concurrent must be >= 1 and 0 <= reserved < max_concurrent")
        self.max_concurrent = max_concurrent
        self.reserved = reserved
        self.in_flight = 0

    def try_acquire(self, priority: Priority = Priority.RUNNING) -> bool:
        limit = self.max_concurrent if priority is Priority.RUNNING else self.max_concurrent - self.reserved
        if self.in_flight >= limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        if self.in_flight <= 0:
            raise RuntimeError("Bulkhead.release() without a matching try_acquire()")
        self.in_flight -= 1


class ConcurrencyLimiter:
    """At most `per_key` calls in flight per client key (at most `max_keys` keys tracked at once:
    a key over that is refused too, so the table cannot grow without bound)."""

    def __init__(self, per_key: int, *, max_keys: int = 100_000) -> None:
        if per_key < 1 or max_keys < 1:
            raise ValueError("per_key and max_keys must be >= 1")
        self.per_key = per_key
        self.max_keys = max_keys
        self._in_flight: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        count = self._in_flight.get(key, 0)
        if count >= self.per_key or (count == 0 and len(self._in_flight) >= self.max_keys):
            return False
        self._in_flight[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._in_flight.get(key, 0)
        if count <= 0:
            raise RuntimeError("ConcurrencyLimiter.release() without a matching try_acquire()")
        if count == 1:
            del self._in_flight[key]
        else:
            self._in_flight[key] = count - 1

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)


@dataclass(slots=True)
class _Failures:
    count: int
    last_s: float


class FailureBackoff:
    """Exponential backoff per key after repeated failures (wrong passwords per username): the first
    `free_failures` cost nothing; after failure k > free the key waits `base_s * 2**(k - free - 1)`,
    at most `max_s`, from that failure. A success forgets the key; at most `max_keys` are kept
    (the least recently failed forgotten first)."""

    def __init__(self, *, free_failures: int, base_s: float, max_s: float, max_keys: int = 100_000) -> None:
        if free_failures < 0 or base_s <= 0 or max_s < base_s or max_keys < 1:
            raise ValueError("need free_failures >= 0, 0 < base_s <= max_s and max_keys >= 1")
        self.free_failures = free_failures
        self.base_s = base_s
        self.max_s = max_s
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def wait_s(self, key: str, now: float) -> float:
        """Seconds before `key` may try again (0.0: now)."""
        failures = self._keys.get(key)
        if failures is None or failures.count <= self.free_failures:
            return 0.0
        delay = min(self.max_s, self.base_s * 2 ** min(failures.count - self.free_failures - 1, 62))
        return max(0.0, failures.last_s + delay - now)

    def failure(self, key: str, now: float) -> None:
        failures = self._keys.pop(key, None) or _Failures(count=0, last_s=now)
        failures.count += 1
        failures.last_s = now
        self._keys[key] = failures
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def success(self, key: str) -> None:
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)
