"""URL helpers: tokens in paths never reach a log or a message; renewed tokens swapped in; bind addresses."""

from __future__ import annotations

import pytest

from server.formats.urls import redact_path, redact_url, signed_token, url_host, with_signed_token

TOKEN = "eyJleHAiOjE3OTY0NjI0MDAsInAiOiIvZGVtby8ifQ." + "A" * 86  # the shape of a signed-URL token
JWT = "eyJhbGciOiJFZERTQSJ9." + "eyJzdWIiOiJhbGljZSJ9" * 4 + "." + "B" * 86


@pytest.mark.parametrize(("path", "expected"), [
    ("/s/abc.def/demo/1.m4s", "/s/<token>/demo/1.m4s"),
    ("/s/abc.def", "/s/<token>"),  # a truncated signed path still hides what could be a token
    ("/s//demo", "/s//demo"),
    ("/demo/manifest.mpd", "/demo/manifest.mpd"),
    ("/x/s/abc/", "/x/s/<token>/"),  # wherever an `s` segment is
    ("//s/abc/demo/1.m4s", "//s/<token>/demo/1.m4s"),
    ("/S/abc/demo/1.m4s", "/S/<token>/demo/1.m4s"),  # in any case
    (f"/x/{TOKEN}/y", "/x/<token>/y"),  # token-shaped, wherever it is
    (f"/playback/{JWT}", "/playback/<token>"),
    ("/demo.v2/video/v216p/1.m4s", "/demo.v2/video/v216p/1.m4s"),  # dots in names are not tokens
    ("/a_long_title_name_of_a_show.season_one/manifest.mpd", "/a_long_title_name_of_a_show.season_one/manifest.mpd"),
])
def test_redact_path_hides_every_token_shaped_segment(path: str, expected: str) -> None:
    assert redact_path(path) == expected


def test_signed_tokens_are_found_and_swapped_in_urls() -> None:
    url = "http://e:1/s/OLD.tok/demo/video/v1/3.m4s?x=1"
    assert signed_token(url) == "OLD.tok"
    assert with_signed_token(url, "NEW.tok") == "http://e:1/s/NEW.tok/demo/video/v1/3.m4s?x=1"
    assert signed_token("http://e:1/demo/manifest.mpd") is None
    assert with_signed_token("http://e:1/demo/manifest.mpd", "NEW") == "http://e:1/demo/manifest.mpd"


def test_redact_url_keeps_scheme_and_host_and_drops_the_query() -> None:
    assert redact_url("http://e:8080/s/SECRET/demo/1.m4s?x=1#f") == "http://e:8080/s/<token>/demo/1.m4s"
    assert redact_url("/s/SECRET/demo") == "/s/<token>/demo"


@pytest.mark.parametrize(("host", "expected"), [
    ("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]"), ("10.0.0.2", "10.0.0.2"),
    ("localhost", "localhost"),
])
def test_url_host_reaches_a_wildcard_bind_through_loopback(host: str, expected: str) -> None:
    assert url_host(host) == expected
