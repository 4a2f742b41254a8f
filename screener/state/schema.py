"""What a scan state holds, and how a file is recognised as one: its tables (`SCHEMA`), its
rows (`result_to_json`, `result_from_json`), and `check_schema`, which tells a screener state
from another application's database (`NotAState`: never written, never set aside) and from a
damaged one (`StateError`: a rescan sets it aside). `store.ScanState` writes states;
`saved.read_saved` reads them for `screener report`.
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import fields, replace
from pathlib import Path
from urllib.parse import quote

from ..errors import StateError
from ..verdict import (ERROR, NO_FACE, NOT_COLUMNS, OK, FaceScore, VideoResult, judge_people,
                       low_evidence)

# 2: the media and heat tables, a row's `note`, and `options` as SampleOptions.key() JSON (1
# kept the options' repr). A state of schema 1 is brought to 2 when a scan opens it (`migrate`).
SCHEMA_VERSION = 2
OLDEST_SCHEMA = 1   # the oldest a scan migrates and `screener report` reads
APP = "screener-scan-state"

SCHEMA = """
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
MEDIA_SCHEMA = "CREATE TABLE IF NOT EXISTS media (key BLOB PRIMARY KEY, data BLOB NOT NULL)"
HEAT_SCHEMA = "CREATE TABLE IF NOT EXISTS heat (key TEXT PRIMARY KEY, data TEXT NOT NULL)"
LAST_RUN = "last_run"  # meta key: the last run's report header, finish time and duration


def result_to_json(r: VideoResult) -> str:
    # ensure_ascii keeps non-UTF-8 file names (surrogate escapes) storable and exact.
    return json.dumps({"row": r.row(), "faces": [vars(f) for f in r.faces],
                       "frame_times_s": r.frame_times_s}, sort_keys=True)


def _checked(values: dict, cls) -> dict:
    """`values` (a stored row or face) for the dataclass `cls`, each of a type its field
    takes; raises ValueError (a damaged row) otherwise."""
    known = {f.name: f for f in fields(cls) if f.init and f.name not in NOT_COLUMNS}
    if not isinstance(values, dict):
        raise ValueError(f"a {cls.__name__} is not an object")
    for name, value in values.items():
        f = known.get(name)
        if f is None:
            continue
        kind = str(f.type).split("|")[0].strip()
        want = {"str": str, "int": int, "float": (int, float)}.get(kind, object)
        if not (isinstance(value, want) or (value is None and "None" in str(f.type))):
            raise ValueError(f"{name} is {value!r}")
    return {k: v for k, v in values.items() if k in known}


def result_from_json(text: str, path: str | None = None) -> VideoResult:
    """A stored result; `path` (the path as given on this run) replaces the stored one.
    Raises ValueError when the row is damaged (not JSON, fields missing or of another type)."""
    try:
        d = json.loads(text)
        row = d["row"]
        r = VideoResult(**_checked(row, VideoResult))
        r.faces = [FaceScore(**_checked(f, FaceScore)) for f in d.get("faces", [])]
        r.frame_times_s = [float(t) for t in d.get("frame_times_s", [])]
        if r.status == OK:
            r.persons = judge_people(r.faces, r.frames_sampled, r.threshold or 0.5)
    except (TypeError, KeyError, AttributeError) as e:  # fields missing, not a list, ...
        raise ValueError(f"damaged row: {type(e).__name__}: {e}") from None
    if r.status not in (OK, NO_FACE, ERROR):
        raise ValueError(f"damaged row: status {r.status!r}")
    if "note" not in row and r.status == OK:  # stored before the note column existed
        r.note = low_evidence(r.faces_scored, r.frames_with_face, r.frames_sampled)
    return r if path is None else at_path(r, path)


def at_path(r: VideoResult, path: str) -> VideoResult:
    """`r` as the result of `path` (the path as given on this run: a state keys it absolute)."""
    if path == r.path:
        return r
    return replace(r, path=path, faces=[replace(f, path=path) for f in r.faces])


class NotAState(StateError):
    """The file is another application's SQLite database: never written, never set aside."""


# The options an error about the state names, in neutral words (the CLI's --rescan, --state).
RESCAN, STATE = ("the rescan option", None), ("the state option", None)
STATE_PATH, STATE_FILE = ("a state path", None), ("a state file", None)


# The tables and columns a state has (the media table is added when it is not there).
def _columns() -> dict[str, list[str]]:
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(SCHEMA)
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
                for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


_COLUMNS = _columns()


def tables_and_meta(conn) -> tuple[set[str], dict]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    meta = {}
    if "meta" in tables:
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta"))
        except sqlite3.Error:
            pass  # damaged: check_schema says so
    return tables, meta


def check_schema(path, conn, tables: set[str], meta: dict) -> None:
    """Raise NotAState for another application's database, StateError (unusable: a rescan sets
    it aside) for a screener state of another schema or with a table or column missing."""
    if meta.get("app") != APP:
        raise NotAState("the scan state {0} cannot be used: it is an SQLite database but not a "
                        "screener scan state (tables: {1}); it is left as it is: pass {2} with "
                        "another file", (None, path), (None, ", ".join(sorted(tables))), STATE)
    try:
        version = schema_version(meta)
    except (TypeError, ValueError):
        raise unusable(path, f"its schema version {meta.get('schema_version')!r} "
                             "is not a number") from None
    if version > SCHEMA_VERSION:
        raise unusable(path, f"it was written by a newer screener (schema {version}, this "
                             f"one reads {SCHEMA_VERSION})")
    if version < OLDEST_SCHEMA:
        raise unusable(path, f"its schema {version} is too old")
    for table, columns in _COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        lacking = [c for c in columns if c not in have]
        if lacking:
            raise unusable(path, f"its table {table} is missing" if not have else
                           f"its table {table} lacks {', '.join(lacking)}")


def schema_version(meta: dict) -> int:
    return int(meta.get("schema_version", "0"))


def migrate(conn, version: int) -> None:
    """Bring a state of schema `version` (checked: OLDEST_SCHEMA or newer) to SCHEMA_VERSION,
    in one transaction. 1 -> 2: the media and heat tables, and each row's options from the
    SampleOptions repr of schema 1 to its key as JSON, so no row is rescanned for it."""
    if version >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(MEDIA_SCHEMA)
    conn.execute(HEAT_SCHEMA)
    for (old,) in conn.execute("SELECT DISTINCT options FROM files").fetchall():
        conn.execute("UPDATE files SET options = ? WHERE options = ?", (_key_of_repr(old), old))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    conn.execute("COMMIT")


def _key_of_repr(text: str) -> str:
    """Schema 1's options, `SampleOptions(frames=32, every_s=None, ...)`, as schema 2 keeps them;
    a text that is not such a repr is kept (its rows are rescanned, as for other options)."""
    import ast
    import re
    m = re.fullmatch(r"SampleOptions\((.*)\)", text)
    try:
        values = {k: ast.literal_eval(v) for k, v in
                  re.findall(r"(\w+)=([^,]+)(?:, |$)", m.group(1))} if m else None
    except (ValueError, SyntaxError):
        values = None
    return json.dumps(values, sort_keys=True) if values else text


def read_only_uri(path) -> str:
    """An SQLite URI that opens `path` read-only, whatever characters its name holds."""
    return f"file:{quote(os.fsencode(os.path.abspath(path)))}?mode=ro"


def unusable(path: Path, why: str) -> StateError:
    """The error of a state that cannot be used, and the two ways out."""
    return StateError("the scan state {0} cannot be used: {1}. Rerun with {2} to set it aside "
                      "(renamed to {0}.unusable) and rescan every file, or pass {3} with another "
                      "file", (None, path), (None, why), RESCAN, STATE)
