"""URL helpers: signed-path tokens never reach a log or a message; bind addresses become URL hosts."""

from __future__ import annotations

import pytest

from server.formats.urls import redact_path, redact_url, url_host


@pytest.mark.parametrize(("path", "expected"), [
    ("/s/abc.def/demo/1.m4s", "/s/<token>/demo/1.m4s"),
    ("/s/abc.def", "/s/<token>/"),  # a truncated signed path still hides what could be a token
    ("/s//demo", "/s/<token>/demo"),
    ("/demo/manifest.mpd", "/demo/manifest.mpd"),
    ("/x/s/abc/", "/x/s/abc/"),
])
def test_redact_path_hides_the_token_of_a_signed_path(path: str, expected: str) -> None:
    assert redact_path(path) == expected


def test_redact_url_keeps_scheme_and_host_and_drops_the_query() -> None:
    assert redact_url("http://e:8080/s/SECRET/demo/1.m4s?x=1#f") == "http://e:8080/s/<token>/demo/1.m4s"
    assert redact_url("/s/SECRET/demo") == "/s/<token>/demo"


@pytest.mark.parametrize(("host", "expected"), [
    ("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]"), ("10.0.0.2", "10.0.0.2"),
    ("localhost", "localhost"),
])
def test_url_host_reaches_a_wildcard_bind_through_loopback(host: str, expected: str) -> None:
    assert url_host(host) == expected
