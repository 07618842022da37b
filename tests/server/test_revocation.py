"""The revocation store: refresh generations per login family, logouts, user stamps, expiry, and a
store that is missing, damaged, replaced or unwritable: it fails closed, never "nothing revoked"."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from pathlib import Path

import pytest

from server.revocation import RevocationStore, Rotation, StoreUnavailable, create_store

FAR = time.time() + 3600


@pytest.fixture
def path(tmp_path: Path) -> Path:
    store = tmp_path / "revocations.db"
    create_store(store)
    return store


def rotate(store: RevocationStore, generation: int, *, family: str = "f", subject: str = "alice",
           issued_at: float = 1.0, jti: str = "r") -> Rotation:
    return store.rotate(jti=jti, family=family, subject=subject, generation=generation, issued_at=issued_at,
                        until=FAR)


def test_the_store_is_created_private_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "revocations.db"
    create_store(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store_id = RevocationStore(path).store_id
    create_store(path)  # a second start keeps what is there
    assert RevocationStore(path).store_id == store_id


def test_a_json_file_where_the_store_should_be_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    path.write_text('{"jti": {}}')
    with pytest.raises(ValueError, match="not a revocation store"):
        create_store(path)


def test_the_json_revocations_of_earlier_versions_are_imported_once(tmp_path: Path) -> None:
    (tmp_path / "revoked.json").write_text(json.dumps({"jti": {"j1": FAR}, "family": {"f1": FAR},
                                                       "subject": {"alice": 1000.0}}))
    create_store(tmp_path / "revocations.db")
    store = RevocationStore(tmp_path / "revocations.db")
    assert store.access_revoked(jti="j1", family="x", subject="bob", issued_at=2000.0)
    assert store.access_revoked(jti="x", family="f1", subject="bob", issued_at=2000.0)
    assert store.access_revoked(jti="x", family="x", subject="alice", issued_at=999.0)
    assert not store.access_revoked(jti="x", family="x", subject="alice", issued_at=1001.0)


def test_refresh_moves_the_family_on_one_generation_at_a_time(path: Path) -> None:
    store = RevocationStore(path)
    assert [rotate(store, g) for g in range(5)] == [Rotation.ROTATED] * 5
    assert store.counts()["families"] == 1  # one row per login, however often it refreshes
    assert rotate(store, 2) is Rotation.REUSED  # an old generation came back: someone kept a copy
    assert rotate(store, 5) is Rotation.REVOKED  # and the current one is dead with its family
    assert store.access_revoked(jti="a", family="f", subject="alice", issued_at=1.0)


def test_a_generation_the_store_never_issued_ends_the_family(path: Path) -> None:
    store = RevocationStore(path)
    assert rotate(store, 3) is Rotation.REUSED
    assert rotate(store, 0) is Rotation.REVOKED


def test_every_handle_sees_a_change_at_once(path: Path) -> None:
    auth, license = RevocationStore(path), RevocationStore(path)  # as two processes would open it
    assert not license.access_revoked(jti="j", family="f", subject="alice", issued_at=1.0)
    auth.logout(jti="j", family="f", until=FAR)
    assert license.access_revoked(jti="other", family="f", subject="alice", issued_at=1.0)
    assert license.url_revoked(family="f", subject="alice", issued_at=1.0)


def test_an_entitlement_stamp_ends_access_tokens_and_urls_but_not_the_login(path: Path) -> None:
    store = RevocationStore(path)
    store.stamp_subject("alice", until=FAR, access_only=True, at=100.0)
    assert store.access_revoked(jti="j", family="f", subject="alice", issued_at=99.0)
    assert store.url_revoked(family="f", subject="alice", issued_at=100.0)
    assert not store.url_revoked(family="f", subject="alice", issued_at=100.5)
    assert rotate(store, 0, issued_at=50.0) is Rotation.ROTATED  # the refresh token still works
    store.stamp_subject("alice", until=FAR, at=200.0)  # a password change: everything before it
    assert rotate(store, 1, issued_at=150.0) is Rotation.REVOKED


def test_expired_rows_are_purged_and_live_ones_kept(path: Path) -> None:
    now = [1000.0]
    store = RevocationStore(path, clock=lambda: now[0])
    store.logout(jti="old", family="old", until=1500.0)
    store.logout(jti="new", family="new", until=2500.0)
    store.stamp_subject("alice", until=1500.0)
    now[0] = 2000.0
    assert store.purge() == 3
    assert store.counts() == {"families": 1, "tokens": 1, "subjects": 0}
    assert store.access_revoked(jti="x", family="new", subject="bob", issued_at=1.0)


def test_a_missing_or_damaged_store_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot be opened"):
        RevocationStore(tmp_path / "missing.db")  # and it is not created by opening it
    assert not (tmp_path / "missing.db").exists()
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreUnavailable):
        RevocationStore(damaged)


@pytest.mark.parametrize("damage", ["delete", "truncate", "replace with a new store", "replace with garbage"])
def test_a_store_damaged_while_open_fails_closed(path: Path, damage: str) -> None:
    store = RevocationStore(path)
    store.logout(jti="j", family="f", until=FAR)
    for extra in path.parent.glob(path.name + "-*"):
        extra.unlink()
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(b"")
    elif damage == "replace with a new store":
        path.unlink()
        create_store(path)  # e.g. `abrkit user` run after someone removed the file
    else:
        replacement = path.with_name("garbage")
        replacement.write_bytes(b"\x00garbage" * 512)
        replacement.replace(path)
    with pytest.raises(StoreUnavailable):
        store.access_revoked(jti="j", family="f", subject="alice", issued_at=1.0)
    with pytest.raises(StoreUnavailable):
        store.logout(jti="k", family="g", until=FAR)


async def test_an_outage_is_logged_once_and_its_end_once(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.revocation")
    store = RevocationStore(path)
    moved = path.with_name("moved.db")
    path.rename(moved)
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            await store.run(lambda: store.access_revoked(jti="j", family="f", subject="a", issued_at=1.0))
    moved.rename(path)
    assert not await store.run(lambda: store.access_revoked(jti="j", family="f", subject="a", issued_at=1.0))
    messages = [r.getMessage() for r in caplog.records if r.name == "abrkit.revocation"]
    assert len([m for m in messages if "refusing" in m]) == 1
    assert len([m for m in messages if "available again" in m]) == 1
    store.close()


async def test_lookups_run_off_the_event_loop(path: Path) -> None:
    store = RevocationStore(path)
    loop_thread = asyncio.get_running_loop()._thread_id  # type: ignore[attr-defined]
    import threading
    seen = await store.run(threading.get_ident)
    assert seen != loop_thread
    store.close()
