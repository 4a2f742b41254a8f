"""Incremental scans: remember each file's result in SQLite, rescan only what changed.

A cron job or systemd timer reruns the same scan on a drop folder every few minutes. This module
makes that cheap and safe, whatever engine computes the results (the driver owns the state and
the report; engines only compute):

- `ScanState` is the SQLite database (WAL, one transaction per finished video, a schema-version
  table) plus an OS lock (`fcntl.flock` on `<state>.lock`, taken without waiting, released by
  the kernel when the process dies, however it dies).
- `ScanState.plan` decides per input file: scan (new, changed, or scanned with another model or
  other sampling options), reuse the stored row (unchanged), or defer (still being written:
  changed within `settle_s` seconds). Stored files that are no longer among the inputs are
  dropped, or kept and reported with status `missing` (`keep_missing`).
- `run_incremental` runs an engine over the files to scan, records each result as it arrives,
  then rewrites the whole report atomically (temporary file, fsync, rename) in a stable order.
  Nothing in the report depends on the clock, so an unchanged rerun writes the same bytes.

A file is "unchanged" when its size and mtime match the stored ones and so do its inode and
ctime; when only inode or ctime differ (moved over, `cp -p`, `rsync -t`, chmod), the content
fingerprint (size + SHA-256 of the first and last MiB) decides. The fast path reads no file
data, so an unchanged rerun over thousands of videos costs one stat() each. Rows are never
reused across paths by fingerprint alone: a crafted file could share a real video's first and
last MiB, and a screening tool must not be fooled that way.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import StateError, StateLocked
from .verdict import ERROR, OK, FaceScore, Summary, VideoResult, low_evidence

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APP = "screener-scan-state"
FINGERPRINT_CHUNK = 1 << 20  # first and last MiB
MISSING = "missing"          # report status of a kept row whose file is gone
DEFAULT_SETTLE_S = 30.0

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
    from .report import fit_name
    folder, name = os.path.split(os.fspath(report_path))
    state_name = f"{name}.state.sqlite"
    if len(os.fsencode(state_name)) > STATE_NAME_MAX:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
        state_name = f"{fit_name(name, STATE_NAME_MAX - 22)}-{digest}.state.sqlite"
    return Path(os.path.join(folder, state_name))


def lock_path(state_path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(state_path)}.lock")


def state_outputs(state_path: str | os.PathLike, what: str = "--state") -> list[tuple[str, Path]]:
    """The files a state writes, named (outputs.check_outputs): the database, its lock, and
    SQLite's write-ahead log and shared-memory index beside it."""
    p = os.fspath(state_path)
    return [(what, Path(p)), ("the state's lock file", lock_path(p)),
            ("the state's write-ahead log", Path(f"{p}-wal")),
            ("the state's shared-memory file", Path(f"{p}-shm"))]


# --- files ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, path: str) -> "FileStat | None":
        """None when the path is gone or is not a regular file (a pipe, a device: never
        opened here, where a read could block; the engine says why it is not a video)."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    @property
    def changed_ns(self) -> int:
        return max(self.mtime_ns, self.ctime_ns)


def fingerprint(path: str, size: int, timeout_s: float | None = None) -> str:
    """Size plus SHA-256 of the first and last MiB: cheap, and enough to tell a replaced file
    from one whose metadata alone changed. "" when the file cannot be read, is not a regular
    file, or (with `timeout_s`) is not read within that time: a hung network mount must not
    hold the run, and its lock, for ever (the read is left behind in a daemon thread)."""
    if timeout_s is None:
        return _fingerprint(path, size)
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(_fingerprint(path, size)),
                              name="screener-fingerprint", daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not done:
        log.warning("%s: reading it took longer than the %g s limit (--video-timeout)",
                    path, timeout_s)
        return ""
    return done[0]


def _fingerprint(path: str, size: int) -> str:
    h = hashlib.sha256(str(size).encode())
    try:
        # O_NONBLOCK: a file replaced by a named pipe since its stat must not block the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            h.update(f.read(FINGERPRINT_CHUNK))
            if size > FINGERPRINT_CHUNK:
                f.seek(max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
                h.update(f.read(FINGERPRINT_CHUNK))
    except OSError:
        return ""
    return f"{size}:{h.hexdigest()[:32]}"


def path_key(path: str) -> bytes:
    """The state's key for a path: absolute (cron runs from anywhere), links not resolved."""
    return os.fsencode(os.path.normpath(os.path.abspath(path)))


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

@dataclass
class Stored:
    stat: FileStat
    fingerprint: str
    model_id: str
    options: str
    result: str


class ScanState:
    """The state database of one report, locked for as long as it is open.

    Raises StateLocked when another process holds it, StateError when the file is not a usable
    screener state. With `reset_unusable=True` (the CLI's --rescan) an unusable file is renamed
    aside (`<state>.unusable`, never deleted) and a fresh state is started.
    """

    def __init__(self, path: str | os.PathLike, *, reset_unusable: bool = False):
        self.path = Path(path)
        self._lock_fd: int | None = None
        self.conn: sqlite3.Connection | None = None
        self.created = False  # True when this run started a new state
        self._lock()
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

    # The lock is a separate file: SQLite takes its own POSIX locks on the database, and an
    # flock on a file nobody else opens cannot interfere with them.
    def _lock(self) -> None:
        lp = lock_path(self.path)
        try:
            fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise _disk_full(lp) from e
            raise StateError(f"cannot create the lock file {lp}: {e.strerror or e}; "
                             "pass --state PATH in a folder you can write") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateLocked(f"another scan is running with the state {self.path} "
                                  f"({holder or 'holder unknown'}; lock {lp}); exiting") from e
            raise StateError(f"cannot lock {lp}: {e.strerror or e}") from e
        # Who holds it, for the next run's message (informational only: the flock is the lock,
        # so a disk too full for these few bytes does not stop the run here).
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        except OSError:
            pass
        self._lock_fd = fd

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
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

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

    def update_stat(self, key: bytes, stat: FileStat) -> None:
        """Same content, new metadata (moved over, chmod): the fast path will match next time."""
        with self._transaction():
            self.conn.execute("UPDATE files SET ctime_ns = ?, ino = ? WHERE key = ?",
                              (stat.ctime_ns, stat.ino, key))

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

    def set_pending(self, rows: Sequence[tuple[bytes, FileStat, float]]) -> None:
        """Replace the pending table with the files deferred now."""
        with self._transaction():
            self.conn.execute("DELETE FROM pending")
            self.conn.executemany("INSERT INTO pending VALUES (?,?,?,?,?)",
                                  [(k, s.size, s.mtime_ns, s.ctime_ns, t) for k, s, t in rows])

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

    # --- what to do with each file ---

    def plan(self, paths: Sequence[str], *, model_id: str, options: str,
             settle_s: float = DEFAULT_SETTLE_S, rescan: bool = False,
             keep_missing: bool = False, now: float | None = None,
             read_timeout_s: float | None = None) -> "Plan":
        """Decide, per input path, to scan, reuse or defer it; and what happens to stored
        files that are no longer among the inputs. Records which files are still changing.
        `read_timeout_s` bounds each file read (a fingerprint; see `fingerprint`)."""
        now = time.time() if now is None else now
        stored = self.stored()
        pending = self.pending()
        plan = Plan()
        new_pending: list[tuple[bytes, FileStat, float]] = []
        seen: set[bytes] = set()
        for path in paths:
            key = path_key(path)
            if key in seen:
                continue
            seen.add(key)
            st = FileStat.of(path)
            old = stored.get(key)
            if st is None:  # gone, a broken link, a loop, a pipe: the engine says why, every run
                plan.scan.append(path)
                plan.files[path] = PlannedFile(key, None, "")
                continue
            # Unchanged: reuse whatever the file's age (a stored row was taken when it settled).
            if old is not None and not rescan and old.stat.size == st.size \
                    and old.stat.mtime_ns == st.mtime_ns:
                same_model = old.model_id == model_id and old.options == options
                if old.stat == st and same_model:
                    plan.reuse[path] = old.result
                    continue
                fp = fingerprint(path, st.size, read_timeout_s)
                if same_model and fp and fp == old.fingerprint and not _is_error(old.result):
                    self.update_stat(key, st)
                    plan.reuse[path] = old.result
                    continue
            # Settling is for files being written: new, or with another size or mtime than the
            # stored one. A new state scans all it finds, like a one-off scan; a file caught
            # half-written then changes, and is scanned again by the next run.
            growing = old is None or (old.stat.size, old.stat.mtime_ns) != (st.size, st.mtime_ns)
            if settle_s > 0 and growing and not self.created \
                    and not self._settled(key, st, pending, now, settle_s, new_pending):
                plan.deferred.append(path)
                if old is not None:  # keep its last row until the new content is scanned
                    plan.reuse[path] = old.result
                continue
            plan.scan.append(path)
            plan.files[path] = PlannedFile(key, st, fingerprint(path, st.size, read_timeout_s))
        for key, old in stored.items():
            if key in seen:
                continue
            if keep_missing:
                plan.missing.append(old.result)
            else:
                plan.dropped.append(key)
        plan.order = [p for p in dict.fromkeys(paths)
                      if p in plan.reuse or p in plan.files]
        self.set_pending(new_pending)
        return plan

    @staticmethod
    def _settled(key, st: FileStat, pending, now: float, settle_s: float, new_pending) -> bool:
        if now - st.changed_ns / 1e9 >= settle_s:
            return True
        before = pending.get(key)
        first_seen = now
        if before is not None and before[0] == FileStat(st.size, st.mtime_ns, st.ctime_ns, 0):
            first_seen = before[1]
            if now - first_seen >= settle_s:  # unchanged for settle_s by our clock: a clock skew
                return True
        new_pending.append((key, st, first_seen))
        return False


def _is_error(result_json: str) -> bool:
    # A stored error (say, permission denied) is retried whenever the file's metadata changes.
    try:
        return json.loads(result_json)["row"]["status"] == ERROR
    except (ValueError, KeyError, TypeError):
        return True


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


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


@dataclass
class PlannedFile:
    key: bytes
    stat: FileStat | None   # taken before the file is read: a later change shows next run
    fingerprint: str


@dataclass
class Plan:
    scan: list[str] = field(default_factory=list)           # paths to run through the engine
    reuse: dict[str, str] = field(default_factory=dict)     # path -> stored result JSON
    deferred: list[str] = field(default_factory=list)       # still being written
    missing: list[str] = field(default_factory=list)        # stored results kept as missing
    dropped: list[bytes] = field(default_factory=list)      # stored keys to forget
    order: list[str] = field(default_factory=list)          # report order of current files
    files: dict[str, PlannedFile] = field(default_factory=dict)


# --- one incremental run ------------------------------------------------------------------------

@dataclass
class ReportSummary(Summary):
    """The report's summary in an incremental scan: kept rows of vanished files apart."""
    missing: int = 0

    def add(self, r: VideoResult) -> None:
        if r.status == MISSING:
            self.videos += 1
            self.missing += 1
        else:
            super().add(r)


@dataclass
class RunSummary:
    """What an incremental run did. `report` counts the rows of the report it wrote."""
    report: ReportSummary
    scanned: int = 0      # computed on this run
    reused: int = 0       # unchanged, taken from the state
    deferred: int = 0     # still being written: left for the next run
    missing: int = 0      # stored rows kept with status missing
    dropped: int = 0      # stored rows of vanished files, forgotten
    unrecorded: int = 0   # changed while being scanned: rescanned next run
    interrupted: bool = False
    elapsed_s: float = 0.0  # this run's: from `started` until the report was written
    results: list[VideoResult] = field(default_factory=list, repr=False)


def _as_missing(result_json: str) -> VideoResult:
    r = result_from_json(result_json)
    r.status = MISSING
    r.error = "no longer found among the scanned files; last result kept (--keep-missing)"
    return r


def run_incremental(paths: Sequence[str], engine, *, state_path: str | os.PathLike,
                    model_id: str, options: str, report_path: str | os.PathLike | None = None,
                    fmt: str = "csv", meta: dict | None = None,
                    frames_out: str | os.PathLike | None = None, rescan: bool = False,
                    settle_s: float = DEFAULT_SETTLE_S, keep_missing: bool = False,
                    read_timeout_s: float | None = None,
                    on_plan: Callable[[Plan], None] | None = None,
                    on_result: Callable[[VideoResult], None] | None = None,
                    started: float | None = None) -> RunSummary:
    """Scan what changed among `paths` (files, as discovered) with `engine` (anything with
    `run(paths) -> iterator of VideoResult in input order`), record each result as it
    arrives, then rewrite the report (and `frames_out`) atomically with every current result.
    `read_timeout_s` bounds each read of a file while planning (see `fingerprint`).

    Holds the state's lock throughout. Raises StateLocked, StateError, and OSError when the
    state or the report cannot be written (ENOSPC: the disk is full). On KeyboardInterrupt
    the results so far are recorded, the report is rewritten (JSON: "complete": false) and
    ScanInterrupted (a KeyboardInterrupt carrying the RunSummary) is raised.

    The run's elapsed time counts from `started` (time.monotonic() when the command began;
    default: now) until every row is known; it goes into the state (LAST_RUN: the HTML report
    shows it) and the JSON report. A run that changes nothing (nothing scanned, the same rows
    and header) keeps the record of the run that made those rows, so its report and page come
    out identical, time included.
    """
    from .report import FramesWriter, ReportWriter, atomic_write

    started = time.monotonic() if started is None else started
    with ScanState(state_path, reset_unusable=rescan) as state:
        plan = state.plan(paths, model_id=model_id, options=options, settle_s=settle_s,
                          rescan=rescan, keep_missing=keep_missing,
                          read_timeout_s=read_timeout_s)
        if on_plan:
            on_plan(plan)
        done: dict[str, VideoResult] = {}
        summary = RunSummary(report=ReportSummary(), reused=len(plan.reuse) - len(
            [p for p in plan.deferred if p in plan.reuse]), deferred=len(plan.deferred))
        try:
            if plan.scan:
                for r in engine.run(plan.scan):
                    pf = plan.files.get(r.path)
                    if pf is None:
                        raise RuntimeError(f"engine returned a result for {r.path!r}, "
                                           "which it was not asked to scan")
                    if pf.stat is not None and FileStat.of(r.path) != pf.stat:
                        # Read while it changed: the result may be of half a file.
                        log.warning("%s changed while it was scanned; it will be rescanned",
                                    r.path)
                        summary.unrecorded += 1
                    else:
                        if pf.stat is not None:
                            state.record(pf.key, pf.stat, pf.fingerprint, model_id, options, r)
                        # The thumbnails are stored; the kept copy goes without them.
                        done[r.path] = replace(r, media=None) if pf.stat is not None else r
                        summary.scanned += 1
                    if on_result:
                        on_result(r)
        except KeyboardInterrupt:
            summary.interrupted = True
        state.forget(plan.dropped)
        summary.dropped = len(plan.dropped)
        results = []
        for p in plan.order:
            if p in done:
                results.append(done[p])
            elif p in plan.reuse:
                results.append(result_from_json(plan.reuse[p], p))
        missing = sorted((_as_missing(m) for m in plan.missing), key=lambda r: r.path)
        results.extend(missing)
        summary.missing = len(missing)
        summary.results = results
        summary.elapsed_s = round(time.monotonic() - started, 2)
        run = _last_run(state, meta, results, summary)
        if report_path is not None and str(report_path) != "-":
            _remove_stale_temporaries(report_path)
            with atomic_write(report_path) as f:
                w = ReportWriter(f, fmt, meta)
                w.summary = summary.report
                for r in results:
                    w.write(r)
                w.close(complete=not summary.interrupted, extra={"elapsed_s": run["elapsed_s"]})
        else:
            for r in results:
                summary.report.add(r)
        if frames_out:
            with atomic_write(frames_out) as f:
                fw = FramesWriter(f)
                for r in results:
                    fw.write(r)
    if summary.interrupted:
        raise ScanInterrupted(summary)
    return summary


def _last_run(state: ScanState, meta: dict | None, results: list[VideoResult],
              summary: RunSummary) -> dict:
    """Record this run (LAST_RUN) unless it changed nothing: then the record of the run that
    made these rows stays, and is returned."""
    rows = hashlib.sha256(json.dumps([r.row() for r in results], default=str).encode()).hexdigest()
    run = json.loads(json.dumps({"meta": meta or {}, "finished_at": time.time(),
                                 "elapsed_s": summary.elapsed_s,
                                 "complete": not summary.interrupted, "rows": rows},
                                default=str))
    try:
        before = json.loads(state.get_meta(LAST_RUN) or "{}")
    except ValueError:
        before = {}
    unchanged = (summary.scanned == 0 and not summary.unrecorded and not summary.interrupted
                 and before.get("rows") == rows and before.get("meta") == run["meta"]
                 and before.get("complete", True))
    if unchanged and "elapsed_s" in before:
        return before
    state.set_meta(LAST_RUN, json.dumps(run))
    return run


def _remove_stale_temporaries(report_path) -> None:
    """Temporary reports left by a run killed while writing (atomic_write's): under the
    state's lock no other run of this report can be writing one."""
    from .report import is_temporary_of
    folder = Path(report_path).parent
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if is_temporary_of(report_path, name):
            try:
                (folder / name).unlink()
            except OSError:
                pass


@dataclass
class SavedScan:
    """What a state holds for a report rebuild (`screener report`): every stored result (by
    path), the last run's header (`meta`, `finished_at`, `elapsed_s`), and the thumbnails."""
    path: Path
    results: list[tuple[bytes, VideoResult]]
    last_run: dict

    def media(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Stored `media.VideoMedia` bytes of the given files (those that have some)."""
        keys = list(keys)
        out: dict[bytes, bytes] = {}
        with _read_only(self.path) as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'media'").fetchone():
                return out
            for i in range(0, len(keys), 500):  # SQLite's limit on bound parameters
                chunk = keys[i:i + 500]
                out.update((bytes(k), bytes(d)) for k, d in conn.execute(
                    f"SELECT key, data FROM media WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk))
        return out


class HeatCache:
    """The HTML report's rendered heat maps, kept in the state beside the thumbnails, so the
    page of an unchanged cron rerun (or `screener report`) needs no model and no TensorFlow.
    Keys name the model's SHA-256 and the face's bytes (`html_report.heat_key`); only the keys of
    the latest page are kept. Best effort, without the scan's lock (SQLite serialises the
    writes): a state that cannot be written costs recomputing the maps, never the page."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def get(self, keys: Iterable[str]) -> dict[str, dict]:
        keys, out = list(keys), {}
        try:
            with _read_only(self.path) as conn:
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'heat'").fetchone():
                    return out
                for i in range(0, len(keys), 500):
                    chunk = keys[i:i + 500]
                    out.update((k, json.loads(d)) for k, d in conn.execute(
                        f"SELECT key, data FROM heat WHERE key IN ({','.join('?' * len(chunk))})",
                        chunk))
        except (StateError, sqlite3.Error, ValueError) as e:
            log.info("heat maps not read from %s: %s", self.path, e)
        return out

    def keep(self, items: dict[str, dict]) -> None:
        """Store these and forget every other key."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        except sqlite3.Error as e:
            log.info("heat maps not kept in %s: %s", self.path, e)
            return
        try:
            conn.execute(_HEAT_SCHEMA)
            have = {k for (k,) in conn.execute("SELECT key FROM heat")}
            if have == set(items):
                return
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM heat WHERE key = ?", [(k,) for k in have - set(items)])
            conn.executemany("INSERT OR REPLACE INTO heat VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in items.items() if k not in have])
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            log.info("heat maps not kept in %s: %s", self.path, e)
        finally:
            conn.close()


@contextmanager
def _read_only(path: Path):
    # No flock: reading while a scan writes is safe with WAL, and must not fail as "locked".
    try:
        conn = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        raise StateError(f"cannot open the state {path}: {e}") from e
    try:
        yield conn
    finally:
        conn.close()


def read_saved(state_path: str | os.PathLike) -> SavedScan:
    """The results saved in a state file, without taking its lock. Raises StateError."""
    path = Path(state_path)
    if not path.is_file():
        raise StateError(f"no scan state at {path}")
    try:
        with _read_only(path) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if meta.get("app") != APP:
                raise StateError(f"{path} is not a screener scan state")
            rows = conn.execute("SELECT key, result FROM files").fetchall()
    except sqlite3.DatabaseError as e:
        raise StateError(_unusable(path, f"it is not a readable SQLite database ({e})")) from e
    results = sorted(((bytes(k), result_from_json(text)) for k, text in rows),
                     key=lambda kr: kr[0])
    try:
        last_run = json.loads(meta.get(LAST_RUN, "{}"))
    except ValueError:
        last_run = {}
    return SavedScan(path, results, last_run)


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM made an interrupt) during an incremental run, after the results so
    far were recorded and the report rewritten. `.summary` says what was done."""

    def __init__(self, summary: RunSummary):
        super().__init__("interrupted")
        self.summary = summary
