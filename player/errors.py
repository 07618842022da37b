"""Errors shown to users as one clear line (the CLI prints them without a traceback)."""


class CliError(Exception):
    """A user-facing error: printed as `abrkit <command>: error: <message>` with exit code 2."""
