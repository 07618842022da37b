"""The edge's byte-bounded LRU and request coalescing."""

from __future__ import annotations

import asyncio

import pytest

from server.cache import ByteLRU, Coalescer


def test_lru_evicts_least_recently_used_first_and_never_exceeds_its_bound() -> None:
    lru: ByteLRU[str] = ByteLRU(max_bytes=100)
    lru.put("a", "A", 40)
    lru.put("b", "B", 40)
    assert lru.get("a") == "A"  # a is now the most recently used
    lru.put("c", "C", 40)
    assert "b" not in lru
    assert list(lru.keys()) == ["a", "c"]
    assert lru.used_bytes == 80
    assert lru.evictions == 1


@pytest.mark.parametrize("sizes", [[10] * 30, [70, 20, 60, 5, 90, 1, 100, 33], [50, 50, 50, 1, 99]])
def test_lru_bound_holds_for_any_sequence_of_puts(sizes: list[int]) -> None:
    lru: ByteLRU[int] = ByteLRU(max_bytes=100)
    for i, size in enumerate(sizes):
        assert lru.put(f"k{i}", i, size)
        assert lru.used_bytes <= 100
        assert f"k{i}" in lru  # the newest entry always stays
    assert lru.used_bytes == sum(size for i, size in enumerate(sizes) if f"k{i}" in lru)


def test_lru_refuses_an_entry_bigger_than_the_whole_bound_without_evicting() -> None:
    lru: ByteLRU[str] = ByteLRU(max_bytes=100)
    lru.put("a", "A", 60)
    assert not lru.put("big", "B", 101)
    assert "big" not in lru and "a" in lru
    assert lru.evictions == 0


def test_lru_replacing_a_key_accounts_its_new_size() -> None:
    lru: ByteLRU[str] = ByteLRU(max_bytes=100)
    lru.put("a", "A1", 60)
    lru.put("a", "A2", 30)
    assert lru.used_bytes == 30 and lru.get("a") == "A2"
    assert lru.pop("a") == "A2" and lru.used_bytes == 0


def test_lru_peek_does_not_count_as_a_use() -> None:
    lru: ByteLRU[str] = ByteLRU(max_bytes=2)
    lru.put("a", "A", 1)
    lru.put("b", "B", 1)
    assert lru.peek("a") == "A"
    lru.put("c", "C", 1)
    assert "a" not in lru and "b" in lru


def test_lru_rejects_a_negative_bound() -> None:
    with pytest.raises(ValueError):
        ByteLRU(max_bytes=-1)


async def test_coalescer_runs_one_fetch_for_concurrent_callers() -> None:
    coalescer: Coalescer[str] = Coalescer()
    release = asyncio.Event()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "body"

    waiters = [asyncio.create_task(coalescer.run("k", fetch)) for _ in range(20)]
    await asyncio.sleep(0)
    assert coalescer.in_flight("k")
    release.set()
    results = await asyncio.gather(*waiters)
    assert calls == 1
    assert [body for body, _ in results] == ["body"] * 20
    assert sum(leader for _, leader in results) == 1
    assert coalescer.coalesced == 19
    assert not coalescer.in_flight("k")


async def test_coalescer_gives_the_failure_to_every_waiter_and_then_retries() -> None:
    coalescer: Coalescer[str] = Coalescer()
    release = asyncio.Event()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise ConnectionError("origin down")

    waiters = [asyncio.create_task(coalescer.run("k", failing)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    with pytest.raises(ConnectionError):
        await coalescer.run("k", failing)  # nothing stays in flight: the next caller fetches again
    assert calls == 2


async def test_coalescer_fetch_survives_the_leader_being_cancelled() -> None:
    coalescer: Coalescer[str] = Coalescer()
    release = asyncio.Event()

    async def fetch() -> str:
        await release.wait()
        return "body"

    leader = asyncio.create_task(coalescer.run("k", fetch))
    await asyncio.sleep(0)
    follower = asyncio.create_task(coalescer.run("k", fetch))
    await asyncio.sleep(0)
    leader.cancel()
    release.set()
    assert (await follower) == ("body", False)
    with pytest.raises(asyncio.CancelledError):
        await leader
