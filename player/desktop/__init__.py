"""The desktop player: the headless player plus decoding to a pyglet window.

Modules: `app` (the window: presentation against the audio clock, controls), `player_thread` (the
headless player on a background thread), `summary` (the result and its printout), `overlay`,
`config`, `xvfb`. This `__init__` stays light (no pyglet): commands ask `display_available()`
before they import the window, and catch `DesktopUnavailable` to play headless instead.
"""

from __future__ import annotations

import os
import sys

from player.errors import CliError


class DesktopUnavailable(CliError):
    """No window could be opened (no display, no usable OpenGL); the caller may play headless."""


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")
