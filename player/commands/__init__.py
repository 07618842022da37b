"""Subcommands of `abrkit`; each module provides `register(subparsers)` (see `player.cli`)."""
