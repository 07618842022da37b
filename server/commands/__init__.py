"""The server's own `abrkit` subcommands (serve, edge, origin, package, user, placement).

One module per command with `register(subparsers)`, as in `player.commands`; `player.cli` discovers
both packages (the one place the player imports a server package other than the stack starter and
the formats leaf). Importing this package costs nothing: each command imports what it needs.
"""


class CommandError(Exception):
    """A user-facing error of a server command: printed as `abrkit <command>: error: <message>`, exit 2."""
