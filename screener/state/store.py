"""The incremental scan's state: one SQLite database per report, and its lock.

`ScanState` is the database (WAL, one transaction per finished video, a schema-version table)
plus an OS lock (`files.FileLock` on `<state>.lock`, taken without waiting, released by the
kernel when the process dies, however it dies). It stores per file its metadata, fingerprint,
model identity, sampling options and result (row, faces, frame times), the report's thumbnails
apart (table `media`, so planning never reads them), and the last run's record (`LAST_RUN`).

`failure` says what a failed use of the file means: a full disk is an OSError (ENOSPC), damage
an unusable state (StateError: --rescan sets it aside), anything else that stops it being
written a StateError that says so.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import fields
from pathlib import Path
from typing import Iterable

from ..errors import StateError, StateLocked
from ..files import FileLock, LockHeld, fit_name
from ..verdict import OK, FaceScore, VideoResult, low_evidence
from .plan import FileStat, Plan, Stored

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APP = "screener-scan-state"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    key         BLOB PRIMARY KEY,  -- absolute path as bytes (names need not be UTF-8)
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    ctime_ns    INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,     -- size + SHA-256 of the first and last MiB
    model_id    TEXT NOT NULL,     -- ModelCard.identity: model file hash and threshold
    options     TEXT NOT NULL,     -- the sampling options the result was computed with
    result      TEXT NOT NULL,     -- the VideoResult (row and faces) as JSON
    scanned_at  REAL NOT NULL      -- Unix time, kept here and never in the report
);
-- Files seen still changing: when each was first seen with its current size and times, so a
-- file whose clock is off (mtime in the future) still settles after settle_s of no change.
CREATE TABLE IF NOT EXISTS pending (
    key        BLOB PRIMARY KEY,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    ctime_ns   INTEGER NOT NULL,
    first_seen REAL NOT NULL
);
"""


# The report's thumbnails per file (media.VideoMedia bytes): apart from `files`, so planning a
# rerun never reads them.
_MEDIA_SCHEMA = "CREATE TABLE IF NOT EXISTS media (key BLOB PRIMARY KEY, data BLOB NOT NULL)"
_HEAT_SCHEMA = "CREATE TABLE IF NOT EXISTS heat (key TEXT PRIMARY KEY, data TEXT NOT NULL)"
LAST_RUN = "last_run"  # meta key: the last run's report header, finish time and duration


# A state's name leaves room for what is added to it (`.unusable2-wal`) within NAME_MAX.
STATE_NAME_MAX = 240


def default_state_path(report_path: str | os.PathLike) -> Path:
    """The state database used for a report when none is named: next to it,
    `<report>.state.sqlite`; for a report name too long for that, the name cut short and a
    hash of the whole of it (so any legal report name has a state)."""
    folder, name = os.path.split(os.fspath(report_path))
    state_name = f"{name}.state.sqlite"
    if len(os.fsencode(state_name)) > STATE_NAME_MAX:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
        state_name = f"{fit_name(name, STATE_NAME_MAX - 22)}-{digest}.state.sqlite"
    return Path(os.path.join(folder, state_name))


def lock_path(state_path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(state_path)}.lock")


def state_outputs(state_path: str | os.PathLike, what: str = "--state") -> list[tuple[str, Path]]:
    """The files a state writes, named (outputs.check_outputs): the database (as given: a URL
    stays one, to be refused), its lock, and SQLite's write-ahead log and shared-memory index
    beside it."""
    p = os.fspath(state_path)
    return [(what, p), ("the state's lock file", lock_path(p)),
            ("the state's write-ahead log", Path(f"{p}-wal")),
            ("the state's shared-memory file", Path(f"{p}-shm"))]


def result_to_json(r: VideoResult) -> str:
    # ensure_ascii keeps non-UTF-8 file names (surrogate escapes) storable and exact.
    return json.dumps({"row": r.row(), "faces": [vars(f) for f in r.faces],
                       "frame_times_s": r.frame_times_s}, sort_keys=True)


def result_from_json(text: str, path: str | None = None) -> VideoResult:
    """A stored result; `path` (the path as given on this run) replaces the stored one."""
    d = json.loads(text)
    row = d["row"]
    known = {f.name for f in fields(VideoResult)}
    r = VideoResult(**{k: v for k, v in row.items() if k in known and k != "faces"})
    r.faces = [FaceScore(**f) for f in d.get("faces", [])]
    r.frame_times_s = d.get("frame_times_s", [])
    if "note" not in row and r.status == OK:  # stored before the note column existed
        r.note = low_evidence(r.faces_scored, r.frames_with_face, r.frames_sampled)
    if path is not None and path != r.path:
        r.path = path
        for f in r.faces:
            f.path = path
    return r


# --- the database and its lock ----------------------------------------------------------------

class ScanState:
    """The state database of one report, locked for as long as it is open.

    Raises StateLocked when another process holds it, StateError when the file is not a usable
    screener state. With `reset_unusable=True` (the CLI's --rescan) an unusable file is renamed
    aside (`<state>.unusable`, never deleted) and a fresh state is started.
    """

    def __init__(self, path: str | os.PathLike, *, reset_unusable: bool = False):
        self.path = Path(path)
        self._lock: FileLock | None = None
        self.conn: sqlite3.Connection | None = None
        self.created = False  # True when this run started a new state
        self._take_lock()
        try:
            try:
                self._open()
            except StateError:
                if not reset_unusable:
                    raise
                try:
                    aside = self._move_aside()
                except OSError as e:
                    raise failure(self.path, e) from e
                log.warning("state %s was unusable; moved it to %s and started a new one",
                            self.path, aside)
                self._open()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "ScanState":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _take_lock(self) -> None:
        lp = lock_path(self.path)
        try:
            self._lock = FileLock(lp)
        except LockHeld as e:
            raise StateLocked(f"another scan is running with the state {self.path} "
                              f"({e.holder or 'holder unknown'}; lock {lp}); exiting") from e
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise _disk_full(lp) from e
            if e.filename is None:  # made, but flock itself failed
                raise StateError(f"cannot lock {lp}: {e.strerror or e}") from e
            raise StateError(f"cannot create the lock file {lp}: {e.strerror or e}; "
                             "pass --state PATH in a folder you can write") from e

    def _open(self) -> None:
        if self.path.is_dir():
            raise StateError(f"state path {self.path} is a folder; pass --state FILE")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        except sqlite3.Error as e:
            raise StateError(f"cannot open the state {self.path}: {e}; "
                             "pass --state PATH in a folder you can write") from e
        try:
            self._check(conn)
            conn.execute(_MEDIA_SCHEMA)  # added after schema 1 shipped; older states get it here
            # A state this run cannot write (read-only file or mount) fails here, before any
            # video is read, not at the first finished video.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.close()
            raise failure(self.path, e) from None
        except StateError:
            conn.close()
            raise
        self.conn = conn

    def _check(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not just a kill
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise StateError(_unusable(self.path, f"SQLite reports damage ({ok})"))
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:  # a new (or empty) file: create it all in one transaction
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("app", APP), ("schema_version", str(SCHEMA_VERSION))])
            conn.execute("COMMIT")
            self.created = True
            return
        meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("app") != APP:
            raise StateError(_unusable(self.path, "it is an SQLite database but not a screener "
                                                  f"scan state (tables: {', '.join(sorted(tables))})"))
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StateError(_unusable(self.path, f"it was written by a newer screener (schema "
                                                  f"{version}, this one reads {SCHEMA_VERSION})"))
        if version < SCHEMA_VERSION:  # no older schema has shipped yet; migrations go here
            raise StateError(_unusable(self.path, f"its schema {version} is too old"))

    def _move_aside(self) -> Path:
        aside = Path(f"{self.path}.unusable")
        n = 1
        while aside.exists():
            n += 1
            aside = Path(f"{self.path}.unusable{n}")
        # SQLite's side files go first: a new database must never meet the old one's WAL.
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{aside}{suffix}"))
        os.replace(self.path, aside)
        return aside

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- rows ---

    def stored(self) -> dict[bytes, Stored]:
        out = {}
        for key, size, mt, ct, ino, fp, mid, opts, res in self.conn.execute(
                "SELECT key, size, mtime_ns, ctime_ns, ino, fingerprint, model_id, options, "
                "result FROM files"):
            out[bytes(key)] = Stored(FileStat(size, mt, ct, ino), fp, mid, opts, res)
        return out

    def record(self, key: bytes, stat: FileStat, fp: str, model_id: str, options: str,
               result: VideoResult) -> None:
        """Store one finished video: one transaction, so a kill keeps it whole or not at all."""
        with self._transaction():
            self.conn.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?)",
                              (key, stat.size, stat.mtime_ns, stat.ctime_ns, stat.ino, fp,
                               model_id, options, result_to_json(result), time.time()))
            self.conn.execute("DELETE FROM pending WHERE key = ?", (key,))
            if getattr(result, "media", None) is not None:
                self.conn.execute("INSERT OR REPLACE INTO media VALUES (?, ?)",
                                  (key, result.media.to_bytes()))
            else:
                self.conn.execute("DELETE FROM media WHERE key = ?", (key,))

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def forget(self, keys: Iterable[bytes]) -> None:
        keys = list(keys)
        if keys:
            with self._transaction():
                self.conn.executemany("DELETE FROM files WHERE key = ?", [(k,) for k in keys])
                self.conn.executemany("DELETE FROM pending WHERE key = ?", [(k,) for k in keys])
                self.conn.executemany("DELETE FROM media WHERE key = ?", [(k,) for k in keys])

    def pending(self) -> dict[bytes, tuple[FileStat, float]]:
        return {bytes(k): (FileStat(s, m, c, 0), t) for k, s, m, c, t in self.conn.execute(
            "SELECT key, size, mtime_ns, ctime_ns, first_seen FROM pending")}

    def keep_plan(self, plan: Plan) -> None:
        """What a plan asks the state to remember: files whose metadata alone changed (the fast
        path matches them next time), and the files seen still changing (the pending table is
        replaced with these)."""
        with self._transaction():
            self.conn.executemany("UPDATE files SET ctime_ns = ?, ino = ? WHERE key = ?",
                                  [(st.ctime_ns, st.ino, key) for key, st in plan.restat])
            self.conn.execute("DELETE FROM pending")
            self.conn.executemany("INSERT INTO pending VALUES (?,?,?,?,?)",
                                  [(k, s.size, s.mtime_ns, s.ctime_ns, t)
                                   for k, s, t in plan.pending])

    class _Tx:
        """One write transaction; an SQLite failure leaves as `failure` says (a full disk:
        OSError ENOSPC; a state that cannot be written: StateError)."""

        def __init__(self, conn, path):
            self.conn, self.path = conn, path

        def __enter__(self):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise failure(self.path, e) from e

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                    return
                except sqlite3.Error as e:
                    exc = e
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite may have rolled back already
            if isinstance(exc, sqlite3.Error):
                raise failure(self.path, exc) from exc

    def _transaction(self):
        if self.conn is None:
            raise StateError(f"the state {self.path} is closed")
        return self._Tx(self.conn, self.path)


def _disk_full(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def _no_room(path) -> bool:
    try:
        return os.statvfs(Path(path).parent).f_bavail == 0
    except OSError:
        return False


def failure(path: Path, e: Exception) -> Exception:
    """What a failed use of the state file means, as the error to raise: a full disk is an
    OSError (ENOSPC, naming the file: like any output that cannot be written); damage is an
    unusable state (StateError, --rescan sets it aside); anything else that stops it being
    written (read-only, permissions, I/O errors) is a StateError that says so."""
    if isinstance(e, OSError):
        if e.errno == errno.ENOSPC:
            return _disk_full(e.filename or path)
        return StateError(f"cannot write the scan state {path}: {e.strerror or e}; pass "
                          "--state with a file in a folder you can write")
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _no_room(path)):
        return _disk_full(path)
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StateError(_unusable(path, f"it is not a readable SQLite database ({e})"))
    return StateError(f"cannot write the scan state {path}: {e}; pass --state with a file "
                      "in a folder you can write")


def _unusable(path: Path, why: str) -> str:
    return (f"the scan state {path} cannot be used: {why}. Rerun with --rescan to set it aside "
            f"(renamed to {path}.unusable) and rescan every file, or pass --state with another "
            "file")
