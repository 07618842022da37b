"""Two processes sharing one ABRKIT_CACHE folder (two pytest-xdist workers, two `abrkit play demo`)
write the same entries at once: the demo stack's users and secrets (play-stack/), the demo title
(content/demo, locked in server/packager.py) and the optimum cache (optimal/*.json). Every writer is
atomic (a temp file in the same folder, then os.replace) and locked where it reads, decides and
writes; readers take a damaged entry as missing, never as a result or a crash."""

from __future__ import annotations

import json
import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from server.config import StackConfig
from server.passwords import verify_password
from server.users import read_users


def _demo_user(config_path: str, start: Barrier) -> str:
    from server.stack import ensure_demo_user, init_stack_config

    config = StackConfig(config_path=Path(config_path), content_root=Path(config_path).parent / "content", port=0)
    init_stack_config(config)
    start.wait()
    return ensure_demo_user(config).password


def test_two_processes_making_the_demo_user_at_once_both_get_the_password_that_is_stored(tmp_path: Path) -> None:
    config_path = tmp_path / "play-stack" / "stack.json"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        start = manager.Barrier(2)
        passwords = pool.starmap(_demo_user, [(str(config_path), start)] * 2)
    stored = read_users(config_path)["demo"].password_hash
    # Before: both found no demo user, both made one, and the first one's password no longer logged in.
    assert passwords[0] == passwords[1] and verify_password(stored, passwords[0])


def test_writers_of_one_optimum_entry_in_one_process_never_collide(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from player.research.sweep import _store

    entry = tmp_path / "optimal" / "0123.json"
    with ThreadPoolExecutor(4) as pool:  # before: one temp name per process, so threads raced on it
        list(pool.map(lambda n: _store(entry, json.dumps({"qoe": float(n % 2)})), range(400)))
    assert json.loads(entry.read_text())["qoe"] in (0.0, 1.0)
    assert [p.name for p in entry.parent.iterdir()] == ["0123.json"]  # no temp file left behind
