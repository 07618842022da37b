"""What to play (`PlayTarget`): each kind carries exactly what it needs and refuses what cannot play."""

from __future__ import annotations

import pytest

from player.client.harness import TitleTarget, UrlTarget


@pytest.mark.parametrize("fields", [
    {"title": "", "gateway_url": "http://127.0.0.1:8000", "username": "demo"},
    {"title": "demo", "gateway_url": "", "username": "demo"},
    {"title": "demo", "gateway_url": "http://127.0.0.1:8000", "username": ""},
])
def test_a_title_target_needs_a_title_a_gateway_and_a_user(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="needs a title name, a gateway URL and a username"):
        TitleTarget(**fields, password="pw")


@pytest.mark.parametrize("url", ["", "manifest.mpd", "file:///tmp/manifest.mpd", "ftp://host/manifest.mpd"])
def test_a_url_target_is_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        UrlTarget(url=url)


def test_credentials_and_keys_stay_out_of_reprs() -> None:
    title = TitleTarget(title="demo", gateway_url="http://127.0.0.1:8000", username="demo", password="hunter2")
    url = UrlTarget(url="http://127.0.0.1:8100/demo/manifest.mpd", keys={"ab" * 16: "cd" * 16})
    assert "hunter2" not in repr(title) and "cd" * 16 not in repr(url)
