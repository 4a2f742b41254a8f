"""The incremental scan's state: one SQLite database per report, and its lock.

`ScanState` is the database (WAL, one transaction per finished video, a schema-version table)
plus an OS lock (`files.FileLock` on `<state>.lock`, taken without waiting, released by the
kernel when the process dies, however it dies). It stores per file its metadata, fingerprint,
model identity, sampling options and result (row, faces, frame times), the report's thumbnails
apart (table `media`, so planning never reads them), and the last run's record (`LAST_RUN`).

`failure` says what a failed use of the file means: a full disk is an OSError (ENOSPC), damage
an unusable state (StateError: a rescan sets it aside), anything else that stops it being
written a StateError that says so.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Iterable

from ..errors import StateError, StateLocked
from ..files import FileLock, LockHeld, fit_name
from ..verdict import VideoResult
from .plan import FileStat, Plan, Stored
from .schema import (APP, HEAT_SCHEMA, MEDIA_SCHEMA, SCHEMA, SCHEMA_VERSION, STATE,
                     STATE_FILE, STATE_PATH, NotAState, check_schema, migrate, read_only_uri,
                     result_from_json, result_to_json, schema_version, tables_and_meta,
                     unusable)

log = logging.getLogger(__name__)

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


def state_outputs(state_path: str | os.PathLike, what: str = "the state") -> list[tuple[str, Path]]:
    """The files a state writes, named (outputs.check_outputs): the database (as given: a URL
    stays one, to be refused), its lock, and SQLite's write-ahead log and shared-memory index
    beside it."""
    p = os.fspath(state_path)
    return [(what, p), ("the state's lock file", lock_path(p)),
            ("the state's write-ahead log", Path(f"{p}-wal")),
            ("the state's shared-memory file", Path(f"{p}-shm"))]


# --- the database and its lock ----------------------------------------------------------------

class ScanState:
    """The state database of one report, locked for as long as it is open.

    Raises StateLocked when another process holds it, StateError when the file is not a usable
    screener state. With `reset_unusable=True` (the rescan option) an unusable file is renamed
    aside (`<state>.unusable`, never deleted) and a fresh state is started.
    """

    def __init__(self, path: str | os.PathLike, *, reset_unusable: bool = False):
        self.path = Path(path)
        self._lock: FileLock | None = None
        self.conn: sqlite3.Connection | None = None
        self.created = False  # True when this run started a new state
        self.damaged: list[bytes] = []  # keys of stored rows that could not be read
        _refuse_links(self.path)
        _refuse_special(self.path)  # a device or pipe: never locked beside, opened or moved
        _refuse_foreign(self.path)  # before the lock file is made or anything is written
        self._take_lock()
        try:
            try:
                self._open()
            except StateError as e:
                if not reset_unusable or isinstance(e, NotAState):
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
            raise StateError("cannot use the lock file {0}: {1}; pass {2} in a folder you can "
                             "write", (None, lp), (None, e.strerror or e), STATE_PATH) from e

    def _open(self) -> None:
        if self.path.is_dir():
            raise StateError("state path {0} is a folder; pass {1}", (None, self.path),
                             STATE_FILE)
        _refuse_links(self.path)  # again, under the lock
        self._side_files_writable()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        except sqlite3.Error as e:
            raise StateError("cannot open the state {0}: {1}; pass {2} in a folder you can "
                             "write", (None, self.path), (None, e), STATE_PATH) from e
        try:
            self._check(conn)
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
        """Recognise the file as a screener state, whole, before anything is written to it."""
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise unusable(self.path, f"SQLite reports damage ({ok})")
        tables, meta = tables_and_meta(conn)
        if tables:
            check_schema(self.path, conn, tables, meta)
            migrate(conn, schema_version(meta))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not just a kill
        if not tables:  # a new (or empty) file: create it all in one transaction
            conn.execute("BEGIN IMMEDIATE")
            for statement in [*SCHEMA.split(";"), MEDIA_SCHEMA, HEAT_SCHEMA]:
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("app", APP), ("schema_version", str(SCHEMA_VERSION))])
            conn.execute("COMMIT")
            self.created = True

    def _side_files_writable(self) -> None:
        """SQLite makes its side files (-wal, -shm) with the state's permissions: a run while the
        state was read-only leaves them read-only, and once the state is writable again every
        run would fail on them ("attempt to write a readonly database"). Under the lock no scan
        uses them, so they get the state's permissions back."""
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except OSError:
            return
        if not os.access(self.path, os.W_OK):
            return  # read-only: opening it says so
        for side in (Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm")):
            if not side.exists() or os.access(side, os.W_OK):
                continue
            try:
                os.chmod(side, mode)
                log.info("made %s writable again, as the state is", side)
            except OSError as e:
                raise StateError(f"SQLite's side file {side} is read-only while the scan state "
                                 f"{self.path} is writable, and cannot be made writable "
                                 f"({e.strerror}): make it writable (chmod u+w {side}), or "
                                 "delete it while no scan runs") from e

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
        """Every stored row. One that cannot be read (damaged) is left out, and its key kept
        in `damaged`: its file is scanned again, and its row replaced or forgotten."""
        out, self.damaged = {}, []
        for key, size, mt, ct, ino, fp, mid, opts, res in self.conn.execute(
                "SELECT key, size, mtime_ns, ctime_ns, ino, fingerprint, model_id, options, "
                "result FROM files"):
            try:
                out[bytes(key)] = Stored(FileStat(size, mt, ct, ino), fp, mid, opts,
                                         result_from_json(res))
            except (TypeError, ValueError):
                if isinstance(key, bytes):
                    self.damaged.append(key)
        if self.damaged:
            log.warning("state %s: %d stored row(s) could not be read (damaged); their files "
                        "are scanned again", self.path, len(self.damaged))
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
        return {k: (FileStat(s, m, c, 0), t) for k, s, m, c, t in self.conn.execute(
            "SELECT key, size, mtime_ns, ctime_ns, first_seen FROM pending")
            if isinstance(k, bytes) and isinstance(t, (int, float))}  # a damaged row: unseen

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


def _refuse_links(path: Path) -> None:
    """A state, or an SQLite side file of it, that is a symbolic link is refused: SQLite would
    follow it and write to whatever it names."""
    for p in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal"))):
        if p.is_symlink():
            raise StateError("cannot use the scan state {0}: {1} is a symbolic link, which "
                             "screener does not follow; pass {2} with the file itself",
                             (None, path), (None, p), STATE)


def _refuse_special(path: Path) -> None:
    """A state that exists and is neither a regular file nor a folder (/dev/null, a pipe) is
    refused before anything is made beside it: SQLite would open it, a rescan would rename the
    system's /dev/null aside and put a regular file in its place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise StateError("cannot use the scan state {0}: it is not a regular file; pass {1} "
                         "with a file", (None, path), STATE)


def _refuse_foreign(path: Path) -> None:
    """Refuse another application's database before anything is written (no lock file, no
    WAL mode): read as immutable, SQLite touches nothing, side files included. A file that
    does not read so (new, damaged, its schema still in its WAL) is left to the checks made
    under the lock."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        conn = sqlite3.connect(read_only_uri(path) + "&immutable=1", uri=True)
        try:
            tables, meta = tables_and_meta(conn)
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return
    if tables and meta.get("app") != APP:
        check_schema(path, None, tables, meta)


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
    unusable state (StateError, a rescan sets it aside); anything else that stops it being
    written (read-only, permissions, I/O errors) is a StateError that says so."""
    if isinstance(e, OSError):
        if e.errno == errno.ENOSPC:
            return _disk_full(e.filename or path)
        return StateError("cannot write the scan state {0}: {1}; pass {2} with a file in a "
                          "folder you can write", (None, path), (None, e.strerror or e), STATE)
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _no_room(path)):
        return _disk_full(path)
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return unusable(path, f"it is not a readable SQLite database ({e})")
    if code == sqlite3.SQLITE_READONLY and not os.access(path, os.W_OK):
        return StateError("cannot write the scan state {0}: it is read-only; make it writable "
                          "(chmod u+w {0}), or pass {1} with another file", (None, path), STATE)
    return StateError("cannot write the scan state {0}: {1}; pass {2} with a file in a folder "
                      "you can write", (None, path), (None, e), STATE)
