"""The demo stack's child process (player.desktop.demostack): a start that fails is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from player.desktop.demostack import DemoStackProcess
from player.errors import CliError


def test_a_demo_stack_that_cannot_start_is_one_line_naming_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the cache must be a directory")
    monkeypatch.setenv("ABRKIT_CACHE", str(blocker))  # the child inherits it: its cache cannot be made
    stack = DemoStackProcess().start()
    try:
        with pytest.raises(CliError, match=r"the local demo stack did not start: \w+Error: .*not-a-directory"):
            stack.ready()
    finally:
        stack.stop()
    assert stack.pid is not None
