"""Who failed a request the browser reports as failed (run_player.mjs's `failed`, `failed_after_done`).

A browser test fails on a network error, an HTTP error, an abort of a manifest, playlist or license, and
an abort the player did not decide. Two kinds of `net::ERR_ABORTED` are not failures:

- a **switch abort**: the player cancelled a video segment (or init segment) of the rendition it was
  leaving and fetched the same one from another rendition (Shaka 5.2's SegmentPrefetch.switchStream on an
  ABR switch, dash.js's AbandonRequestsRule). Known by evidence, not by its URL's suffix: see
  `is_switch_abort`;
- an abort once the driver stopped the page (screenshot, `browser.close()`): the driver's doing, kept
  apart in `after_done` and printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ABORTED = "net::ERR_ABORTED"
# A switch the page reported (its Date.now()) this close to the driver's stamp of the abort (its Date.now(),
# heard over the DevTools protocol after the fact). Shaka aborts inside the switch and dispatches its
# 'adaptation' event a microtask later; dash.js abandons and requests the switch in one call.
SWITCH_WINDOW_S = 2.0
# Our segment, LL-HLS part and init segment names (server/formats/names.py, server/live/hls.py):
# `.../video|audio/<rendition>/<n>.m4s`, `.../<n>.<c>.m4s` and `.../init.mp4` (Shaka aborts the old
# rendition's init segment too when it is still in flight: its SegmentPrefetch clears both). Manifests,
# playlists, licenses and /time never match: an abort of one of them is always a failure.
_SEGMENT = re.compile(r"/(?P<kind>video|audio)/(?P<rendition>[^/]+)/"
                      r"(?:(?P<number>[0-9]+(?:\.[0-9]+)?)\.m4s|(?P<init>init)\.mp4)$")
# The page reports switches of the video rendition only (page/player.js, `switches`).
_SWITCHED_KINDS = frozenset({"video"})

Entry = dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentName:
    """A media segment (LL-HLS part, init segment) URL in our layout: its media kind, rendition and number."""

    kind: str
    rendition: str
    number: str  # "<n>", "<n>.<c>" (a part) or "init"


def segment_name(url: str) -> SegmentName | None:
    """The segment `url` names, or None for anything else (a manifest, a playlist, a license ...)."""
    found = _SEGMENT.search(urlsplit(url).path)
    if found is None:
        return None
    return SegmentName(kind=found["kind"], rendition=found["rendition"], number=found["number"] or found["init"])


def switch_near(failure: Entry, switches: Sequence[Entry]) -> Entry | None:
    """The page's switch of rendition (not its first choice) nearest to `failure`, if within SWITCH_WINDOW_S."""
    real = [s for s in switches if s.get("from_bps") is not None and s.get("to_bps") != s["from_bps"]]
    nearest = min(real, key=lambda s: abs(failure["t_ms"] - s["t_ms"]), default=None)
    if nearest is None or abs(failure["t_ms"] - nearest["t_ms"]) > SWITCH_WINDOW_S * 1000:
        return None
    return nearest


def refetch_of(failure: Entry, responses: Sequence[Entry]) -> Entry | None:
    """The first 2xx response, heard after `failure`, for the same segment from another rendition."""
    lost = segment_name(failure["url"])
    if lost is None:
        return None
    for response in sorted(responses, key=lambda r: r["seq"]):
        name = segment_name(response["url"])
        if (response["seq"] > failure["seq"] and 200 <= response["status"] < 300 and name is not None
                and (name.kind, name.number) == (lost.kind, lost.number) and name.rendition != lost.rendition):
            return response
    return None


def is_switch_abort(failure: Entry, responses: Sequence[Entry], switches: Sequence[Entry]) -> bool:
    """True if the player itself cancelled `failure` as part of a quality switch: an `net::ERR_ABORTED` GET
    of a video segment (or init segment), a switch of rendition the page reported within SWITCH_WINDOW_S of
    it, and the same segment then answered from another rendition."""
    name = segment_name(failure["url"])
    return (failure.get("error") == ABORTED and failure.get("method") == "GET" and name is not None
            and name.kind in _SWITCHED_KINDS and switch_near(failure, switches) is not None
            and refetch_of(failure, responses) is not None)


@dataclass(frozen=True, kw_only=True, slots=True)
class Failures:
    """The failed requests of one browser run, by who failed them."""

    switch_aborts: tuple[Entry, ...]  # while playing: the player's ABR decision (is_switch_abort)
    after_done: tuple[Entry, ...]  # net::ERR_ABORTED once the driver stopped the page: the driver's doing
    unexplained: tuple[Entry, ...]  # everything else: a browser test requires none

    def summary(self, done_ms: float | None, cancelled: Sequence[Entry] = ()) -> str:
        """One line for a test's output: each switch abort and driver abort, its time from the page's
        `done` (negative: before it), and what the player said of that URL (page/player.js, `cancelled`)."""
        said = {c.get("url"): c.get("why") for c in cancelled}

        def one(entry: Entry) -> str:
            when = f" at {(entry['t_ms'] - done_ms) / 1000:+.2f} s" if done_ms is not None else ""
            player = f" (player: {said[entry['url']]})" if entry["url"] in said else ""
            return f"{_short(entry['url'])}{when}{player}"

        def each(entries: tuple[Entry, ...]) -> str:
            return ", ".join(one(f) for f in entries)
        return (f"{len(self.switch_aborts)} switch aborts [{each(self.switch_aborts)}], {len(self.after_done)} "
                f"aborted after done [{each(self.after_done)}], {len(self.unexplained)} unexplained")


def _short(url: str) -> str:
    return "/".join(urlsplit(url).path.split("/")[-3:])


def sort_failures(failed: Sequence[Entry], failed_after_done: Sequence[Entry], responses: Sequence[Entry],
                  switches: Sequence[Entry]) -> Failures:
    """Sort a run's failures: `failed` (while the page played) into switch aborts and unexplained ones,
    `failed_after_done` into the driver's aborts and unexplained ones (any error but an abort)."""
    playing = [(f, is_switch_abort(f, responses, switches)) for f in failed]
    stopping = [(f, f.get("error") == ABORTED) for f in failed_after_done]
    return Failures(switch_aborts=tuple(f for f, ok in playing if ok), after_done=tuple(f for f, ok in stopping if ok),
                    unexplained=tuple(f for f, ok in playing + stopping if not ok))
