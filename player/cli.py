"""The `abrkit` command line: one console script, one module per subcommand in `player.commands`
(playback, simulation, research) or `server.commands` (the service's own: serve, edge, origin,
package, user).

Each command module defines `register(subparsers) -> None`, which adds its parser and sets
`func=run` (a callable taking the parsed namespace and returning an exit code). User errors are
raised as `CliError` or `server.commands.CommandError` (or `ValueError`/`OSError` from bad input)
and printed as one line, never as a traceback; `ABRKIT_DEBUG=1` shows the traceback for developers.
This module is the one place the player imports `server.commands` (tests/test_import_rules.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from player import commands as _player_commands
from player.errors import CliError
from server import commands as _server_commands
from server.commands import CommandError

_COMMAND_PACKAGES = (_player_commands, _server_commands)


def _command_modules() -> dict[str, str]:
    """Command name -> the module that defines it (named like the command)."""
    modules: dict[str, str] = {}
    for package in _COMMAND_PACKAGES:
        for info in pkgutil.iter_modules(package.__path__):
            if info.name in modules:
                raise RuntimeError(f"command {info.name!r} is defined in {modules[info.name]} and {package.__name__}")
            modules[info.name] = f"{package.__name__}.{info.name}"
    return modules


def command_names() -> list[str]:
    """Every subcommand (one module each in `player.commands` or `server.commands`)."""
    return sorted(_command_modules())


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `only` (a command name): registering a command imports
    its module, and some pull in the player, the stack or PyAV."""
    parser = argparse.ArgumentParser(
        prog="abrkit",
        description="Adaptive-bitrate streaming toolkit: simulate, package, serve and play DASH.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = _command_modules()
    for name in sorted(modules):
        if only is not None and name != only:
            continue
        module = importlib.import_module(modules[name])
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # `abrkit COMMAND ...` registers that command alone (the others' imports cost ~0.4 s); anything
    # else (`abrkit`, `abrkit --help`, a typo) gets the full parser and its listing or message.
    first = arguments[0] if arguments else None
    parser = build_parser(first if first in command_names() else None)
    args = parser.parse_args(arguments)
    args.argv = tuple(arguments)  # the command as given, for the provenance records commands write
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # stdout went away (e.g. `| head`): not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("abrkit: interrupted", file=sys.stderr)
        return 130
    except (CliError, CommandError, ValueError, OSError) as exc:
        if os.environ.get("ABRKIT_DEBUG"):
            raise
        print(f"abrkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
