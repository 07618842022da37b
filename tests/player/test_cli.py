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
