"""A live player's requests besides media on the link they share with its media transfers.

One answer at a time, as the players ask for them: the DASH player's (`ControlFlow`, player/client/
liveplay.py `_refresh_loop`) the MPD a refresh period after the previous MPD answer had crossed
(dash.js's ManifestUpdater: a clock re-sync meanwhile does not push it back, only a re-sync still
crossing then does), and after an MPD, when the clock sync schedule says so, the UTCTiming answer(s),
each a round trip after its request; the HLS player's playlist reloads (`live_playlists.PlaylistFlow`).
An answer crossing alone has the link to itself; one crossing while a media transfer does shares the
link fairly with it (`LinkModel.shared_finish`, the shaper's per-pipe fair share): the media ends later
by exactly the answer's bytes (when the answer is the smaller), and the answer ends later than alone
(up to twice its time), so the player's next request moves as the emulated player's does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from netsim.link import LinkModel
from player.clocksync import RESYNC_REQUESTS, ClockSyncSchedule


@dataclass(slots=True)
class Answer:
    first_s: float  # session time its first byte can cross (the request's round trip over)
    left_bytes: float  # not yet crossed, as of max(first_s, the flow's clock)
    tag: int  # the flow's own: ControlFlow's UTCTiming answers to go, itself included (0: the MPD)


class AnswerFlow:
    """The answers of one live session besides media (module docstring), in session time: `transfer`
    times a media transfer with the answers sharing the link, `advance` moves them on an otherwise
    idle link. Calls come in time order (the media transfers of one session, one after another). A
    subclass queues the player's requests (`_queue`) and says what it asks next once one has crossed
    (`_crossed`)."""

    def __init__(self, link: LinkModel, *, offset_s: float, planned: list[tuple[float, int]]) -> None:
        self._link = link
        self._offset_s = offset_s  # trace time - session time
        self.planned = planned  # every answer requested so far: (first byte's session time, bytes)
        self._now_s = -math.inf  # the answers' state is known up to here
        self._answer: Answer | None = None

    def _queue(self, first_s: float, size_bytes: int, tag: int = 0) -> None:
        """The player's next answer: its first byte can cross from `first_s` on."""
        self._answer = Answer(first_s=first_s, left_bytes=float(size_bytes), tag=tag)
        self.planned.append((first_s, size_bytes))

    def _crossed(self, answer: Answer, end_s: float) -> None:
        """`answer` has crossed at `end_s`: queue the player's next request, if any."""
        raise NotImplementedError

    def _done(self, answer: Answer, end_s: float) -> None:
        self._answer = None
        self._now_s = end_s
        self._crossed(answer, end_s)

    def _bytes_until(self, time_s: float) -> float:
        return self._link.bytes_until(time_s + self._offset_s)

    def _finish(self, start_s: float, size_bytes: float) -> float:
        return self._link.finish_time(start_s + self._offset_s, size_bytes) - self._offset_s

    def _cross_current(self) -> bool:
        """Cross the answer on the link now on an idle link; False if there is none."""
        answer = self._answer
        if answer is None:
            return False
        self.advance(self._finish(max(answer.first_s, self._now_s), answer.left_bytes))
        return True

    def advance(self, until_s: float) -> None:
        """Cross the answers on an idle link up to `until_s`."""
        while (answer := self._answer) is not None and answer.first_s <= until_s:
            start = max(answer.first_s, self._now_s)
            end = self._finish(start, answer.left_bytes)
            if end > until_s:
                if until_s > start:
                    answer.left_bytes -= self._bytes_until(until_s) - self._bytes_until(start)
                break
            self._done(answer, end)
        self._now_s = max(self._now_s, until_s)

    def transfer(self, start_s: float, size_bytes: float) -> float:
        """When a media transfer of `size_bytes` that can receive from `start_s` on has crossed, the
        answers on the link meanwhile sharing it fairly."""
        self.advance(start_s)
        at, left = start_s, float(size_bytes)
        offset = self._offset_s
        while (answer := self._answer) is not None:
            if answer.first_s > at:  # the media alone until the answer's first byte, if it ends later
                end = self._finish(at, left)
                if end <= answer.first_s:
                    break
                left -= self._bytes_until(answer.first_s) - self._bytes_until(at)
                at = self._now_s = answer.first_s
                continue
            answer_end, media_end = self._link.shared_finish(at + offset, answer.left_bytes, left)
            if answer_end > media_end:  # the media is done first; the answer keeps what is left
                answer.left_bytes -= left
                self._now_s = media_end - offset
                return media_end - offset
            left -= answer.left_bytes  # as many bytes as the answer had meanwhile
            at = answer_end - offset
            self._done(answer, at)
            if left <= 1e-9 * max(size_bytes, 1.0):
                return at
        else:
            end = self._finish(at, left)
        self._now_s = max(self._now_s, end)
        return end


class ControlFlow(AnswerFlow):
    """The control answers of one DASH live session (module docstring), in session time: `transfer`
    times a media transfer with the answers sharing the link, `advance` moves them on an otherwise
    idle link. Calls come in time order (the media transfers of one session, one after another)."""

    def __init__(self, link: LinkModel, *, offset_s: float, rtt: Callable[[float], float], manifest_bytes: int,
                 sync_bytes: int, period_s: float, first_request_s: float, sync: ClockSyncSchedule,
                 planned: list[tuple[float, int]]) -> None:
        super().__init__(link, offset_s=offset_s, planned=planned)
        self._rtt = rtt
        self._manifest_bytes = manifest_bytes
        self._sync_bytes = sync_bytes
        self._period_s = period_s
        self._sync = sync
        self.resyncs_s: list[float] = []  # session time each clock re-sync began
        # session time each refresh was done: its MPD answer crossed, and its re-sync when it had one
        # (the player's `manifest_refresh` event)
        self.refreshed_s: list[float] = []
        self._loaded_s = -math.inf  # when the last MPD answer had crossed
        self._request(first_request_s, 0)

    def _request(self, at_s: float, syncs_left: int) -> None:
        size = self._sync_bytes if syncs_left else self._manifest_bytes
        self._queue(at_s + self._rtt(at_s), size, syncs_left)

    def _crossed(self, answer: Answer, end_s: float) -> None:
        """`answer` has crossed at `end_s`: the player's next request."""
        if answer.tag:  # a UTCTiming answer
            if answer.tag > 1:
                self._request(end_s, answer.tag - 1)
                return
            self._sync.synced(end_s, 0.0)
        else:
            self._loaded_s = end_s
            if self._sync_bytes and self._sync.due(end_s):
                self.resyncs_s.append(end_s)
                self._request(end_s, RESYNC_REQUESTS)
                return
        self.refreshed_s.append(end_s)
        self._request(max(self._loaded_s + self._period_s, end_s), 0)
