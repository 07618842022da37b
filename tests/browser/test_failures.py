"""tests/browser/failures.py: which failed requests of a browser run a test accepts (a player's switch
abort, the driver's aborts after done) and which it fails on. No browser needed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.failures import ABORTED, SWITCH_WINDOW_S, segment_name, sort_failures

EDGE = "http://127.0.0.1:39791/s/eyJ0b2tlbiI6MX0.c2ln/clip"
DONE_MS = 1_796_538_848_100.0
ABORT_MS = 1_796_538_842_700.0  # 5.4 s before the page was done


def failure(path: str, *, seq: int = 10, t_ms: float = ABORT_MS, error: str = ABORTED,
            method: str = "GET") -> dict[str, Any]:
    return {"url": f"{EDGE}/{path}", "method": method, "error": error, "type": "fetch", "started_ms": t_ms - 90,
            "t_ms": t_ms, "seq": seq}


def response(path: str, *, seq: int, status: int = 200, t_ms: float = ABORT_MS + 20) -> dict[str, Any]:
    return {"url": f"{EDGE}/{path}", "method": "GET", "status": status, "t_ms": t_ms, "seq": seq}


def switch(from_bps: int | None, to_bps: int, *, t_ms: float = ABORT_MS - 3) -> dict[str, Any]:
    return {"t_ms": t_ms, "from_bps": from_bps, "to_bps": to_bps, "height": 540}


# Wave 12's failed make test (Shaka 5.2.12, clip): the first video segment at 360p aborted as Shaka's first
# estimate moved it up, the same segment then fetched at 540p.
W12_RESPONSES = [response("manifest.mpd", seq=1), response("video/v360p/init.mp4", seq=2),
                 response("video/v360p/1.m4s", seq=3), response("audio/a128k/1.m4s", seq=11),
                 response("video/v540p/init.mp4", seq=12), response("video/v540p/1.m4s", seq=13),
                 response("video/v540p/2.m4s", seq=14)]
W12_SWITCHES = [switch(None, 701144, t_ms=ABORT_MS - 150), switch(701144, 1404544)]


def test_the_w12_shaka_abort_is_a_switch_abort_not_a_failure() -> None:
    sorted_ = sort_failures([failure("video/v360p/1.m4s")], [], W12_RESPONSES, W12_SWITCHES)
    assert [f["url"] for f in sorted_.switch_aborts] == [f"{EDGE}/video/v360p/1.m4s"]
    assert sorted_.unexplained == () and sorted_.after_done == ()


def test_dashjs_abandoning_a_segment_down_is_a_switch_abort() -> None:
    responses = [response("video/v360p/9.m4s", seq=40), response("video/v180p/10.m4s", seq=42)]
    sorted_ = sort_failures([failure("video/v360p/10.m4s", seq=41)], [], responses, [switch(1607000, 268000)])
    assert len(sorted_.switch_aborts) == 1 and sorted_.unexplained == ()


def test_shaka_aborting_the_old_renditions_init_segment_on_the_switch_is_a_switch_abort() -> None:
    # Measured (quiet run 6 of 10, 08:16 UTC): the 360p init segment still in flight when Shaka switched
    # up; its SegmentPrefetch aborted it with the first segment, 9 ms after the switch, then fetched 540p's.
    sorted_ = sort_failures([failure("video/v360p/init.mp4")], [], W12_RESPONSES, W12_SWITCHES)
    assert len(sorted_.switch_aborts) == 1 and sorted_.unexplained == ()


def test_an_ll_hls_part_refetched_from_another_rendition_is_a_switch_abort() -> None:
    responses = [response("video/v540p/12.3.m4s", seq=20)]
    sorted_ = sort_failures([failure("video/v360p/12.3.m4s")], [], responses, [switch(701144, 1404544)])
    assert len(sorted_.switch_aborts) == 1


@pytest.mark.parametrize(("why", "failed", "responses", "switches"), [
    ("not refetched from another rendition", failure("video/v360p/1.m4s"),
     [r for r in W12_RESPONSES if "v540p/1.m4s" not in r["url"]], W12_SWITCHES),
    ("refetched from the same rendition: a retry, not a switch", failure("video/v360p/1.m4s"),
     [*W12_RESPONSES[:5], response("video/v360p/1.m4s", seq=13)], W12_SWITCHES),
    ("the other rendition's answer came before the abort", failure("video/v360p/1.m4s", seq=13),
     W12_RESPONSES, W12_SWITCHES),
    ("the other rendition answered with an error", failure("video/v360p/1.m4s"),
     [*W12_RESPONSES[:5], response("video/v540p/1.m4s", seq=13, status=404)], W12_SWITCHES),
    ("no switch near it", failure("video/v360p/1.m4s"), W12_RESPONSES,
     [switch(701144, 1404544, t_ms=ABORT_MS - SWITCH_WINDOW_S * 1000 - 500)]),
    ("only the player's first choice, no switch", failure("video/v360p/1.m4s"), W12_RESPONSES, W12_SWITCHES[:1]),
    ("a 'switch' to the same rendition", failure("video/v360p/1.m4s"), W12_RESPONSES, [switch(701144, 701144)]),
    ("not an abort: the connection broke", failure("video/v360p/1.m4s", error="net::ERR_CONNECTION_RESET"),
     W12_RESPONSES, W12_SWITCHES),
    ("an audio segment (the page reports video switches only)", failure("audio/a128k/1.m4s"),
     [*W12_RESPONSES, response("audio/a64k/1.m4s", seq=15)], W12_SWITCHES),
    ("an init segment no other rendition's init followed", failure("video/v360p/init.mp4", seq=12),
     W12_RESPONSES, W12_SWITCHES),
    ("the audio init segment", failure("audio/a128k/init.mp4"), [*W12_RESPONSES, response("audio/a64k/init.mp4", seq=15)],
     W12_SWITCHES),
    ("the manifest", failure("manifest.mpd"), W12_RESPONSES, W12_SWITCHES),
    ("a license request", failure("license", method="POST"), W12_RESPONSES, W12_SWITCHES),
    ("a part against a whole segment of the same number", failure("video/v360p/1.2.m4s"), W12_RESPONSES,
     W12_SWITCHES),
])
def test_an_abort_without_the_evidence_of_a_switch_is_a_failure(why: str, failed: dict[str, Any],
                                                                 responses: list[dict[str, Any]],
                                                                 switches: list[dict[str, Any]]) -> None:
    sorted_ = sort_failures([failed], [], responses, switches)
    assert sorted_.switch_aborts == () and sorted_.unexplained == (failed,), why


def test_aborts_after_the_driver_stopped_the_page_are_kept_apart_and_other_errors_there_fail() -> None:
    closed = failure("video/v540p/3.m4s", seq=30, t_ms=DONE_MS + 150)
    broken = failure("audio/a128k/3.m4s", seq=31, t_ms=DONE_MS + 160, error="net::ERR_CONNECTION_RESET")
    sorted_ = sort_failures([], [closed, broken], W12_RESPONSES, W12_SWITCHES)
    assert sorted_.after_done == (closed,) and sorted_.unexplained == (broken,) and sorted_.switch_aborts == ()


def test_the_summary_says_when_each_abort_came_and_what_the_player_said_of_it() -> None:
    aborted = failure("video/v360p/1.m4s")
    closed = failure("video/v540p/3.m4s", seq=30, t_ms=DONE_MS + 150)
    sorted_ = sort_failures([aborted], [closed], W12_RESPONSES, W12_SWITCHES)
    line = sorted_.summary(DONE_MS, [{"t_ms": ABORT_MS, "url": aborted["url"], "why": "aborted"}])
    assert line == ("1 switch aborts [video/v360p/1.m4s at -5.40 s (player: aborted)], 1 aborted after done "
                    "[video/v540p/3.m4s at +0.15 s], 0 unexplained")


@pytest.mark.parametrize(("path", "name"), [
    ("video/v360p/1.m4s", ("video", "v360p", "1")),
    ("audio/a128k/12.m4s", ("audio", "a128k", "12")),
    ("video/v360p/12.3.m4s", ("video", "v360p", "12.3")),
    ("video/v360p/init.mp4", ("video", "v360p", "init")),
    ("video/v360p/init.m4s", None),
    ("video/v360p/playlist.m3u8", None),
    ("manifest.mpd", None),
])
def test_segment_names_are_read_from_our_layout_only(path: str, name: tuple[str, str, str] | None) -> None:
    found = segment_name(f"{EDGE}/{path}?_HLS_msn=3")
    assert (None if found is None else (found.kind, found.rendition, found.number)) == name
