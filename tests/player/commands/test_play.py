"""`abrkit play`: what the command line asks to play becomes one kind of `PlayTarget`."""

from __future__ import annotations

import argparse

import pytest

from player.client.harness import DemoTarget, TitleTarget, UrlTarget
from player.commands import play
from player.errors import CliError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    play.register(parser.add_subparsers())
    return parser.parse_args(["play", *argv])


def test_no_argument_plays_the_demo() -> None:
    assert play.play_target(_args()) == DemoTarget()


def test_an_mpd_url_plays_directly_with_the_given_keys() -> None:
    target = play.play_target(_args("https://cdn.example/t/manifest.mpd", "--key", "00" * 16 + ":" + "11" * 16))
    assert target == UrlTarget(url="https://cdn.example/t/manifest.mpd", keys={"00" * 16: "11" * 16})


def test_a_title_plays_through_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABRKIT_PASSWORD", "s3cret")
    target = play.play_target(_args("bbb", "--user", "alice", "--gateway", "http://10.0.0.1:8000"))
    assert target == TitleTarget(title="bbb", gateway_url="http://10.0.0.1:8000", username="alice", password="s3cret")
    assert "s3cret" not in repr(target)


def test_a_title_without_a_password_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABRKIT_PASSWORD", raising=False)
    with pytest.raises(CliError, match="no password"):
        play.play_target(_args("bbb", "--user", "alice"))


@pytest.mark.parametrize("argv", [("https://cdn.example/t/master.m3u8",), ("--protocol", "hls", "bbb"), ("--protocol", "hls",)])
def test_protocol_hls_reaches_every_kind_of_target(monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...]) -> None:
    monkeypatch.setenv("ABRKIT_PASSWORD", "s3cret")
    args = _args(*argv) if argv[0] == "--protocol" else _args("--protocol", "hls", *argv)
    assert play.play_target(args).protocol == "hls"


def test_protocol_defaults_to_auto_and_refuses_others() -> None:
    assert play.play_target(_args("https://cdn.example/t/master.m3u8")).protocol == "auto"
    with pytest.raises(SystemExit):
        _args("--protocol", "rtmp", "https://cdn.example/t/x")


def test_live_plays_60_s_headless_and_until_quit_in_a_window_unless_told() -> None:
    from player.desktop.player_thread import WINDOW_LIVE_DURATION_S

    assert play._live_config(_args("live"), default_duration_s=60.0).duration_s == 60.0
    window = play._live_config(_args("live"), default_duration_s=WINDOW_LIVE_DURATION_S)
    assert window.duration_s == WINDOW_LIVE_DURATION_S >= 3600
    assert play._live_config(_args("live", "--duration-s", "12"), default_duration_s=60.0).duration_s == 12.0
    with pytest.raises(CliError, match="duration must be > 0"):
        play._live_config(_args("live", "--duration-s", "0"), default_duration_s=60.0)
