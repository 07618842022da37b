"""Shared by the desktop player's tests: an X display, and servers on a background event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TypeVar

import pytest

from player.desktop.xvfb import xvfb_display

T = TypeVar("T")
XVFB_SCREEN = "1920x1080x24"


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """An X display: the one in DISPLAY, else a private Xvfb for the session."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("no DISPLAY and Xvfb is not installed (apt-get install xvfb xauth libgl1 libgl1-mesa-dri "
                    "libegl1 libopenal1, as .ci/run does)")
    with xvfb_display(XVFB_SCREEN) as name:
        yield name


@contextmanager
def in_background(context: AbstractAsyncContextManager[T]) -> Iterator[T]:
    """Enter an async context manager on an event loop in a background thread."""
    entered: Future[T] = Future()
    loop_box: list[asyncio.AbstractEventLoop] = []
    leave = threading.Event()

    async def main() -> None:
        loop_box.append(asyncio.get_running_loop())
        release = asyncio.Event()
        try:
            async with context as value:
                entered.set_result(value)
                await asyncio.to_thread(leave.wait)
                release.set()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            if not entered.done():
                entered.set_exception(exc)
            else:
                raise

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        yield entered.result(timeout=60)
    finally:
        leave.set()
        thread.join(timeout=30)
