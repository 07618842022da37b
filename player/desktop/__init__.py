"""The desktop player: the headless player plus decoding to a pyglet window.

This package's `__init__` stays light (no pyglet): commands ask `display_available()` before they
import the window.
"""

from __future__ import annotations

import os
import sys


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")
