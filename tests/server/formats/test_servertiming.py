"""The publication wait a live server states in `Server-Timing` (W3C Server Timing), as written and read."""

from __future__ import annotations

import pytest

from server.formats.servertiming import head_end, head_publish_wait_s, publish_wait_header, publish_wait_s


def test_what_is_written_is_read_back() -> None:
    assert publish_wait_header(0.8125) == "publish-wait;dur=812.500"
    assert publish_wait_s(publish_wait_header(0.8125)) == pytest.approx(0.8125)
    assert publish_wait_header(-1.0) == "publish-wait;dur=0.000"


@pytest.mark.parametrize("value,wait_s", [
    (None, 0.0), ("", 0.0), ("db;dur=53, app;dur=47.2", 0.0),  # other metrics are not a wait
    ('cache;desc="Cache Read";dur=23.2, publish-wait;dur=500', 0.5),
    ('PUBLISH-WAIT ; desc="held" ; DUR = "250.5"', 0.2505),
    ("publish-wait;dur=100, publish-wait;dur=50", 0.15),  # two entries (two hops' headers folded)
    ("publish-wait", 0.0), ("publish-wait;dur=", 0.0), ("publish-wait;dur=-5", 0.0), ("publish-wait;dur=abc", 0.0),
    ("publish-waiting;dur=100", 0.0)])
def test_only_the_publish_wait_metric_counts(value: str | None, wait_s: float) -> None:
    assert publish_wait_s(value) == pytest.approx(wait_s)


def test_a_response_head_is_read_for_its_wait() -> None:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\n"
            b"server-timing: publish-wait;dur=400\r\nServer-Timing: app;dur=1\r\nContent-Length: 3\r\n\r\nabc")
    end = head_end(head)
    assert head[end:] == b"abc" and head_publish_wait_s(head[:end]) == pytest.approx(0.4)
    assert head_end(head[:40]) == -1
    # An interim answer states no wait (the final one does)
    assert head_publish_wait_s(b"HTTP/1.1 103 Early Hints\r\nServer-Timing: publish-wait;dur=400\r\n\r\n") == 0.0
    # A body that happens to contain the header's text is not read: only the head is given
    assert head_publish_wait_s(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == 0.0
