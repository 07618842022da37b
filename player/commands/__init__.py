"""Subcommands of `abrkit`; each module provides `register(subparsers)` (see `player.cli`).

This package's own functions are the options several commands share: algorithms (`--abr`,
`--plugin`, `--list-abr`) and player settings (`--buffer-cap-s`, ...).
"""

from __future__ import annotations

import argparse
from typing import Any

from player.errors import CliError

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
