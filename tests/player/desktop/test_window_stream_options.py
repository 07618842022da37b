"""The window's `abrkit play URL` refuses options given for another kind of stream as the headless
player does (tests/player/client/test_streamkind.py): its player thread hands them to the harness,
which checks them once the manifest says what the stream is, and the window's error is the CLI's. A
window whose session could not start closes at once (it used to stay open, empty, until quit or
`--exit-after`, here 600 s: the run's 120 s timeout would fail the test)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import CLEAR_TITLE, REPO_ROOT, PackagedTitles
from tests.player.conftest import serving_origin
from tests.player.desktop.conftest import in_background


@pytest.mark.desktop
def test_the_window_refuses_live_options_for_an_on_demand_stream(packaged: PackagedTitles, display: str) -> None:
    with in_background(serving_origin(packaged.content_root)) as origin:
        url = f"{origin}/{CLEAR_TITLE}/manifest.mpd"
        process = subprocess.run(
            [sys.executable, "-m", "player", "play", url, "--exit-after", "600", "--target-latency-s", "5"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "DISPLAY": display})
    assert process.returncode == 2, (process.stdout, process.stderr)
    assert (f"abrkit play: error: {url} is an on-demand stream, which this option does not apply to: "
            "--target-latency-s (live only); leave it out") in process.stderr, process.stderr
    assert "Traceback" not in process.stderr
