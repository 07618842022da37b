"""The live players' switches (player/commands/__init__.py) on `abrkit play` and `abrkit run --live`:
dash.js's utcSynchronization settings and hls.js's lowLatencyMode, good values reaching the
configs, bad ones a clear error naming the flag."""

from __future__ import annotations

import argparse

import pytest

from player.clocksync import ClockSyncConfig
from player.commands import play, run
from player.errors import CliError


def _args(command: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    (play if command == "play" else run).register(parser.add_subparsers())
    return parser.parse_args([command, *argv])


def test_defaults_are_dash_js_and_hls_js_defaults() -> None:
    live = play._live_config(_args("play", "live"), default_duration_s=60.0)
    assert live.clock_sync == ClockSyncConfig() and live.play_parts is True


def test_play_takes_every_clock_sync_setting_and_turns_parts_off() -> None:
    args = _args("play", "live", "--sync-background-attempts", "0", "--time-between-sync-attempts-s", "6",
                 "--min-time-between-sync-attempts-s", "1.5", "--max-time-between-sync-attempts-s", "60",
                 "--sync-adjustment-factor", "1", "--max-allowed-drift-ms", "250", "--no-hls-low-latency-mode")
    live = play._live_config(args, default_duration_s=60.0)
    assert live.clock_sync == ClockSyncConfig(
        background_attempts=0, time_between_sync_attempts_s=6.0, minimum_time_between_sync_attempts_s=1.5,
        maximum_time_between_sync_attempts_s=60.0, adjustment_factor=1.0, maximum_allowed_drift_s=0.25)
    assert live.clock_sync.join_requests == 1 and live.play_parts is False


@pytest.mark.parametrize("argv,message", [
    (("--sync-background-attempts", "-1"), "--sync-background-attempts: must be >= 0"),
    (("--sync-background-attempts", "1.5"), "--sync-background-attempts: a whole number expected"),
    (("--time-between-sync-attempts-s", "0"), "--time-between-sync-attempts-s: must be > 0"),
    (("--max-time-between-sync-attempts-s", "inf"), "must be > 0, got 'inf'"),
    (("--min-time-between-sync-attempts-s", "nan"), "must be > 0, got 'nan'"),
    (("--sync-adjustment-factor", "0.5"), "--sync-adjustment-factor: must be >= 1"),
    (("--max-allowed-drift-ms", "x"), "--max-allowed-drift-ms: a number expected, got 'x'"),
    (("--hls-low-latency-mode", "off"), "unrecognized arguments: off"),
])
@pytest.mark.parametrize("command", ["play", "run"])
def test_bad_values_name_the_flag(command: str, argv: tuple[str, ...], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _args(command, *(("live",) if command == "play" else ("--live",)), *argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_settings_that_do_not_fit_together_are_one_clear_error() -> None:
    args = _args("play", "live", "--max-time-between-sync-attempts-s", "20")  # the first interval is 30
    with pytest.raises(CliError, match=r"live clock sync settings: .*minimum <= first <= maximum.*2 s, 30 s, 20 s"):
        play._live_config(args, default_duration_s=60.0)


def test_run_live_lists_and_takes_them(capsys: pytest.CaptureFixture[str]) -> None:
    from player.commands import clock_sync_config

    args = _args("run", "--live", "--time-between-sync-attempts-s", "6", "--no-hls-low-latency-mode")
    assert clock_sync_config(args).time_between_sync_attempts_s == 6.0 and args.hls_low_latency_mode is False
    with pytest.raises(SystemExit):
        _args("run", "--help")
    out = capsys.readouterr().out
    assert "--max-allowed-drift-ms" in out and "maximumAllowedDrift" in out and "lowLatencyMode" in out


@pytest.mark.parametrize("argv,named", [
    (("run", "--abr", "bba", "--traces", "x", "--video-or-title", "y", "--out", "z", "--protocol", "hls"),
     "--protocol applies only with --live"),
    (("run", "--abr", "bba", "--traces", "x", "--video-or-title", "y", "--out", "z", "--chunk-s", "0",
      "--max-allowed-drift-ms", "50", "--no-hls-low-latency-mode"),
     "--chunk-s, --max-allowed-drift-ms, --hls-low-latency-mode/--no-hls-low-latency-mode apply only with --live"),
    (("sim", "--abr", "bba", "--traces", "x", "--video", "y", "--catchup", "lolp", "--live-duration-s", "10"),
     "--live-duration-s, --catchup apply only with --live"),
])
def test_live_only_options_without_live_are_an_error_not_ignored(argv: tuple[str, ...], named: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from player.cli import main

    assert main(list(argv)) == 2
    assert named in capsys.readouterr().err


def test_live_only_options_at_their_defaults_or_with_live_are_accepted() -> None:
    from player.commands import refuse_live_only

    refuse_live_only(_args("run", "--abr", "bba"))  # nothing given
    refuse_live_only(_args("run", "--live", "--protocol", "hls", "--max-allowed-drift-ms", "50"))


@pytest.mark.parametrize("argv,named", [
    (("--workers", "4"), "--workers does not apply with --live"),
    (("--dask", "tcp://x:8786", "--decode", "--profile", "pensieve"), "--dask, --decode, --profile do not apply"),
    (("--buffer-cap-s", "30", "--players-per-link", "2", "--no-abandon"),
     "--players-per-link, --buffer-cap-s, --abandon do not apply"),
])
def test_vod_only_options_with_live_are_an_error_not_ignored(argv: tuple[str, ...], named: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`abrkit run --live` plays its sessions in this process on the live clock: the VOD experiment's
    executor, decode, profile and player settings were silently ignored."""
    from player.cli import main

    assert main(["run", "--live", "--abr", "dynamic", "--traces", "x", "--video-or-title", "y", "--out", "z",
                 *argv]) == 2
    assert named in capsys.readouterr().err


def test_vod_only_options_at_their_defaults_or_without_live_are_accepted() -> None:
    from player.commands import refuse_vod_only

    refuse_vod_only(_args("run", "--live", "--sessions-per-worker", "8", "--seed", "3", "--rtt-ms", "40"))
    refuse_vod_only(_args("run", "--workers", "4", "--buffer-cap-s", "30", "--profile", "pensieve"))
