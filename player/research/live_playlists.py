"""The live HLS player's playlist reloads on the link they share with its media (`ControlTraffic.reload`
"part", "segment" or "poll"; player/client/hlslive.py).

One reload at a time, as the player's refresh loop asks: a blocking reload (`_HLS_msn`/`_HLS_part`)
goes out as the previous answer lands and the server holds it until what that answer hinted is
published; a poll goes out a target duration after a reload that listed a new segment, half of one
after one that did not (RFC 8216 6.3.4). Each answer crosses as `live_control.AnswerFlow` crosses
answers: alone on an idle link, sharing it fairly with a media transfer (a part streaming as the
reload held for the next part is answered) it meets, so it lands later than alone and with it the
listing it brings and the player's next reload.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from netsim.link import LinkModel
from player.live import LiveSchedule
from player.research.live_control import Answer, AnswerFlow

# Of a request's round trip, the share an answer the server held for a publication still has to
# cross after it leaves the server, in the HLS twin: none. The emulated link puts the whole round trip
# on the request (`netsim.shaper.ShaperConfig.delay_split` "request", as the link model's finish time
# after `rtt` does), so a held LL-HLS part or playlist crosses from its publication on (emulated:
# -3 / 13 ms median / p90 after it, docs/LIVE-EMULATION.md); half a round trip made the twin's 40 ms
# later. The DASH twin's chunks keep half, as its emulation does (docs/LIVE-SIM.md, "HLS playlists on the
# shared link").
HELD_ANSWER_RTTS = 0.0


class PlaylistFlow(AnswerFlow):
    """The playing rendition's playlist reloads of one live HLS session (module docstring), in session
    time. The join's `join_reloads` (a plain one, then blocking ones) cross one after another from
    `start_s` on an idle link (`joined_s`: when the last had); with none, the playlist the player
    joined with is taken as received at `start_s`. Then, if `refreshes`, the reload loop from
    `joined_s + period_s` (blocking reloads: `period_s` 0). `sent_s` and `listed_s` hold each reload's
    answer leaving the server and having crossed, in order (the join's included)."""

    def __init__(self, link: LinkModel, *, offset_s: float, rtt: Callable[[float], float], schedule: LiveSchedule,
                 reload: str, playlist_bytes: int, period_s: float, start_s: float, join_reloads: int,
                 refreshes: bool, planned: list[tuple[float, int]]) -> None:
        super().__init__(link, offset_s=offset_s, planned=planned)
        self._rtt = rtt
        self._schedule = schedule
        self._poll = reload == "poll"
        self._unit_s = schedule.chunk_s if reload == "part" else schedule.segment_duration_s
        self._bytes = playlist_bytes
        self._period_s = period_s
        self.sent_s: list[float] = []
        self.listed_s: list[float] = []
        self._hint_s = -math.inf  # the publish time the last answer's hint waits for
        self._newest = -math.inf  # the newest segment a poll listed
        self._looping = False  # the join's reloads ask for nothing after them
        joined = self._now_s = start_s
        for k in range(join_reloads):
            self._request(joined, blocking=k > 0)
            self._cross_current()
            joined = self.listed_s[-1]
        self.joined_with = 0  # 1: `sent_s` starts with the playlist the player joined with (not a reload)
        if not join_reloads:  # it crossed just before the join, alone: it left the server its crossing earlier
            crossing = self._finish(joined, playlist_bytes) - joined  # at the rate it joined at
            self.sent_s.append(joined - crossing - HELD_ANSWER_RTTS * rtt(joined))
            self.listed_s.append(joined)
            self.joined_with = 1
            self._hint_s = self._next_publish(self.sent_s[-1])
        self.joined_s = joined
        if refreshes:
            self._looping = True
            self._request(joined + period_s, blocking=not self._poll)

    def _next_publish(self, at_s: float) -> float:
        """When the first part ("part") or segment published after `at_s` is, on the session clock."""
        start = self._schedule.availability_start_s
        return start + (math.floor((at_s - start) / self._unit_s + 1e-9) + 1) * self._unit_s

    def _request(self, at_s: float, *, blocking: bool) -> None:
        """A reload requested at `at_s`: the server has it a round trip later, and `blocking` holds it
        until what the last playlist hinted is published; its answer crosses as it leaves (the emulated
        link puts the whole round trip on the request: `HELD_ANSWER_RTTS`)."""
        rtt = self._rtt(at_s)
        sent = at_s + (1 - HELD_ANSWER_RTTS) * rtt
        if blocking:
            sent = max(sent, self._hint_s)
        self._hint_s = self._next_publish(sent)
        self.sent_s.append(sent)
        self._queue(sent + HELD_ANSWER_RTTS * rtt, self._bytes)

    def _crossed(self, answer: Answer, end_s: float) -> None:
        self.listed_s.append(end_s)
        if not self._looping:
            return
        if self._poll:
            schedule = self._schedule
            newest = math.floor((self.sent_s[-1] - schedule.availability_start_s) / schedule.segment_duration_s + 1e-9)
            changed = newest > self._newest
            self._newest = max(self._newest, newest)
            self._request(end_s + self._period_s / (1 if changed else 2), blocking=False)
        else:  # the next request goes out as the answer lands
            self._request(end_s, blocking=True)

    def _index(self, published_s: float) -> int:
        return bisect.bisect_left(self.sent_s, published_s - 1e-9)

    def listed_by(self, published_s: float) -> float:
        """When the first playlist made after `published_s` (listing what was published then) has
        crossed; -inf if none will. Crosses the answers until then on an otherwise idle link: the
        caller has no media on it before that playlist lands (it waits for the listing)."""
        if not math.isfinite(published_s):  # nothing is published at an infinite time: no playlist lists it
            return -math.inf
        while (k := self._index(published_s)) >= len(self.listed_s):
            if not self._cross_current():
                return -math.inf
        return self.listed_s[k]

    def crossed_by(self, published_s: float, at_s: float) -> bool:
        """Whether the first playlist made after `published_s` had crossed by `at_s` (the link idle
        from the last media transfer to `at_s`)."""
        self.advance(at_s)
        k = self._index(published_s)
        return k < len(self.listed_s) and self.listed_s[k] <= at_s
