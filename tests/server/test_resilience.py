"""Rate limiter, circuit breaker, bulkheads by priority, per-client concurrency and failure backoff on a fake clock."""

from __future__ import annotations

import pytest

from server.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitState,
    ConcurrencyLimiter,
    FailureBackoff,
    Priority,
    RateDecision,
    RateLimiter,
)


def test_rate_limiter_allows_a_burst_then_refuses_with_the_wait_until_next_token() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.check("a", 0.0).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.check("a", 0.0)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.5)
    assert refused.retry_after_header == "1"


def test_rate_limiter_refills_at_the_configured_rate() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=1)
    assert limiter.check("a", 0.0).allowed
    assert not limiter.check("a", 0.25).allowed
    assert limiter.check("a", 0.5).allowed


def test_rate_limiter_keeps_one_bucket_per_client() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.check("a", 0.0).allowed
    assert not limiter.check("a", 0.0).allowed
    assert limiter.check("b", 0.0).allowed


def test_rate_limiter_forgets_least_recently_used_clients_beyond_its_bound() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, max_clients=2)
    for key in ("a", "b", "c"):
        limiter.check(key, 0.0)
    assert len(limiter) == 2
    assert limiter.check("a", 0.0).allowed  # forgotten, so back with a full bucket


@pytest.mark.parametrize(("wait_s", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (0.0, "1")])
def test_retry_after_header_rounds_up_to_whole_seconds(wait_s: float, header: str) -> None:
    assert RateDecision(allowed=False, retry_after_s=wait_s).retry_after_header == header


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=10.0)
    for _ in range(2):
        assert breaker.allow(0.0)
        breaker.record_failure(0.0)
    assert breaker.state(0.0) is CircuitState.CLOSED
    breaker.record_failure(0.0)
    assert breaker.state(0.0) is CircuitState.OPEN
    assert not breaker.allow(5.0)
    assert breaker.retry_after_s(5.0) == pytest.approx(5.0)


def test_breaker_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=1.0)
    breaker.record_failure(0.0)
    breaker.record_success(0.0)
    breaker.record_failure(0.0)
    assert breaker.state(0.0) is CircuitState.CLOSED


def test_breaker_half_open_lets_exactly_one_probe_and_closes_on_its_success() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=2.0)
    breaker.record_failure(0.0)
    assert not breaker.allow(1.9)
    assert breaker.state(2.0) is CircuitState.HALF_OPEN
    assert breaker.allow(2.0)
    assert not breaker.allow(2.0)  # the probe is in flight
    breaker.record_success(2.1)
    assert breaker.state(2.1) is CircuitState.CLOSED
    assert breaker.allow(2.1)


def test_breaker_failed_probe_opens_again_for_a_full_cool_down() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=2.0)
    breaker.record_failure(0.0)
    assert breaker.allow(2.0)
    breaker.record_failure(2.5)
    assert breaker.state(4.0) is CircuitState.OPEN
    assert breaker.allow(4.5)


def test_breaker_released_probe_lets_the_next_call_probe() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=1.0)
    breaker.record_failure(0.0)
    assert breaker.allow(1.0)
    breaker.release()
    assert breaker.allow(1.0)


def test_bulkhead_refuses_beyond_its_limit_and_frees_on_release() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.try_acquire() and bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    bulkhead.release()
    assert bulkhead.try_acquire()


def test_bulkhead_release_without_acquire_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        Bulkhead(1).release()


@pytest.mark.parametrize("kwargs", [{"rate_per_s": 0, "burst": 1}, {"rate_per_s": 1, "burst": 0}])
def test_rate_limiter_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


def test_bulkhead_keeps_its_reserved_slots_for_running_sessions() -> None:
    bulkhead = Bulkhead(4, reserved=1)
    assert [bulkhead.try_acquire(Priority.NEW) for _ in range(4)] == [True, True, True, False]  # shed at 3
    assert bulkhead.try_acquire(Priority.RUNNING)  # the reserved slot
    assert not bulkhead.try_acquire(Priority.RUNNING)
    bulkhead.release()
    assert not bulkhead.try_acquire(Priority.NEW) and bulkhead.try_acquire(Priority.RUNNING)


@pytest.mark.parametrize(("max_concurrent", "reserved"), [(0, 0), (4, 4), (4, -1)])
def test_bulkhead_rejects_nonsense_settings(max_concurrent: int, reserved: int) -> None:
    with pytest.raises(ValueError):
        Bulkhead(max_concurrent, reserved=reserved)


def test_concurrency_limiter_caps_each_key_and_forgets_idle_ones() -> None:
    limiter = ConcurrencyLimiter(2, max_keys=2)
    assert [limiter.try_acquire("a") for _ in range(3)] == [True, True, False]
    assert limiter.try_acquire("b")
    assert not limiter.try_acquire("c")  # the table is full: a third key waits for room
    limiter.release("b")
    assert limiter.in_flight("b") == 0 and limiter.try_acquire("c")
    with pytest.raises(RuntimeError):
        limiter.release("nobody")


def test_failure_backoff_is_free_then_doubles_up_to_its_cap_and_resets_on_success() -> None:
    backoff = FailureBackoff(free_failures=2, base_s=1.0, max_s=4.0)
    for _ in range(2):
        backoff.failure("alice", 0.0)
    assert backoff.wait_s("alice", 0.0) == 0.0
    waits = []
    for _ in range(5):
        backoff.failure("alice", 10.0)
        waits.append(backoff.wait_s("alice", 10.0))
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.wait_s("alice", 13.0) == pytest.approx(1.0) and backoff.wait_s("alice", 15.0) == 0.0
    assert backoff.wait_s("bob", 10.0) == 0.0
    backoff.success("alice")
    assert backoff.wait_s("alice", 10.0) == 0.0


def test_failure_backoff_bounds_the_keys_it_keeps() -> None:
    backoff = FailureBackoff(free_failures=0, base_s=1.0, max_s=1.0, max_keys=3)
    for i in range(10):
        backoff.failure(f"user{i}", 0.0)
    assert len(backoff) == 3 and backoff.wait_s("user9", 0.0) == 1.0 and backoff.wait_s("user0", 0.0) == 0.0
