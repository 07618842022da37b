"""A private Xvfb X server, so tests and benchmarks can open the desktop player's window anywhere."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

from player.desktop import DesktopUnavailable


@contextlib.contextmanager
def xvfb_display(screen: str = "1920x1080x24") -> Iterator[str]:
    """A private Xvfb X server for tests and benchmarks; sets DISPLAY while it runs. Raises
    `DesktopUnavailable` when Xvfb is not installed or does not start."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise DesktopUnavailable("Xvfb is not installed (apt-get install xvfb xauth libgl1 libgl1-mesa-dri libegl1)")
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"],
                               pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()  # written once the server accepts clients
    if not number:
        process.kill()
        raise DesktopUnavailable(f"Xvfb exited ({process.wait()}) without reporting a display")
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    try:
        yield os.environ["DISPLAY"]
    finally:
        if previous is None:
            del os.environ["DISPLAY"]
        else:
            os.environ["DISPLAY"] = previous
        process.terminate()
        process.wait(timeout=10)
