"""The revocation store: one SQLite file (WAL mode) that auth and `abrkit user` write and every
verifying service reads, each query on a small thread pool off the event loop.

It records login families (their refresh generation, revoked or not), single revoked tokens, and
per-user stamps ("tokens issued up to t are refused": entitlements changed -> access tokens and
URLs; password changed, user revoked -> everything). A refresh bumps its family's generation in
place, so the store grows with logins and logouts, not with refreshes; lookups are primary-key
reads whatever its size. Rows go once the tokens they concern have expired.

It fails closed: a store that is missing, unreadable, replaced by another file or not writable
raises `StoreUnavailable`, which services answer with 503 and `Retry-After` (never with "not
revoked"), logging the outage once and its end once. It is created when the stack starts; a service
never creates it, so deleting it mid-run cannot reset it to "nothing revoked".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from server.config import LEGACY_REVOCATIONS_FILE
from server.privatefiles import file_lock

log = logging.getLogger("abrkit.revocation")
Clock = Callable[[], float]
T = TypeVar("T")

SCHEMA_VERSION = "1"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_HEADER_BYTES = 100
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS families (
    family TEXT PRIMARY KEY, generation INTEGER NOT NULL, revoked INTEGER NOT NULL, until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (jti TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subjects (
    subject TEXT PRIMARY KEY, access_before REAL NOT NULL, all_before REAL NOT NULL, until REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS families_until ON families (until);
CREATE INDEX IF NOT EXISTS tokens_until ON tokens (until);
CREATE INDEX IF NOT EXISTS subjects_until ON subjects (until);
"""
_BUSY_TIMEOUT_MS = 5000


class StoreUnavailable(OSError):
    """The revocation store cannot be read or written now: refuse (503), never assume "not revoked"."""


class Rotation(enum.Enum):
    """What presenting a refresh token did to its family."""

    ROTATED = "rotated"  # it was the family's current generation: the next one is issued
    REUSED = "reused"  # an older generation shown again: someone holds a copy; the family is revoked now
    REVOKED = "revoked"  # the family, the token or its user was revoked already


def _connect(path: Path) -> sqlite3.Connection:
    # `mode=rw`: never create the file here (a deleted store must stay missing, not come back empty).
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False,
                           timeout=_BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged logout survives a power cut
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    except sqlite3.OperationalError:
        conn.close()
        if not _read_only_fs(path):
            raise
        # A WAL database on a read-only volume opens only as immutable: nobody can change it there, so
        # what it holds is enforced and every write is refused (503), as on a full disk.
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
        log.warning("revocation store %s is on a read-only file system: its revocations hold, new ones are "
                    "refused until it is writable and the service restarted", path)
    except BaseException:
        conn.close()
        raise
    return conn


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _is_store_file(path: Path) -> bool:
    """Whether `path` holds a SQLite database; False if empty or missing, ValueError if something else."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return False
    if head and head != _SQLITE_MAGIC:
        raise ValueError(f"{path} is not a revocation store (an old revoked.json?); point revocations_path "
                         "at a new file")
    return bool(head)


def _store_id(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    if row is None:
        raise sqlite3.DatabaseError("not a revocation store (no store id)")
    return str(row[0])


def create_store(path: Path) -> None:
    """Create the store at `path` (mode 0600) if it does not exist, importing the JSON file of earlier
    versions found beside it once. `ValueError` if `path` holds something else."""
    if _is_store_file(path):  # without the lock: a read-only volume holding a store is fine
        return
    with file_lock(path):
        if _is_store_file(path):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        conn = _connect(path)
        try:
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?), ('schema', ?)",
                         (uuid.uuid4().hex, SCHEMA_VERSION))
            _import_legacy(conn, path.with_name(LEGACY_REVOCATIONS_FILE))
            conn.execute("COMMIT")
        finally:
            conn.close()


def _import_legacy(conn: sqlite3.Connection, legacy: Path) -> None:
    try:
        data = json.loads(legacy.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        log.error("%s is unreadable: its revocations were not imported", legacy)
        return
    far = time.time() + 7 * 86_400  # its entries' lifetimes were those of HS256 tokens, which no longer verify
    for jti, until in dict(data.get("jti", {})).items():
        conn.execute("INSERT OR IGNORE INTO tokens VALUES (?, ?)", (str(jti), float(until)))
    for family, until in dict(data.get("family", {})).items():
        conn.execute("INSERT OR IGNORE INTO families VALUES (?, 0, 1, ?)", (str(family), float(until)))
    for subject, at in dict(data.get("subject", {})).items():
        conn.execute("INSERT OR IGNORE INTO subjects VALUES (?, ?, ?, ?)", (str(subject), float(at), float(at), far))
    log.info("imported the revocations of %s", legacy)


class RevocationStore:
    """One process's handle on the store at `path`, which must exist (`create_store`).

    Opened once at start (raising `StoreUnavailable` if it cannot be), which fixes the store's
    identity; later a missing file or another store at the same path is an outage, not a fresh
    start. The sync methods run on the calling thread (the `abrkit user` command); services call
    them through `run`, on the store's own threads.
    """

    def __init__(self, path: Path, *, clock: Clock = time.time, threads: int = 2) -> None:
        self.path = path
        self._clock = clock
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="revocations")
        self._failing = False
        try:
            st = os.stat(path)
            conn = self._open()
            self.store_id = _store_id(conn)
        except (OSError, sqlite3.DatabaseError) as exc:
            self.close()
            raise StoreUnavailable(f"revocation store {path} cannot be opened: {_describe(exc)}") from None
        self._identity = (st.st_dev, st.st_ino)
        self._local.conn, self._local.identity = conn, self._identity

    def _open(self) -> sqlite3.Connection:
        conn = _connect(self.path)
        with self._lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection to the store the service started with; `StoreUnavailable` otherwise."""
        try:
            st = os.stat(self.path)
            if st.st_size < _SQLITE_HEADER_BYTES:  # truncated: a store is never emptier than its header
                raise sqlite3.DatabaseError("the file was truncated")
            identity = (st.st_dev, st.st_ino)
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None or self._local.identity != identity:
                if conn is not None:
                    self._forget(conn)
                    self._local.conn = None
                conn = self._open()
                try:
                    if _store_id(conn) != self.store_id:
                        raise sqlite3.DatabaseError("another store was put in its place")
                except BaseException:
                    self._forget(conn)
                    raise
                self._local.conn, self._local.identity = conn, identity
            yield conn
        except (OSError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
                raise  # our bug, not the disk's
            raise StoreUnavailable(f"revocation store {self.path}: {_describe(exc)}") from None

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    # -- running off the event loop --

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` (a method of this store) on the store's threads. The first failure of an outage
        is logged, and its end; `StoreUnavailable` reaches the caller every time."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, fn, *args)
        except StoreUnavailable as exc:
            if not self._failing:
                self._failing = True
                log.error("%s; refusing what needs it (503) until it is back", exc)
            raise
        if self._failing:
            self._failing = False
            log.warning("revocation store %s is available again", self.path)
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- reads --

    def access_revoked(self, *, jti: str, family: str, subject: str, issued_at: float) -> bool:
        """Whether an access token is revoked: itself, its login family, or its user since it was issued."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT (SELECT revoked FROM families WHERE family = ?1), (SELECT 1 FROM tokens WHERE jti = ?2),"
                " (SELECT max(access_before, all_before) FROM subjects WHERE subject = ?3)",
                (family, jti, subject)).fetchone()
        revoked_family, revoked_token, stamp = row
        return bool(revoked_family) or bool(revoked_token) or (stamp is not None and issued_at <= stamp)

    def url_revoked(self, *, family: str, subject: str, issued_at: float) -> bool:
        """Whether a signed URL's session is over: its login family revoked, or its user changed since."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT (SELECT revoked FROM families WHERE family = ?1),"
                " (SELECT max(access_before, all_before) FROM subjects WHERE subject = ?2)",
                (family, subject)).fetchone()
        return bool(row[0]) or (row[1] is not None and issued_at <= row[1])

    def counts(self) -> dict[str, int]:
        with self._conn() as conn:
            return {table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
                    for table in ("families", "tokens", "subjects")}

    # -- writes (each one transaction: all of it happens or none) --

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._conn() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def rotate(self, *, jti: str, family: str, subject: str, generation: int, issued_at: float,
               until: float) -> Rotation:
        """Present a refresh token of `family` at `generation`: ROTATED moves the family on to the next
        generation (its tokens now last `until`), REUSED revokes the family (an old generation came
        back: refresh-token reuse, OAuth 2.0 Security BCP 4.14.2), REVOKED changes nothing."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT (SELECT 1 FROM tokens WHERE jti = ?1), (SELECT all_before FROM subjects WHERE subject = ?2)",
                (jti, subject)).fetchone()
            if row[0] or (row[1] is not None and issued_at <= row[1]):
                return Rotation.REVOKED
            current = conn.execute("SELECT generation, revoked, until FROM families WHERE family = ?",
                                   (family,)).fetchone()
            generation_now, revoked, kept_until = current if current is not None else (0, 0, until)
            if revoked:
                return Rotation.REVOKED
            if generation != generation_now:  # older: a copy; newer: cannot be ours, refuse it all the same
                conn.execute("INSERT INTO families VALUES (?1, ?2, 1, ?3) ON CONFLICT (family) DO UPDATE SET"
                             " revoked = 1, until = max(until, ?3)", (family, generation_now, max(until, kept_until)))
                return Rotation.REUSED
            conn.execute("INSERT INTO families VALUES (?1, ?2, 0, ?3) ON CONFLICT (family) DO UPDATE SET"
                         " generation = ?2, until = max(until, ?3)", (family, generation_now + 1, until))
            return Rotation.ROTATED

    def logout(self, *, jti: str, family: str, until: float) -> None:
        """End a login: the token shown and its whole family (every access and refresh token of it)."""
        with self._write() as conn:
            conn.execute("INSERT INTO tokens VALUES (?1, ?2) ON CONFLICT (jti) DO UPDATE SET until = max(until, ?2)",
                         (jti, until))
            conn.execute("INSERT INTO families VALUES (?1, 0, 1, ?2) ON CONFLICT (family) DO UPDATE SET"
                         " revoked = 1, until = max(until, ?2)", (family, until))

    def revoke_token(self, jti: str, *, until: float) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO tokens VALUES (?1, ?2) ON CONFLICT (jti) DO UPDATE SET until = max(until, ?2)",
                         (jti, until))

    def stamp_subject(self, subject: str, *, until: float, access_only: bool = False, at: float | None = None) -> None:
        """Refuse `subject`'s tokens issued up to now (`at`): access tokens and URLs only (an entitlement
        change: a refresh picks up the new entitlements), or every token (`access_only=False`)."""
        at = self._clock() if at is None else at
        all_before = 0.0 if access_only else at
        with self._write() as conn:
            conn.execute("INSERT INTO subjects VALUES (?1, ?2, ?3, ?4) ON CONFLICT (subject) DO UPDATE SET"
                         " access_before = max(access_before, ?2), all_before = max(all_before, ?3),"
                         " until = max(until, ?4)", (subject, at, all_before, until))

    def purge(self) -> int:
        """Forget rows whose tokens have all expired; how many went."""
        now = self._clock()
        with self._write() as conn:
            return sum(conn.execute(f"DELETE FROM {table} WHERE until < ?", (now,)).rowcount  # noqa: S608
                       for table in ("families", "tokens", "subjects"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "it is missing"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__
