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


@pytest.mark.parametrize("argv,windowed,named", [
    (("https://cdn.example/t/manifest.mpd", "--headless", "--exit-after", "5", "--screenshot", "x.png"), False,
     "with --headless, the session plays headless (no window), which these options do not apply to: "
     "--exit-after (window only), --screenshot (window only); leave them out"),
    (("https://cdn.example/t/manifest.mpd", "--exit-after", "5"), False,
     "with no display (DISPLAY unset), the session plays headless (no window), which this option does not apply "
     "to: --exit-after (window only); leave it out"),
    (("https://cdn.example/t/manifest.mpd", "--decode", "keyframes"), True,
     "the session plays in a window, which this option does not apply to: --decode (headless only); leave it out"),
    (("https://cdn.example/t/manifest.mpd", "--headless", "--user", "alice", "--region", "eu", "--password-stdin",
      "--gateway", "http://10.0.0.1:8000"), False,
     "https://cdn.example/t/manifest.mpd is a URL, played directly (not through a stack's gateway), which these "
     "options do not apply to: --gateway (title only), --user (title only), --region (title only), "
     "--password-stdin (title only); leave them out"),
    (("--headless", "--user", "alice"), False,
     "the demo (no URL or title given) plays on a stack of its own, which this option does not apply to: "
     "--user (title only); leave it out"),
    (("bbb", "--headless", "--key", "00" * 16 + ":" + "11" * 16), False,
     "title 'bbb' is a title, played through a stack's gateway, which this option does not apply to: "
     "--key (URL only); leave it out"),
    (("https://cdn.example/t/manifest.mpd", "--headless", "--rtt-ms", "40", "--offset-s", "5"), False,
     "the session plays on an unshaped link (no --trace), which these options do not apply to: "
     "--rtt-ms (with --trace only), --offset-s (with --trace only); leave them out"),
], ids=["headless-window-options", "no-display", "window-decode", "url-login-options", "demo-user", "title-key",
        "link-without-trace"])
def test_options_the_player_or_the_target_would_ignore_are_an_error_naming_them(
        argv: tuple[str, ...], windowed: bool, named: str) -> None:
    with pytest.raises(CliError) as caught:
        play.check_player_and_target(_args(*argv), windowed=windowed)
    assert str(caught.value) == named


@pytest.mark.parametrize("argv,windowed", [
    (("https://cdn.example/t/manifest.mpd", "--exit-after", "5", "--screenshot", "x.png", "--key", "00:11"), True),
    (("bbb", "--headless", "--decode", "none", "--user", "alice", "--region", "eu", "--password-stdin"), False),
    (("--headless", "--decode", "all", "--target-latency-s", "3"), False),  # a default given, a stream option
    (("--headless", "--trace", "constant:5e6", "--rtt-ms", "40", "--offset-s", "5"), False),
], ids=["window-url", "headless-title", "demo", "traced"])
def test_options_for_the_player_and_target_pass(argv: tuple[str, ...], windowed: bool) -> None:
    play.check_player_and_target(_args(*argv), windowed=windowed)


def test_play_refuses_an_ignored_option_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    from player.cli import main

    # Nothing listens on port 9: the refusal comes before any request.
    assert main(["play", "--headless", "http://127.0.0.1:9/x.mpd", "--screenshot", "x.png"]) == 2
    err = capsys.readouterr().err
    assert "abrkit play: error: with --headless, the session plays headless (no window), which this option " \
           "does not apply to: --screenshot (window only); leave it out" in err, err
