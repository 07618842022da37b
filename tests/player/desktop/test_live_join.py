"""A live window's join waits (bounded) for a decoded frame and the sound at the playhead, so the
picture and the sound start together; a channel whose audio never decodes starts without it after
`JOIN_WAIT_S` and says so once (the window logs `audio_missing`). No display needed."""

from __future__ import annotations

import pytest

from player.desktop.livejoin import JOIN_AUDIO_S, JOIN_WAIT_S, LiveJoin
from player.desktop.livesound import sound_lines


def test_the_join_waits_for_a_frame_and_the_sound_then_starts_with_both() -> None:
    missing: list[float] = []
    join = LiveJoin(has_audio=True, on_without_audio=missing.append)
    pcm = {"s": 0.0}
    assert not join.ready(10.0, frame=False, pcm_s=lambda: pcm["s"])
    assert not join.ready(10.2, frame=True, pcm_s=lambda: pcm["s"])  # the picture alone: not yet
    pcm["s"] = JOIN_AUDIO_S / 2
    assert not join.ready(10.4, frame=True, pcm_s=lambda: pcm["s"])  # too little sound to start on
    pcm["s"] = JOIN_AUDIO_S
    assert join.ready(10.6, frame=True, pcm_s=lambda: pcm["s"])
    assert join.waited_s == pytest.approx(0.6) and join.with_audio is True and missing == []
    pcm["s"] = 0.0
    assert join.ready(20.0, frame=False, pcm_s=lambda: pcm["s"])  # joined: the session leads from now on


def test_audio_that_never_comes_starts_the_picture_alone_after_the_bound_and_says_so_once() -> None:
    missing: list[float] = []
    join = LiveJoin(has_audio=True, on_without_audio=missing.append)
    assert not join.ready(5.0, frame=True, pcm_s=lambda: 0.0)
    assert not join.ready(5.0 + JOIN_WAIT_S - 0.01, frame=True, pcm_s=lambda: 0.0)
    assert join.ready(5.0 + JOIN_WAIT_S, frame=True, pcm_s=lambda: 0.0)
    assert join.ready(9.0, frame=True, pcm_s=lambda: 0.0)
    assert missing == [pytest.approx(JOIN_WAIT_S)] and join.with_audio is False


def test_a_stream_without_audio_joins_on_its_first_frame_and_a_frame_that_never_comes_is_bounded() -> None:
    join = LiveJoin(has_audio=False)
    assert not join.ready(1.0, frame=False, pcm_s=lambda: 0.0)
    assert join.ready(1.1, frame=True, pcm_s=lambda: 0.0) and join.with_audio is True
    stuck = LiveJoin(has_audio=True)
    assert not stuck.ready(0.0, frame=False, pcm_s=lambda: 1.0)
    assert stuck.ready(JOIN_WAIT_S, frame=False, pcm_s=lambda: 1.0) and stuck.with_audio is True
    with pytest.raises(ValueError, match="wait_s must be > 0"):
        LiveJoin(has_audio=True, wait_s=0.0)


def test_the_overlay_says_when_the_join_started_without_sound() -> None:
    join = LiveJoin(has_audio=True)
    join.ready(0.0, frame=True, pcm_s=lambda: 0.0)
    join.ready(JOIN_WAIT_S, frame=True, pcm_s=lambda: 0.0)
    summary = {"audio": "played", "heard_s": 3.0, "silence_s": 2.0, "restarts": 1, "ratio": 1.0,
               "drift_ms": {"p95": 5.0}, "errors": [], "join": {"waited_s": join.waited_s, "with_audio": False}}
    assert any(line.startswith("audio missing at the join") for line in sound_lines(summary))
