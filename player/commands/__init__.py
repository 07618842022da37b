"""Subcommands of `abrkit`; each module provides `register(subparsers)` (see `player.cli`).

This package's own functions are the options several commands share: algorithms (`--abr`,
`--plugin`, `--list-abr`), player settings (`--buffer-cap-s`, ...) and the live players' switches
(`abrkit play`, `abrkit run --live`): the clock-sync schedule, dash.js's `streaming.utcSynchronization`
settings (`player.clocksync.ClockSyncConfig`), and whether LL-HLS parts are played (hls.js's
`lowLatencyMode`). Standard library only at import (the parsers must not load the player,
docs/DESKTOP.md "Cold start"); each value is checked as it is parsed (an argparse error naming the
flag), the clock-sync settings together by `ClockSyncConfig` (a `CliError` naming them).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from player.errors import CliError

if TYPE_CHECKING:
    from player.clocksync import ClockSyncConfig

ABR_HELP = ("algorithm spec NAME[:ARG][,key=value...], e.g. rate:safety=0.8; several as 'a;b', 'a,b' or a "
            "repeated --abr (see --list-abr for every algorithm and its parameters)")


def add_abr_arguments(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """`--abr` (repeatable), `--plugin` (repeatable) and `--list-abr`."""
    parser.add_argument("--abr", action="append", metavar="SPECS",
                        help=ABR_HELP + (f" (default {default})" if default else ""))
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import this Python file or module first: it registers algorithms with abr.register "
                             "(repeatable; installed packages' 'abrkit.abr' entry points need no option)")
    parser.add_argument("--list-abr", action="store_true",
                        help="list every algorithm with its parameters (types, defaults) and exit")


def load_plugins(args: argparse.Namespace) -> tuple[str, ...]:
    """Import `--plugin`s; returns how worker processes find them (absolute paths, module names)."""
    from abr.plugins import load_plugin, plugin_reference

    for target in args.plugin:
        load_plugin(target)
    return tuple(plugin_reference(t) for t in args.plugin)


def list_abrs_requested(args: argparse.Namespace) -> bool:
    """Print the algorithm catalogue if `--list-abr` was given (after loading plugins)."""
    if not args.list_abr:
        return False
    from abr.registry import catalogue

    print(catalogue())
    return True


def abr_specs(args: argparse.Namespace, *, default: str | None = None) -> tuple[str, ...]:
    """The `--abr` specs, each checked by making it once (an unknown name or parameter fails here)."""
    from abr.registry import make, parse_spec_list

    texts = args.abr or ([default] if default else [])
    if not texts:
        raise CliError("give --abr (see --list-abr)")
    specs = parse_spec_list(*texts)
    for spec in specs:
        make(spec)
    return specs


def require(args: argparse.Namespace, *names: str) -> None:
    """Options argparse cannot require (so that `--list-abr` works alone)."""
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) in (None, [])]
    if missing:
        raise CliError(f"the following arguments are required: {', '.join(missing)}")


def add_player_arguments(parser: argparse.ArgumentParser) -> None:
    """Player settings over the profile's (`SimProfile.with_player`)."""
    group = parser.add_argument_group("player settings (override the profile's)")
    group.add_argument("--buffer-cap-s", type=float, metavar="S", help="buffer cap in seconds of media")
    group.add_argument("--cap-rule", choices=("over", "room"),
                       help="over: wait while the buffer is over the cap; room: wait until a segment fits under it "
                            "(Sabre)")
    group.add_argument("--startup-threshold-s", type=float, metavar="S", help="start playing once this much is buffered")
    group.add_argument("--rebuffer-resume-s", type=float, metavar="S", help="after a stall, resume at this buffer")
    group.add_argument("--initial-quality", type=int, metavar="Q", help="force the first segment's quality")
    group.add_argument("--abandon", action=argparse.BooleanOptionalAction, default=None,
                       help="offer downloads to algorithms that can abandon them (simulation)")
    group.add_argument("--rtt-ms", type=float, metavar="MS", help="request latency where a trace has none")
    group.add_argument("--response-header-bytes", type=int, metavar="N",
                       help="bytes of each response's status line and headers on the link before its body "
                            "(simulation; default 0 as the reference simulators; this stack's answers carry about "
                            "364, so emulation parity sets them)")


def player_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The player settings given on the command line, as `SimProfile.with_player` takes them."""
    settings: dict[str, Any] = {}
    for option in ("buffer_cap_s", "cap_rule", "startup_threshold_s", "rebuffer_resume_s", "initial_quality"):
        value = getattr(args, option, None)
        if value is not None:
            settings[option] = value
    if getattr(args, "abandon", None) is not None:
        settings["abandonment"] = args.abandon
    if getattr(args, "response_header_bytes", None) is not None:
        settings["response_header_bytes"] = args.response_header_bytes
    if getattr(args, "rtt_ms", None) is not None:
        settings["rtt_s"] = args.rtt_ms / 1000
    return settings


# -- the live players' switches ----------------------------------------------------------------

# flag dest -> (ClockSyncConfig field, factor from the flag's unit to the field's)
_CLOCK_SYNC_FIELDS = {
    "sync_background_attempts": ("background_attempts", None),
    "time_between_sync_attempts_s": ("time_between_sync_attempts_s", 1.0),
    "min_time_between_sync_attempts_s": ("minimum_time_between_sync_attempts_s", 1.0),
    "max_time_between_sync_attempts_s": ("maximum_time_between_sync_attempts_s", 1.0),
    "sync_adjustment_factor": ("adjustment_factor", 1.0),
    "max_allowed_drift_ms": ("maximum_allowed_drift_s", 1e-3),
}


def _number(low: float, *, above: bool = False, integer: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= low (> low with `above`), an integer with `integer`."""
    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{'a whole number' if integer else 'a number'} expected, "
                                             f"got {text[:40]!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low:g}, got {text[:40]!r}")
        return value
    return parse


def add_clock_sync_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """dash.js's `streaming.utcSynchronization` settings (defaults: dash.js's, `ClockSyncConfig`'s);
    the options added (for `mark_live_only`)."""
    group = parser.add_argument_group(
        "live clock sync (DASH; dash.js streaming.utcSynchronization, its defaults)")
    return [
        group.add_argument("--sync-background-attempts", type=_number(0, integer=True), metavar="N",
                           help="UTCTiming requests after the join's first, confirming its offset "
                                "(backgroundAttempts; default 2)"),
        group.add_argument("--time-between-sync-attempts-s", type=_number(0, above=True), metavar="S",
                           help="first interval before a re-sync, at an MPD update (timeBetweenSyncAttempts; default 30)"),
        group.add_argument("--min-time-between-sync-attempts-s", type=_number(0, above=True), metavar="S",
                           help="shortest re-sync interval (minimumTimeBetweenSyncAttempts; default 2)"),
        group.add_argument("--max-time-between-sync-attempts-s", type=_number(0, above=True), metavar="S",
                           help="longest re-sync interval (maximumTimeBetweenSyncAttempts; default 600)"),
        group.add_argument("--sync-adjustment-factor", type=_number(1), metavar="F",
                           help="the interval is multiplied by F while the offset holds, divided when it drifts "
                                "(timeBetweenSyncAttemptsAdjustmentFactor; default 2)"),
        group.add_argument("--max-allowed-drift-ms", type=_number(0), metavar="MS",
                           help="offset change still counted as holding (maximumAllowedDrift; default 100)"),
    ]


def clock_sync_config(args: argparse.Namespace) -> ClockSyncConfig:
    """The `ClockSyncConfig` the flags ask for (unset ones: dash.js's defaults); `CliError` naming
    the flags' values when they do not fit together (minimum <= first <= maximum)."""
    from player.clocksync import ClockSyncConfig

    changes: dict[str, float] = {}
    for dest, (name, unit) in _CLOCK_SYNC_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            changes[name] = value if unit is None else value * unit
    try:
        return ClockSyncConfig(**changes)  # type: ignore[arg-type]
    except ValueError as exc:
        raise CliError(f"live clock sync settings: {exc}") from None


def add_hls_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """hls.js's `lowLatencyMode` switch; the option added (for `mark_live_only`)."""
    return [parser.add_argument(
        "--hls-low-latency-mode", action=argparse.BooleanOptionalAction, default=True,
        help="live HLS: play LL-HLS parts (EXT-X-PART) where a playlist offers them, at PART-HOLD-BACK; "
             "--no-hls-low-latency-mode plays whole segments at HOLD-BACK (hls.js lowLatencyMode; default on)")]


def _given(args: argparse.Namespace, marked: str) -> list[str]:
    """The options recorded under `marked` ((dest, name, default): `mark_live_only`, `mark_vod_only`) given
    other than at their default."""
    return [name for dest, name, default in getattr(args, marked, ()) if getattr(args, dest, default) != default]


def mark_live_only(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> None:
    """Record `actions` as options that apply only with `--live` (`refuse_live_only` reads them)."""
    parser.set_defaults(live_only=tuple((a.dest, "/".join(a.option_strings), a.default) for a in actions))


def refuse_live_only(args: argparse.Namespace) -> None:
    """`CliError` naming the live-only options given without `--live` (they would be ignored)."""
    given = _given(args, "live_only")
    if given and not getattr(args, "live", False):
        raise CliError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with --live "
                       "(this run is video on demand)")


def mark_vod_only(parser: argparse.ArgumentParser, dests: tuple[str, ...]) -> None:
    """Record the options at `dests` (already added) as ones a `--live` run does not use
    (`refuse_vod_only` reads them)."""
    parser.set_defaults(vod_only=tuple((dest, "--" + dest.replace("_", "-"), parser.get_default(dest))
                                       for dest in dests))


def refuse_vod_only(args: argparse.Namespace) -> None:
    """`CliError` naming the video-on-demand-only options given with `--live` (they would be ignored)."""
    given = _given(args, "vod_only")
    if given and getattr(args, "live", False):
        raise CliError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply with --live "
                       "(video on demand only; a live run's sessions at once: --sessions-per-worker)")
