"""`ChunkTimer`'s samples against the link model, on a clock of our own: chunk pieces scripted as a
paced link on loose timers hands them over (a tick per pacing period, each releasing the bytes due
by the time it really ran; a queue's tail released whole when due within the tail lead, so up to the
lead early; every wake-up and every read of the player's loop late by a drawn amount), for a quiet
and a loaded loop. The sample must read the model's rate whatever the load (docs/LIVE-EMULATION.md,
"Early and late tails"); `test_live_samples.py` checks it on a real paced link."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from player.client.chunktimer import ChunkTimer

# Session seconds of a 10x live run (wall times x 10): the link's 2 ms pacing period and its 0.5 ms
# tail lead (netsim/pacing.py, docs/SHAPER.md); the live player's slack and lead for a chunk's last
# piece (player/client/liveplay.py `_TAIL_SLACK_WALL_S`, `_TAIL_LEAD_WALL_S`).
_QUANTUM_S = 0.02
_LINK_LEAD_S = 0.005
_BACK_TO_BACK_S = 0.0025  # the live player's back-to-back gap (liveplay.py `_BACK_TO_BACK_WALL_S`)
_SLACK_S = 0.02
_LEAD_S = 0.005
_BACK_TO_BACK_S = 0.0025  # the live player's back-to-back gap (liveplay.py `_BACK_TO_BACK_WALL_S`)
_CHUNK_PERIOD_S = 0.5  # a chunk made every 0.5 s, pushed as it is made

Lateness = Callable[[random.Random], float]
# (wake-up, read) lateness. Quiet: a wake-up up to a wall millisecond late (epoll rounds up), a read
# up to 0.2 ms. A loaded loop: wake-ups 0.5 ms later still on average, reads 0.3 ms late on average.
_QUIET: tuple[Lateness, Lateness] = (lambda r: r.uniform(0.0, 0.01), lambda r: r.uniform(0.0, 0.002))
_LOADED: tuple[Lateness, Lateness] = (lambda r: r.uniform(0.0, 0.01) + r.expovariate(1 / 0.005),
                                      lambda r: r.expovariate(1 / 0.003))


def _chunk(size: int) -> bytes:
    """A CMAF chunk of `size` bytes: a moof and an mdat."""
    return (32).to_bytes(4, "big") + b"moof" + bytes(24) + (size - 32).to_bytes(4, "big") + b"mdat" + bytes(size - 40)


def _paced(pushed_s: float, size: int, rate_Bps: float, rng: random.Random,
           lateness: tuple[Lateness, Lateness]) -> list[tuple[float, int]]:
    """The ticks (when each ran, the bytes it released) that carry `size` bytes pushed into an idle
    link at `pushed_s`: the first a half period on, then one a period after the last, or for the
    tail one lead before it is due; each runs late by a drawn wake-up lateness and releases what is
    due by then, or the whole rest when that is due within the lead (netsim/pacing.py)."""
    wake, _read = lateness
    ticks: list[tuple[float, int]] = []
    sent, now = 0, pushed_s
    at = pushed_s + _QUANTUM_S / 2
    while sent < size:
        at = max(min(at, pushed_s + size / rate_Bps - _LINK_LEAD_S), now)  # the tail's wake-up, if sooner
        now = at + wake(rng)
        rest = size - sent
        tail = rest <= rate_Bps * (now + _LINK_LEAD_S - pushed_s) - sent
        take = rest if tail else min(rest, int(rate_Bps * (now - pushed_s)) - sent)
        if take > 0:
            ticks.append((now, take))
            sent += take
        at = now + _QUANTUM_S
    return ticks


def _read(ticks: list[tuple[float, int]], rng: random.Random, lateness: tuple[Lateness, Lateness]
          ) -> list[tuple[float, int]]:
    """The pieces the player reads: each tick's bytes a drawn read lateness after it, together with
    any that ticks released before that read."""
    _wake, read = lateness
    pieces: list[tuple[float, int]] = []
    i = 0
    while i < len(ticks):
        at = max(ticks[i][0] + read(rng), pieces[-1][0] if pieces else 0.0)
        n = 0
        while i < len(ticks) and ticks[i][0] <= at:
            n += ticks[i][1]
            i += 1
        pieces.append((at, n))
    return pieces


def _samples(rates_Bps: list[float], lateness: tuple[Lateness, Lateness], *, seed: int = 1,
             chunk_bytes: tuple[int, int] = (18_000, 45_000), chunks: int = 8, slack_s: float = _SLACK_S,
             lead_s: float = _LEAD_S, hint_Bps: float | None = None,
             back_to_back_s: float = _BACK_TO_BACK_S) -> list[float]:
    """Each body's sample (bytes over active time, bytes/s): one whole-segment body of `chunks`
    chunks per rate, the next body hinted with the last one's rate, as the live player does."""
    rng = random.Random(seed)
    out = []
    hint = hint_Bps
    t0 = 1.0
    for rate in rates_Bps:
        sizes = [rng.randint(*chunk_bytes) for _ in range(chunks)]
        body = b"".join(_chunk(size) for size in sizes)
        timer = ChunkTimer(rate_hint_Bps=hint, requested_s=t0 - 0.05, tail_slack_s=slack_s,
                           tail_lead_s=lead_s, back_to_back_s=back_to_back_s)
        pos = 0
        for k, size in enumerate(sizes):
            for at, n in _read(_paced(t0 + k * _CHUNK_PERIOD_S, size, rate, rng, lateness), rng, lateness):
                timer.feed(at, body[pos:pos + n])
                pos += n
        assert pos == len(body) and len(timer.arrivals) == chunks
        active = timer.active_s()
        assert active is not None
        out.append(len(body) / active)
        hint = timer.rate_Bps
        t0 += chunks * _CHUNK_PERIOD_S + 1.0
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


@pytest.mark.parametrize(("lateness", "within"), [(_QUIET, 0.01), (_LOADED, 0.02)], ids=["quiet", "loaded"])
def test_samples_read_the_links_rate_with_early_and_late_tails(lateness: tuple[Lateness, Lateness],
                                                               within: float) -> None:
    # A 5 Mbit/s link at 10x: 18-45 kB chunks in 2-4 pieces, each tail up to the lead early or late.
    # Correcting late tails alone, the median read 1.049 (quiet) and 1.043 (loaded) of the rate.
    rate = 625_000.0
    ratios = [s / rate for s in _samples([rate] * 32, lateness)]
    assert _median(ratios) == pytest.approx(1.0, abs=within), ratios


def test_without_slack_tails_count_as_they_came() -> None:
    # The default (any player but the live one): a tail's timing is network time, early or late.
    rate = 625_000.0
    plain = _samples([rate] * 8, _LOADED, slack_s=0.0, lead_s=0.0)
    assert _median(plain) < 0.99 * rate  # the loaded loop's late wake-ups count


@pytest.mark.parametrize("factor", [2.0, 0.5], ids=["faster", "slower"])
def test_a_stale_rate_is_left_behind_when_the_link_changes(factor: float) -> None:
    # The previous body's rate is off by 2x: the faster link's 30-45 kB chunks come in two pieces,
    # so only their tails (earlier than the link's lead explains) can say it is faster; the slower
    # link's middle pieces say so at once.
    rate = 625_000.0 * factor
    samples = _samples([rate] * 4, _QUIET, hint_Bps=625_000.0, chunk_bytes=(30_000, 45_000))
    assert samples[-1] / rate == pytest.approx(1.0, abs=0.03), [s / rate for s in samples]


def test_pieces_a_late_loop_read_back_to_back_are_not_the_links_rate() -> None:
    # A 5 Mbit/s link at 10x hands over 30 kB chunks as 12.5 kB, 12.5 kB and a 5 kB tail, each as its
    # bytes crossed; on the second chunk the loop stalls and reads its first two pieces 0.5 ms apart
    # (session time), 18 ms after the first came. Counted, that pair read 25 MB/s and took the body's
    # rate 32% high, and the next body's part that comes in one piece was timed by it.
    rate = 625_000.0
    sizes = [12_500, 12_500, 5_000]
    body = b"".join(_chunk(sum(sizes)) for _ in range(4))

    def replay(back_to_back_s: float) -> tuple[float | None, float]:
        timer = ChunkTimer(rate_hint_Bps=rate, requested_s=0.95, tail_slack_s=_SLACK_S, tail_lead_s=_LEAD_S,
                           back_to_back_s=back_to_back_s)
        pos = 0
        for k in range(4):
            start, crossed = 1.0 + k * _CHUNK_PERIOD_S, 0
            times = [start + (crossed := crossed + size) / rate for size in sizes]
            if k == 1:
                times[0] += 0.018  # the loop stalls past the first piece, then reads both at once
                times[1] = times[0] + 0.0005
            for at, size in zip(times, sizes, strict=True):
                timer.feed(at, body[pos:pos + size])
                pos += size
        # The next body: an LL-HLS part of 20 kB that comes in one piece, timed by the rate carried over.
        part = ChunkTimer(rate_hint_Bps=timer.rate_Bps, requested_s=3.5, tail_slack_s=_SLACK_S,
                          tail_lead_s=_LEAD_S, back_to_back_s=back_to_back_s)
        part.feed(4.0, _chunk(20_000))
        active = part.active_s()
        assert active is not None
        return timer.rate_Bps, 20_000 / active

    rate_Bps, part_Bps = replay(_BACK_TO_BACK_S)
    assert rate_Bps == pytest.approx(rate, rel=0.01)
    assert part_Bps == pytest.approx(rate, rel=0.01)
    counted, counted_part = replay(0.0)  # every pair counted, as before
    assert counted is not None and counted > 1.3 * rate and counted_part > 1.3 * rate


def test_a_negative_back_to_back_gap_is_refused() -> None:
    with pytest.raises(ValueError, match="back-to-back gap must be >= 0 s, got -0.001"):
        ChunkTimer(back_to_back_s=-0.001)
