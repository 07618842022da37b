"""The `abrkit` entry point: one command's parser per run, the full listing otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from player import cli


def test_a_named_command_registers_alone_and_imports_nothing_heavy() -> None:
    code = ("import sys; from player import cli; "
            "rc = cli.main(['trace', 'info', 'constant:2e6']); "
            "heavy = [m for m in ('player.research.chaos', 'player.client.headless', 'server.stack', 'av') if m in sys.modules]; "
            "assert rc == 0 and not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_the_full_parser_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listing = capsys.readouterr().out
    assert cli.command_names() == sorted(cli.command_names()) and len(cli.command_names()) >= 13
    for name in cli.command_names():
        assert name in listing


def test_an_unknown_command_is_refused_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["simm"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'simm'" in capsys.readouterr().err


def test_the_servers_commands_are_found_in_server_commands_and_load_no_player_room() -> None:
    assert {"serve", "edge", "origin", "package", "user"} <= set(cli.command_names())
    code = ("import sys; from player import cli; "
            "rc = cli.main(['user', '--config', sys.argv[1], 'list']); "
            "loaded = sorted(m for m in sys.modules if m.startswith(('player.', 'server.'))); "
            "assert rc == 0 and 'server.commands.user' in loaded, loaded; "
            "rooms = [m for m in loaded if m.startswith(('player.client', 'player.media', 'player.research'))]; "
            "assert not rooms and 'av' not in sys.modules, rooms")
    subprocess.run([sys.executable, "-c", code, "/nonexistent/stack.json"], check=True, capture_output=True)


def test_a_command_defined_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_COMMAND_PACKAGES", (cli._server_commands, cli._server_commands))
    with pytest.raises(RuntimeError, match="is defined in server.commands"):
        cli.command_names()
