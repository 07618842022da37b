"""The `abrkit` command line: one console script, one module per subcommand in `player.commands`.

Each module in `player/commands/` defines `register(subparsers) -> None`, which adds its parser and
sets `func=run` (a callable taking the parsed namespace and returning an exit code). User errors are
raised as `CliError` (or `ValueError`/`OSError` from bad input) and printed as one line, never as a
traceback; `ABRKIT_DEBUG=1` shows the traceback for developers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from player import commands as _commands
from player.errors import CliError


def command_names() -> list[str]:
    """Every subcommand (one module each in `player.commands`, named like the command)."""
    return sorted(info.name for info in pkgutil.iter_modules(_commands.__path__))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `only` (a command name): registering a command imports
    its module, and some pull in the player, the stack or PyAV."""
    parser = argparse.ArgumentParser(
        prog="abrkit",
        description="Adaptive-bitrate streaming toolkit: simulate, package, serve and play DASH.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_names():
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"{_commands.__name__}.{name}")
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
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # stdout went away (e.g. `| head`): not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("abrkit: interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, OSError) as exc:
        if os.environ.get("ABRKIT_DEBUG"):
            raise
        print(f"abrkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
